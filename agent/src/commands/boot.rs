//! `nodeprep boot`: apply limits and instance storage, link the NVIDIA device nodes under
//! `/dev/char`, then run every check and write the status file.

use std::time::{Duration, Instant};

use super::{load_config, print_report, say, UsageError, EXIT_NOT_READY, EXIT_READY};
use crate::apply::{self, Outcome, Plan};
use crate::capability::{limits, nvidia, storage};
use crate::cli::Global;
use crate::config::Mode;
use crate::host::Host;
use crate::run::{self, Phase};

/// Where boot records the effective configuration it applied (TOML, every key): what
/// `--if-config-changed` compares the config file with. /run: a new boot of the machine always
/// applies its config.
pub const APPLIED_CONFIG: &str = "/run/nodeprep/boot-config.toml";

pub(super) struct Options {
    pub dry_run: bool,
    pub lock_timeout: Duration,
    /// Exit 1 when a required check fails, not only when a step failed.
    pub strict: bool,
    /// Exit 0 at once when the config equals [`APPLIED_CONFIG`].
    pub if_config_changed: bool,
}

/// The effective configuration as boot records it.
fn effective(cfg: &crate::config::Config) -> String {
    toml::to_string(cfg).expect("config serializes")
}

/// Boot's exit status: 0 when it prepared the node (every step done or already in place, the
/// status file written), 1 when a step failed or was refused (a foreign disk, a hung read, the
/// lock), 2 for a config error (nothing changed). Failing checks are readiness, reported by the
/// status file and `nodeprep serve`: they make boot exit 1 only with `--strict`, because on a
/// normal first boot some cannot pass yet (device plugins register after kubelet starts, the
/// driver may load late) and a unit that fails on every healthy boot teaches people to ignore it.
pub(super) fn boot(g: &Global, host: Host, opts: Options) -> Result<u8, UsageError> {
    let Options { dry_run, lock_timeout, strict, if_config_changed } = opts;
    let started = Instant::now();
    // Every read boot makes is watched: one that does not return by its deadline (a hung device or
    // filesystem) ends boot naming it, instead of holding containerd and kubelet until systemd's
    // timeout. The checks keep their own deadlines and are not watched here.
    let inflight = std::sync::Arc::new(crate::host::Inflight::default());
    let host = host.watched(std::sync::Arc::clone(&inflight));
    let default = crate::config::ChecksConfig::default().timeout_seconds;
    let watch = Watchdog::start(g, inflight, Duration::from_secs(default));
    let cfg = load_config(g, &host)?;
    watch.set_deadline(Duration::from_secs(cfg.checks.timeout_seconds));
    let applied = effective(&cfg);
    // One boot at a time; held until this process ends. A dry run changes nothing and needs none.
    let _lock = if dry_run {
        None
    } else {
        let waiting = |holder: Option<u32>, path: &std::path::Path| {
            let who = holder.map_or(String::new(), |p| format!(" (pid {p})"));
            say(
                g,
                &format!("boot: waiting for another nodeprep boot{who} holding {}", path.display()),
            );
        };
        match apply::lock::acquire(&host, lock_timeout, waiting) {
            Ok(held) => {
                if held.waited >= Duration::from_millis(100) {
                    say(
                        g,
                        &format!(
                            "boot: the other boot finished after {:.1} s; going on",
                            held.waited.as_secs_f64()
                        ),
                    );
                }
                tracing::debug!(lock = %held.path.display(), waited_ms = held.waited.as_millis() as u64, "boot lock held");
                Some(held)
            }
            Err(e @ apply::lock::LockError::Timeout { .. }) => {
                tracing::error!(error = %e, "boot lock not taken");
                say(g, &format!("boot: FAIL: {e}"));
                return Ok(EXIT_NOT_READY);
            }
            // No lock file can be made (a full or read-only /run): no other boot can hold one
            // either; limits and storage matter more than the lock.
            Err(e) => {
                tracing::warn!(error = %e, "running without the boot lock");
                say(g, &format!("boot: warning: running without the boot lock: {e}"));
                None
            }
        }
    };
    // Compared under the lock: a boot still running records what it applied first.
    if if_config_changed {
        match host.read_string(APPLIED_CONFIG) {
            Ok(last) if last == applied => {
                say(g, &format!("boot: the configuration is the one the last boot applied ({}): nothing to do", host.display(APPLIED_CONFIG)));
                tracing::info!(record = %host.display(APPLIED_CONFIG), "configuration unchanged; boot not rerun");
                return Ok(EXIT_READY);
            }
            Ok(_) => say(
                g,
                "boot: the configuration changed since the last boot applied it: applying it",
            ),
            Err(_) => say(
                g,
                &format!(
                    "boot: no record of an applied configuration ({}): applying it",
                    host.display(APPLIED_CONFIG)
                ),
            ),
        }
    }
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
    let gpus = nvidia::plan(&nvidia::dev_char(host));
    if dry_run {
        let root = g.root.display();
        say(g, &format!("nodeprep boot --dry-run: nothing is changed (root {root})"));
        say(g, limits.render().trim_end());
        say(g, storage.render().trim_end());
        say(g, gpus.render().trim_end());
        return Ok(if storage.refuses() { EXIT_NOT_READY } else { EXIT_READY });
    }
    let mut failed = false;
    for plan in [&limits, &storage, &gpus] {
        failed |= apply_plan(g, host, plan);
    }
    // A refusal (a foreign disk, a partial array) changed nothing, and left the node unprepared.
    failed |= storage.refuses();
    watch.pause();
    let report = run::checks(&ctx, &selected, Phase::Boot);
    watch.resume();
    if let Err(e) = run::write_status(host, &report) {
        tracing::error!(error = %e, "status file not written");
        say(g, &format!("status: FAIL: {e}"));
        failed = true;
    }
    // Recorded whatever the outcome: a failed step is retried by restarting the unit, not by a
    // config change.
    if let Err(e) = apply::write_atomic(
        host,
        std::path::Path::new(APPLIED_CONFIG),
        &applied,
        0o644,
        apply::Durability::Volatile,
    ) {
        tracing::warn!(error = %e, "applied configuration not recorded");
    }
    print_report(g, &report, None);
    let code = if failed || (strict && !report.ready) { EXIT_NOT_READY } else { EXIT_READY };
    let verdict = match (failed, report.ready) {
        (true, _) => "boot: FAIL: a step failed or was refused (above)",
        (false, true) => "boot: the node is prepared; every required check passed",
        (false, false) if strict => "boot: the node is prepared; a required check failed (above; --strict: exit 1)",
        (false, false) => "boot: the node is prepared; a required check failed (above): readiness is `nodeprep serve`'s to report (exit 0; --strict makes it 1)",
    };
    say(g, verdict);
    tracing::info!(
        ready = report.ready,
        failed_steps = failed,
        exit = code,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "boot finished"
    );
    Ok(code)
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

/// Ends boot (exit 1) when one of its own reads has not returned by the deadline, naming the path.
/// What boot did before stays done: each step is atomic or picked up again by the next boot.
struct Watchdog {
    /// Reads started before the instant (or any, while paused: the checks' own reads) are not its
    /// concern; and the deadline.
    state: std::sync::Arc<std::sync::Mutex<(Option<Instant>, Duration)>>,
}

impl Watchdog {
    fn start(
        g: &Global,
        inflight: std::sync::Arc<crate::host::Inflight>,
        deadline: Duration,
    ) -> Watchdog {
        let state = std::sync::Arc::new(std::sync::Mutex::new((Some(Instant::now()), deadline)));
        let watching = std::sync::Arc::clone(&state);
        let text = matches!(g.format(), crate::cli::Output::Text);
        let spawned = std::thread::Builder::new().name("boot-watchdog".into()).spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let (from, deadline) = *watching.lock().unwrap_or_else(|e| e.into_inner());
            let Some(from) = from else { continue };
            if let Some((path, age)) = inflight.oldest_since(from).filter(|(_, a)| *a >= deadline) {
                let msg = format!(
                    "boot: FAIL: no answer reading {} for {:.0} s (checks.timeout_seconds): a hung device or filesystem, or a FIFO that blocks; boot stops here (what it did so far stays done) so that containerd and kubelet are not held",
                    path.display(),
                    age.as_secs_f64()
                );
                tracing::error!(path = %path.display(), stuck_ms = age.as_millis() as u64, "boot read stuck; exiting");
                // As `say` would: the report's stream in text, stderr beside JSON.
                if text {
                    println!("{msg}");
                } else {
                    eprintln!("{msg}");
                }
                std::process::exit(i32::from(EXIT_NOT_READY));
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no watchdog thread: boot's reads have no deadline");
        }
        Watchdog { state }
    }

    fn with<T>(&self, f: impl FnOnce(&mut (Option<Instant>, Duration)) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn set_deadline(&self, d: Duration) {
        self.with(|s| s.1 = d);
    }

    fn pause(&self) {
        self.with(|s| s.0 = None);
    }

    fn resume(&self) {
        self.with(|s| s.0 = Some(Instant::now()));
    }
}
