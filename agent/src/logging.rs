//! Logging: journald when run by systemd, stderr otherwise. Every line carries structured fields.

use std::path::Path;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// True when systemd started us (it sets INVOCATION_ID / JOURNAL_STREAM) and journald listens.
pub fn under_systemd() -> bool {
    (std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some())
        && crate::host::local_exists(Path::new(JOURNALD_SOCKET))
}

/// `identifier`: the journal's SYSLOG_IDENTIFIER, the same as the unit's SyslogIdentifier= so that
/// `journalctl -t` shows these lines next to the command's stdout (`nodeprep-boot` for boot,
/// `nodeprep` otherwise). `verbosity`: -1 quiet, 0 default, 1.. per `-v`. Under systemd the default is one step louder
/// (info), because the journal is where boot progress is read. `NODEPREP_LOG` overrides everything
/// with a tracing filter.
pub fn init(verbosity: i8, identifier: &str) {
    let journald = if under_systemd() { tracing_journald::layer().ok() } else { None };
    let base = if journald.is_some() { 1 } else { 0 };
    let level = match base + verbosity {
        ..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let level: LevelFilter = level.parse().expect("a level name");
    // NODEPREP_LOG takes a full EnvFilter (regex-capable: costly to build); the default is a plain
    // target filter, built in microseconds, since `check` pays for it on every run.
    let filter = match std::env::var("NODEPREP_LOG").ok().and_then(|f| EnvFilter::try_new(f).ok()) {
        Some(env) => env.boxed(),
        None => {
            Targets::new().with_default(LevelFilter::WARN).with_target("nodeprep", level).boxed()
        }
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match journald {
        Some(layer) => registry.with(layer.with_syslog_identifier(identifier.into())).try_init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(false),
            )
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
