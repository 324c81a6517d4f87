//! `nodeprep boot`: apply limits and instance storage, then run every check and write the status
//! file.

use std::time::{Duration, Instant};

use super::{exit_code, load_config, print_report, say, UsageError, EXIT_NOT_READY, EXIT_READY};
use crate::apply::{self, Outcome, Plan};
use crate::capability::{limits, storage};
use crate::cli::Global;
use crate::config::Mode;
use crate::host::Host;
use crate::run::{self, Phase};

pub(super) fn boot(g: &Global, host: Host, dry_run: bool) -> Result<u8, UsageError> {
    let started = Instant::now();
    let cfg = load_config(g, &host)?;
    let selected = crate::capability::select(&[])?;
    let ctx = run::prepare(host, cfg, g.instance_type.as_deref(), crate::run::Purpose::Once);
    let (host, cfg) = (&ctx.host, &ctx.config);
    // p5en initialises its EFA devices late: wait for the attached ones before deciding limits
    // (auto: when EFA exists) and before the checks.
    if !dry_run && ctx.expected.efa_attached.is_some_and(|n| n > 0) {
        let (waited, left) =
            crate::capability::efa::settle(host, Duration::from_secs(cfg.efa.init_wait_seconds));
        if waited >= Duration::from_millis(250) || left > 0 {
            tracing::info!(
                waited_ms = waited.as_millis() as u64,
                not_ready = left,
                "attached EFA devices waited for"
            );
            say(
                g,
                &format!(
                    "efa: waited {:.1} s for attached EFA devices to initialise{}",
                    waited.as_secs_f64(),
                    if left > 0 {
                        format!("; {left} still not ready (efa.init_wait_seconds)")
                    } else {
                        String::new()
                    }
                ),
            );
        }
    }
    let limits = limits::plan(&limits::observe(host), &cfg.limits, host.is_live());
    let t0 = Instant::now();
    let want = match cfg.storage.devices.len() {
        0 => ctx.expected.instance_store_disks.unwrap_or(0) as usize,
        n => n,
    };
    if cfg.storage.enabled != Mode::Never && !dry_run {
        storage::wait_for_disks(host, &cfg.storage, want);
    }
    let snap = storage::observe(host, &cfg.storage, true);
    tracing::debug!(
        disks = snap.disks.len(),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "storage observed"
    );
    let storage = storage::plan(&snap, &cfg.storage);
    if dry_run {
        let root = g.root.display();
        say(g, &format!("nodeprep boot --dry-run: nothing is changed (root {root})"));
        say(g, limits.render().trim_end());
        say(g, storage.render().trim_end());
        return Ok(if storage.refuses() { EXIT_NOT_READY } else { EXIT_READY });
    }
    let mut failed = false;
    for plan in [&limits, &storage] {
        failed |= apply_plan(g, host, plan);
    }
    let report = run::checks(&ctx, &selected, Phase::Boot);
    if let Err(e) = run::write_status(host, &report) {
        tracing::error!(error = %e, "status file not written");
        say(g, &format!("status: FAIL: {e}"));
        failed = true;
    }
    print_report(g, &report, None);
    tracing::info!(
        ready = report.ready,
        failed_steps = failed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "boot finished"
    );
    Ok(if failed { EXIT_NOT_READY } else { exit_code(&report) })
}

/// Executes one plan, saying how each step ended; true when a step failed.
fn apply_plan(g: &Global, host: &Host, plan: &Plan) -> bool {
    tracing::info!(
        root = %host.root().display(),
        capability = plan.capability,
        actions = plan.actions.len(),
        "boot: applying"
    );
    let t0 = Instant::now();
    let outcomes = apply::execute(host, plan);
    let (mut changed, mut failed) = (false, false);
    for o in &outcomes {
        let (kind, text) = o.text();
        failed |= matches!(o, Outcome::Failed(_));
        changed |= matches!(o, Outcome::Done(_) | Outcome::Failed(_));
        say(g, &format!("{}: {kind}: {text}", plan.capability));
    }
    if !changed && !plan.skips() {
        say(g, &format!("{}: up to date", plan.capability));
    }
    tracing::info!(
        capability = plan.capability,
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "boot: applied"
    );
    failed
}
