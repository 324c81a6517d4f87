//! `nodeprep bundle`: a fresh report, then everything support needs, into one tar.gz.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::{exit_code, load_config_and_origin, UsageError};
use crate::bundle::{self, Bundle, Category};
use crate::cli::{Global, Output, OutputArg};
use crate::host::Host;
use crate::report::Style;
use crate::run::{self, Phase, Purpose};

pub(super) fn bundle(g: &Global, host: Host, max_size: u64) -> Result<u8, UsageError> {
    let started = Instant::now();
    let (cfg, origin) = load_config_and_origin(g, &host)?;
    let shown = crate::config::show(&cfg, &origin);
    let selected = crate::capability::select(&[])?;
    // The checks as serve runs them: EFA error counters included.
    let ctx = run::prepare(host, cfg, g.instance_type.as_deref(), Purpose::Serve);
    let report = run::checks(&ctx, &selected, Phase::Running);
    let host = &ctx.host;
    tracing::info!(ready = report.ready, "bundle: checks done; collecting");

    let mut b = Bundle::new(max_size);
    let version = env!("CARGO_PKG_VERSION");
    b.add(Category::Base, "nodeprep/report.json", "nodeprep check (fresh)", &report.to_json());
    b.add(
        Category::Base,
        "nodeprep/report.txt",
        "nodeprep check (fresh)",
        &report.to_text(Style::Plain),
    );
    b.add(Category::Base, "nodeprep/config-effective.toml", "nodeprep config show", &shown);
    bundle::collect(&mut b, host);

    let now = SystemTime::now();
    let created = humantime::format_rfc3339_seconds(now).to_string();
    let hostname = host
        .read_attr("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect::<String>()
        })
        .filter(|h| !h.is_empty());
    let meta = serde_json::json!({
        "nodeprep_version": version,
        "created_at": created,
        "root": host.root().display().to_string(),
        "live": host.is_live(),
        "hostname": hostname,
        "instance_type": report.instance_type,
        "ready": report.ready,
        "max_size_bytes": max_size,
    });
    let (archive, summary) =
        b.finish(meta).map_err(|e| UsageError::Bundle(format!("building the archive: {e}")))?;

    let stamp: String = created.chars().filter(|c| *c != '-' && *c != ':').collect();
    let target = match &g.output {
        OutputArg::File(f) => f.clone(),
        OutputArg::Format(_) => PathBuf::from(format!(
            "nodeprep-bundle-{}-{stamp}.tar.gz",
            hostname.as_deref().unwrap_or("node")
        )),
    };
    let to_stdout = target.as_os_str() == "-";
    if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(&archive)
            .and_then(|_| out.flush())
            .map_err(|e| UsageError::Bundle(format!("writing the bundle to stdout: {e}")))?;
    } else {
        crate::apply::write_new_local(&target, &archive)
            .map_err(|e| UsageError::Bundle(format!("bundle not written: {e}")))?;
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        output = %target.display(),
        bytes = archive.len(),
        files = summary.files,
        redactions = summary.redactions,
        truncated = summary.truncated,
        left_out = summary.left_out,
        refused = summary.refused,
        duration_s = secs,
        "bundle written"
    );
    let line = format!(
        "nodeprep bundle: wrote {} ({} bytes, {} files; {} values redacted, {} files truncated, {} left out, {} credential files refused: see manifest.json) in {secs:.1} s",
        if to_stdout { "stdout".into() } else { target.display().to_string() },
        archive.len(),
        summary.files,
        summary.redactions,
        summary.truncated,
        summary.left_out,
        summary.refused,
    );
    match (g.format(), to_stdout) {
        (_, true) => eprintln!("{line}"),
        (Output::Json, false) => super::out(&format!(
            "{}\n",
            serde_json::json!({"path": target, "bytes": archive.len(), "summary": summary, "ready": report.ready})
        )),
        (Output::Text, false) => super::out(&format!("{line}\n")),
    }
    Ok(exit_code(&report))
}
