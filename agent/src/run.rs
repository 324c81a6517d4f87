//! A run of checks, between the commands and `serve`: `--root` becomes a [`Host`] once, the node is
//! identified once ([`prepare`]), then any number of runs of a selection of checks ([`checks`])
//! build reports, which [`write_status`] publishes in the status file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apply::{self, Durability, WriteError};
use crate::capability::{runner, Context, Registration, When};
use crate::catalog::Expected;
use crate::config::Config;
use crate::host::Host;
use crate::identity;
use crate::report::{CheckResult, Report, Status};

/// Path of the status file under the root.
pub const STATUS_FILE: &str = "/run/nodeprep/status.json";

/// When checks run: at boot, checks of what kubelet does are reported as skipped (kubelet starts
/// after `nodeprep boot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Boot,
    Running,
}

/// Who runs the checks: `serve` samples counters every interval, a one-shot run does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Once,
    Serve,
}

/// Identifies the node and what it must have: the context every check run uses.
pub fn prepare(
    host: Host,
    config: Config,
    instance_type: Option<&str>,
    purpose: Purpose,
) -> Arc<Context> {
    let host = host.with_max_read(config.checks.max_read_bytes);
    let identity = identity::discover(&host, &config, instance_type);
    let (attached, _) = crate::host::rdma::attached(&host);
    let expected = Expected::new(identity.instance_type.as_deref(), &config.expect)
        .with_attached_efa(attached.len() as u32);
    let sample_counters = purpose == Purpose::Serve;
    Arc::new(Context {
        host,
        config,
        identity,
        expected,
        sample_counters,
        once: Default::default(),
        samples: Default::default(),
        running: Default::default(),
    })
}

/// Runs the selected checks against a prepared context and builds the report (results in report
/// order, whatever order they finished in).
pub fn checks(ctx: &Arc<Context>, selected: &[&'static Registration], phase: Phase) -> Report {
    let started = Instant::now();
    let timeout = Duration::from_secs(ctx.config.checks.timeout_seconds);
    let later = |r: &Registration| phase == Phase::Boot && r.when == When::AfterKubelet;
    let now: Vec<&'static Registration> = selected.iter().copied().filter(|r| !later(r)).collect();
    let mut done = runner::run(Arc::clone(ctx), &now, timeout).into_iter();
    let results: Vec<CheckResult> = selected
        .iter()
        .map(|r| match later(r) {
            true => CheckResult::new(
                r.name,
                Status::Skip,
                "not checked at boot: kubelet starts after `nodeprep boot`; `nodeprep check` and \
                 `serve` check it",
            )
            .required(r.check.required(ctx)),
            false => done.next().expect("one result per check run"),
        })
        .collect();
    let identity_json = serde_json::to_value(&ctx.identity).ok();
    let report = Report::new(
        ctx.identity.instance_type.clone(),
        identity_json,
        results,
        started.elapsed().as_millis() as u64,
    );
    tracing::info!(
        ready = report.ready,
        duration_ms = report.duration_ms,
        checks = report.checks.len(),
        "checks done"
    );
    report
}

/// Replaces `<root>/run/nodeprep/status.json` atomically.
pub fn write_status(host: &Host, report: &Report) -> Result<(), WriteError> {
    // /run is tmpfs: atomic rename, no fsync (serve rewrites it every interval).
    let path = Path::new(STATUS_FILE);
    apply::write_atomic(host, path, &report.to_json(), 0o644, Durability::Volatile).map(|_| ())
}
