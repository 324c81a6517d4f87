//! What each command does, from parsed arguments to an exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;

use crate::catalog::{self, Expected};
use crate::checks::{self, Context};
use crate::cli::{Cli, Command, ConfigCommand, Global, Output};
use crate::config::{self, Config};
use crate::host::Host;
use crate::identity;
use crate::report::{CheckResult, Report, Status, Style};

/// Exit codes (DESIGN.md).
pub const EXIT_READY: i32 = 0;
pub const EXIT_NOT_READY: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Path of the status file under the root.
pub const STATUS_FILE: &str = "/run/nodeprep/status.json";

/// An error that stops a command before it changes anything: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("configuration error: {0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Other(String),
}

/// Entry point of the binary: parses `std::env::args`, runs, returns the exit code.
pub fn main() -> std::process::ExitCode {
    let code = match Cli::try_parse() {
        Ok(cli) => run(cli),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_READY
            }
        }
    };
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

pub fn run(cli: Cli) -> i32 {
    let g = &cli.global;
    crate::logging::init(if g.quiet { -1 } else { g.verbose.min(10) as i8 });
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nodeprep: {e}");
            EXIT_USAGE
        }
    }
}

fn dispatch(cli: &Cli) -> Result<i32, UsageError> {
    let g = &cli.global;
    if !g.root.is_dir() {
        return Err(UsageError::Other(format!("--root {}: not a directory", g.root.display())));
    }
    if let Some(t) = &g.instance_type {
        // Same rule as the config key, so a typo is caught before anything runs.
        config::parse(
            &format!("instance_type = {}", toml::Value::String(t.clone())),
            Path::new("--instance-type"),
        )
        .map_err(|e| UsageError::Other(format!("--instance-type: {}", e.message)))?;
    }
    match &cli.command {
        Command::Check { only } => {
            let cfg = load_config(g)?;
            let selected = checks::select(only).map_err(|e| UsageError::Other(e.to_string()))?;
            let report = run_checks(g, cfg, &selected, false);
            print_report(g, &report, None);
            Ok(report.exit_code())
        }
        Command::Status { fresh } => status(g, *fresh),
        Command::Config(ConfigCommand::Check) => {
            let (_, origin) = config::load(&g.root, g.config.as_deref())?;
            println!("configuration ok: {origin}");
            Ok(EXIT_READY)
        }
        Command::Config(ConfigCommand::Show) => {
            let (cfg, origin) = config::load(&g.root, g.config.as_deref())?;
            print!("{}", config::show(&cfg, &origin));
            Ok(EXIT_READY)
        }
        Command::Catalog { instance_type } => catalog_cmd(g, instance_type.as_deref()),
        Command::Boot { dry_run } => boot(g, *dry_run),
        Command::Serve { listen } => {
            let cfg = load_config(g)?;
            crate::serve::run(g, cfg, *listen).map_err(UsageError::Other)
        }
    }
}

/// `boot`: apply limits and instance storage, then check and write the status file.
fn boot(g: &Global, dry_run: bool) -> Result<i32, UsageError> {
    let started = Instant::now();
    let ctx = prepare(g, load_config(g)?);
    let (host, cfg) = (&ctx.host, &ctx.config);
    let limits = crate::apply::limits::plan(
        &crate::checks::limits::observe(host),
        &cfg.limits,
        host.is_live(),
    );
    let t0 = Instant::now();
    let want = if cfg.storage.devices.is_empty() {
        ctx.expected.instance_store_disks.unwrap_or(0) as usize
    } else {
        cfg.storage.devices.len()
    };
    if cfg.storage.enabled != crate::config::Mode::Never && !dry_run {
        crate::checks::storage::wait_for_disks(host, &cfg.storage, want);
    }
    let storage_snap = crate::checks::storage::observe(host, &cfg.storage, true);
    tracing::debug!(
        disks = storage_snap.disks.len(),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "storage observed"
    );
    let storage = crate::apply::storage::plan(&storage_snap, &cfg.storage);
    // Text goes to stdout; with --output json, stdout carries only the report.
    let say = |line: &str| match g.output {
        Output::Text => println!("{line}"),
        Output::Json => eprintln!("{line}"),
    };
    if dry_run {
        say(&format!("nodeprep boot --dry-run: nothing is changed (root {})", g.root.display()));
        say(limits.render().trim_end());
        say(storage.render().trim_end());
        return Ok(if storage.refuses() { EXIT_NOT_READY } else { EXIT_READY });
    }
    let mut failed = false;
    for plan in [&limits, &storage] {
        tracing::info!(root = %g.root.display(), capability = plan.capability, actions = plan.actions.len(), "boot: applying");
        let t0 = Instant::now();
        let outcomes = crate::apply::execute(host, plan);
        let mut changed = false;
        for o in &outcomes {
            let (kind, text) = o.text();
            failed |= matches!(o, crate::apply::Outcome::Failed(_));
            changed |=
                matches!(o, crate::apply::Outcome::Done(_) | crate::apply::Outcome::Failed(_));
            say(&format!("{}: {kind}: {text}", plan.capability));
        }
        if !changed && !plan.skips() {
            say(&format!("{}: up to date", plan.capability));
        }
        tracing::info!(
            capability = plan.capability,
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "boot: applied"
        );
    }
    let selected = checks::select(&[]).map_err(|e| UsageError::Other(e.to_string()))?;
    let report = check_context(&ctx, &selected, true);
    if let Err(e) = write_status(host, &report) {
        tracing::error!(error = %e, "status file not written");
        say(&format!("status: FAIL: {e}"));
        failed = true;
    }
    print_report(g, &report, None);
    tracing::info!(
        ready = report.ready,
        failed_steps = failed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "boot finished"
    );
    Ok(if failed { EXIT_NOT_READY } else { report.exit_code() })
}

/// Replaces `<root>/run/nodeprep/status.json` atomically.
pub fn write_status(host: &Host, report: &Report) -> Result<(), String> {
    // /run is tmpfs: atomic rename, no fsync (serve rewrites it every interval).
    crate::apply::write_atomic(
        host,
        Path::new(STATUS_FILE),
        &report.to_json(),
        0o644,
        crate::apply::Durability::Volatile,
    )
    .map(|_| ())
}

fn load_config(g: &Global) -> Result<Config, UsageError> {
    let (cfg, origin) = config::load(&g.root, g.config.as_deref())?;
    tracing::debug!(config = %origin, "configuration loaded");
    Ok(cfg)
}

/// Identifies the node and what it must have: the context every check run uses.
pub fn prepare(g: &Global, cfg: Config) -> Arc<Context> {
    let host = Host::new(&g.root);
    let identity = identity::discover(&host, &cfg, g.instance_type.as_deref());
    let expected = Expected::new(identity.instance_type.as_deref(), &cfg.expect);
    Arc::new(Context { host, config: cfg, identity, expected })
}

/// Identifies the node, runs the selected checks and builds the report.
/// `at_boot`: checks that need kubelet are reported as skipped instead of run.
pub fn run_checks(
    g: &Global,
    cfg: Config,
    selected: &[Arc<dyn checks::Check>],
    at_boot: bool,
) -> Report {
    let started = Instant::now();
    let ctx = prepare(g, cfg);
    let mut report = check_context(&ctx, selected, at_boot);
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Runs the selected checks against a prepared context.
pub fn check_context(
    ctx: &Arc<Context>,
    selected: &[Arc<dyn checks::Check>],
    at_boot: bool,
) -> Report {
    let started = Instant::now();
    let timeout = Duration::from_secs(ctx.config.checks.timeout_seconds);
    let (now, later): (Vec<_>, Vec<_>) =
        selected.iter().cloned().partition(|c| !(at_boot && c.needs_kubelet()));
    let mut results = checks::run(Arc::clone(ctx), &now, timeout);
    for c in later {
        let skip = CheckResult::new(
            c.name(),
            Status::Skip,
            "not checked at boot: kubelet starts after `nodeprep boot`; `nodeprep check` and `serve` check it",
        );
        results.push(skip.required(c.required(ctx)));
    }
    let order = |name: &str| checks::ALL.iter().position(|n| *n == name).unwrap_or(usize::MAX);
    results.sort_by_key(|r| order(&r.name));
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

fn print_report(g: &Global, report: &Report, note: Option<&str>) {
    match g.output {
        Output::Json => print!("{}", report.to_json()),
        Output::Text => {
            if let Some(n) = note {
                println!("{n}");
            }
            print!("{}", report.to_text(Style::for_stdout()));
        }
    }
}

fn status(g: &Global, fresh: bool) -> Result<i32, UsageError> {
    let path: PathBuf = Host::new(&g.root).path(STATUS_FILE);
    if !fresh {
        match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<Report>(&text) {
                Ok(report) => {
                    let age = humantime::parse_rfc3339(&report.generated_at)
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .map(|d| {
                            humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
                        })
                        .unwrap_or_else(|| "unknown age".into());
                    print_report(
                        g,
                        &report,
                        Some(&format!("last report from {} ({age} old)", path.display())),
                    );
                    return Ok(report.exit_code());
                }
                Err(e) => eprintln!(
                    "nodeprep: {}: not a nodeprep report ({e}); running the checks now",
                    path.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if g.output == Output::Text {
                    println!(
                        "no status file at {} (boot/serve have not run); running the checks now",
                        path.display()
                    );
                }
            }
            Err(e) => {
                eprintln!("nodeprep: cannot read {}: {e}; running the checks now", path.display())
            }
        }
    }
    let cfg = load_config(g)?;
    let selected = checks::select(&[]).map_err(|e| UsageError::Other(e.to_string()))?;
    let report = run_checks(g, cfg, &selected, false);
    print_report(g, &report, None);
    Ok(report.exit_code())
}

fn catalog_cmd(g: &Global, only: Option<&str>) -> Result<i32, UsageError> {
    let all = catalog::all();
    let entries: Vec<_> = match only {
        Some(t) => match catalog::lookup(t).map(|e| (t, e)) {
            Some(kv) => vec![kv],
            None => {
                return Err(UsageError::Other(format!(
                    "{t} is not in the catalog; set [expect] in the config for it. Known: {}",
                    catalog::all().map(|(t, _)| t).collect::<Vec<_>>().join(", ")
                )))
            }
        },
        None => all.collect(),
    };
    match g.output {
        Output::Json => {
            let map: serde_json::Map<_, _> = entries
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::to_value(v).expect("entry serializes")))
                .collect();
            println!("{}", serde_json::to_string_pretty(&map).expect("catalog serializes"));
        }
        Output::Text => {
            println!(
                "{:<20} {:>4}  {:<6} {:>7}  {:<8} {:>4}  {:>16}",
                "TYPE", "GPUS", "MODEL", "GPU_MEM", "NVSWITCH", "EFA", "INSTANCE_STORE"
            );
            for (t, e) in entries {
                let store = if e.instance_store_disks > 0 {
                    format!("{} x {} GB", e.instance_store_disks, e.instance_store_disk_gb)
                } else {
                    "-".into()
                };
                let model = if e.gpus > 0 {
                    e.gpu_model
                } else if e.neuron_devices > 0 {
                    "neuron"
                } else {
                    "-"
                };
                let mem = if e.gpus > 0 { format!("{} GiB", e.gpu_memory_gib) } else { "-".into() };
                let gpus = if e.neuron_devices > 0 && e.gpus == 0 {
                    format!("{}n", e.neuron_devices)
                } else {
                    e.gpus.to_string()
                };
                println!(
                    "{t:<20} {gpus:>4}  {model:<6} {mem:>7}  {:<8} {:>4}  {store:>16}",
                    if e.nvswitch { "yes" } else { "no" },
                    e.efa
                );
            }
        }
    }
    Ok(EXIT_READY)
}
