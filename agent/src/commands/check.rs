//! `nodeprep check` and `nodeprep status`.

use std::time::{Duration, Instant, SystemTime};

use super::{exit_code, load_config, print_report, UsageError};
use crate::cli::{Global, Output};
use crate::host::Host;
use crate::report::Report;
use crate::run::{self, Phase, STATUS_FILE};

/// `check`: identifies the node, runs the selected checks, prints the report.
pub(super) fn check(g: &Global, host: Host, only: &[String], deep: bool) -> Result<u8, UsageError> {
    let cfg = load_config(g, &host)?;
    let selection = match deep {
        true => crate::capability::Selection::Deep,
        false => crate::capability::Selection::Plain,
    };
    let selected = crate::capability::select_with(only, selection)?;
    let report = fresh_report(g, host, cfg, &selected);
    print_report(g, &report, None);
    Ok(exit_code(&report))
}

/// A report of a fresh run; its duration includes identifying the node.
fn fresh_report(
    g: &Global,
    host: Host,
    cfg: crate::config::Config,
    selected: &[&'static crate::capability::Registration],
) -> Report {
    let started = Instant::now();
    let ctx = run::prepare(host, cfg, g.instance_type.as_deref(), crate::run::Purpose::Once);
    let mut report = run::checks(&ctx, selected, Phase::Running);
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// `status`: the last report (from boot or serve) with its age; a fresh run when there is none or
/// with `--fresh`.
pub(super) fn status(g: &Global, host: Host, fresh: bool) -> Result<u8, UsageError> {
    let path = host.display(STATUS_FILE);
    if !fresh {
        match host.read_string(STATUS_FILE) {
            Ok(text) => match serde_json::from_str::<Report>(&text) {
                Ok(report) => {
                    let age = humantime::parse_rfc3339(&report.generated_at)
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .map(|d| {
                            humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
                        })
                        .unwrap_or_else(|| "unknown age".into());
                    let note = format!("last report from {path} ({age} old)");
                    print_report(g, &report, Some(&note));
                    return Ok(exit_code(&report));
                }
                Err(e) => eprintln!(
                    "nodeprep: {path}: not a nodeprep report ({e}); running the checks now"
                ),
            },
            Err(e) if e.is_not_found() => {
                if g.format() == Output::Text {
                    super::out(&format!(
                        "no status file at {path} (boot/serve have not run); running the checks now\n"
                    ));
                }
            }
            Err(e) => eprintln!("nodeprep: {e}; running the checks now"),
        }
    }
    let cfg = load_config(g, &host)?;
    let report = fresh_report(g, host, cfg, &crate::capability::select(&[])?);
    print_report(g, &report, None);
    Ok(exit_code(&report))
}
