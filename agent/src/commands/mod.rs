//! The commands: from parsed arguments to an exit code. The only layer that knows the CLI; each
//! command opens the host once, loads the config, and hands a prepared run to the library.

mod boot;
mod bundle;
mod catalog;
mod check;
mod config;
mod lint;
mod serve;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand, Global, Output};
use crate::config::{Config, ConfigError};
use crate::host::Host;
use crate::report::{Report, Style};

/// Exit codes (DESIGN.md).
pub const EXIT_READY: u8 = 0;
pub const EXIT_NOT_READY: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// An error that stops a command before it changes anything: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error("--root {0}: not a directory")]
    Root(String),
    #[error("--instance-type: {0}")]
    InstanceType(String),
    #[error(transparent)]
    Select(#[from] crate::capability::SelectError),
    #[error("{0}")]
    Catalog(String),
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    #[error("--output {0}: a file is only for `nodeprep bundle`; reports are text or json")]
    OutputFile(String),
    #[error("{0}")]
    Bundle(String),
}

/// Entry point of the binary: parses `std::env::args`, runs, returns the exit code.
pub fn main() -> ExitCode {
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
    ExitCode::from(code)
}

/// Runs parsed arguments; the exit code.
pub fn run(cli: Cli) -> u8 {
    let g = &cli.global;
    let identifier = match cli.command {
        Command::Boot { .. } => "nodeprep-boot",
        _ => "nodeprep",
    };
    crate::logging::init(if g.quiet { -1 } else { g.verbose.min(10) as i8 }, identifier);
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nodeprep: {e}");
            EXIT_USAGE
        }
    }
}

fn dispatch(cli: &Cli) -> Result<u8, UsageError> {
    let g = &cli.global;
    let host = Host::new(&g.root);
    if !host.root_is_dir() {
        return Err(UsageError::Root(g.root.display().to_string()));
    }
    if let Some(t) = &g.instance_type {
        // Same rule as the config key, so a typo is caught before anything runs.
        crate::config::check_instance_type(t).map_err(UsageError::InstanceType)?;
    }
    if let (crate::cli::OutputArg::File(f), false) =
        (&g.output, matches!(cli.command, Command::Bundle { .. }))
    {
        return Err(UsageError::OutputFile(f.display().to_string()));
    }
    match &cli.command {
        Command::Bundle { max_size } => bundle::bundle(g, host, *max_size),
        Command::Check { only, deep } => check::check(g, host, only, *deep),
        Command::Status { fresh } => check::status(g, host, *fresh),
        Command::Config(ConfigCommand::Check) => config::check(g, &host),
        Command::Config(ConfigCommand::Show) => config::show(g, &host),
        Command::Catalog { instance_type } => catalog::catalog(g, instance_type.as_deref()),
        Command::Lint { paths } => lint::lint(g, &host, paths),
        Command::Boot { dry_run, lock_timeout, strict, if_config_changed } => boot::boot(
            g,
            host,
            boot::Options {
                dry_run: *dry_run,
                lock_timeout: Duration::from_secs(*lock_timeout),
                strict: *strict,
                if_config_changed: *if_config_changed,
            },
        ),
        Command::Serve { listen, metrics_listen } => {
            serve::serve(g, host, *listen, *metrics_listen)
        }
    }
}

fn load_config(g: &Global, host: &Host) -> Result<Config, UsageError> {
    load_config_and_origin(g, host).map(|(cfg, _)| cfg)
}

/// The config `--config` names (or the default file under the root) and where it came from.
fn load_config_and_origin(
    g: &Global,
    host: &Host,
) -> Result<(Config, crate::config::Origin), UsageError> {
    let (cfg, origin) = crate::config::load(host, g.config.as_deref().map(Path::new))?;
    tracing::debug!(config = %origin, "configuration loaded");
    Ok((cfg, origin))
}

/// Writes `text` to stdout. A reader that went away (`nodeprep check | head -1`) is not an error
/// worth a panic: the rest is dropped.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("nodeprep: writing to stdout: {e}");
        }
    }
}

/// A line of progress: on stdout with text output; on stderr with `--output json`, whose stdout
/// carries only the report.
fn say(g: &Global, line: &str) {
    match g.format() {
        Output::Text => out(&format!("{line}\n")),
        Output::Json => eprintln!("{line}"),
    }
}

fn print_report(g: &Global, report: &Report, note: Option<&str>) {
    match g.format() {
        Output::Json => out(&report.to_json()),
        Output::Text => {
            let mut text = note.map(|n| format!("{n}\n")).unwrap_or_default();
            text.push_str(&report.to_text(Style::for_stdout()));
            out(&text);
        }
    }
}

/// 0 when ready, 1 when not (DESIGN.md exit codes).
fn exit_code(report: &Report) -> u8 {
    if report.ready {
        EXIT_READY
    } else {
        EXIT_NOT_READY
    }
}
