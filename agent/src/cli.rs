//! Command-line definition. Kept apart from the logic so packaging can generate the man page and
//! shell completions from it.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes (all commands):
  0  ready: every required check passed (warnings allowed)
  1  not ready: a required check failed
  2  usage or configuration error; nothing was changed

Examples:
  nodeprep check                           # all checks, table on stdout
  nodeprep check --only efa,nvidia -v      # two checks, with progress logs on stderr
  nodeprep --output json check | jq .ready
  nodeprep --root /host check              # a host mounted at /host (DaemonSet)
  nodeprep status                          # last report written by boot/serve, with its age
  nodeprep config show                     # every config key, its value and default
  nodeprep catalog p5.48xlarge             # what this instance type must have

Config: <root>/etc/nodeprep/config.toml (see `nodeprep config show`).
Logs go to stderr, or to journald when run by systemd; NODEPREP_LOG takes a tracing filter (e.g. debug).";

/// Prepares EC2 GPU/EFA Kubernetes nodes and tells the truth about whether they are ready.
///
/// nodeprep sets memlock/stack limits where pods get them, assembles instance-store NVMe, and checks
/// EFA devices, NVIDIA GPUs and device plugins against what the instance type must have.
#[derive(Debug, Parser)]
#[command(name = "nodeprep", version, about, long_about, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Host root: every host path (/sys, /proc, /dev, /etc, /run, /var/lib) is read under it. Not `/`:
    /// host commands (systemctl, mdadm, mkfs, mount) are never run, only reported as skipped.
    #[arg(long, global = true, env = "NODEPREP_ROOT", default_value = "/", value_name = "DIR")]
    pub root: PathBuf,

    /// Config file [default: <root>/etc/nodeprep/config.toml, which may be absent]. A file named here
    /// must exist.
    #[arg(long, global = true, env = "NODEPREP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Instance type, e.g. p5.48xlarge; skips discovery (config, DMI, IMDSv2).
    #[arg(long, global = true, env = "NODEPREP_INSTANCE_TYPE", value_name = "TYPE")]
    pub instance_type: Option<String>,

    /// Report format.
    #[arg(long, global = true, env = "NODEPREP_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// More log detail on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Less log detail: errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply limits and instance storage, then run every check and write the status file.
    Boot {
        /// Print the plan (each file and its diff, each command) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the checks and print a report. Never changes the host.
    Check {
        // Help from the registry of checks (capability::REGISTRY): names, when each runs, what it
        // checks.
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "NAME,...",
            help = crate::capability::only_help(),
            long_help = crate::capability::only_long_help()
        )]
        only: Vec<String>,
    },
    /// Recheck every serve.interval_seconds and serve /livez, /readyz, /status and /metrics.
    ///
    /// Endpoints answer from memory (the last report), never waiting on a check. Under systemd
    /// (Type=notify) it reports READY=1 after the first check and pings the watchdog while the check
    /// loop is healthy. SIGTERM stops it cleanly.
    Serve {
        /// Address to listen on [default: serve.listen, 127.0.0.1:9477]; port 0 picks a free port
        /// (printed on stdout).
        #[arg(long, value_name = "ADDR:PORT", value_parser = crate::config::parse_listen)]
        listen: Option<std::net::SocketAddr>,
        /// A second address that serves only /metrics [default: serve.metrics_listen, none], for a
        /// cluster Prometheus: the node's IP (the DaemonSet passes the downward API's
        /// status.hostIP). /livez, /readyz and /status stay on --listen.
        #[arg(
            long,
            value_name = "ADDR:PORT",
            env = "NODEPREP_METRICS_LISTEN",
            value_parser = crate::config::parse_listen
        )]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Print the last report (from boot or serve) with its age.
    Status {
        /// Run the checks now instead of reading the status file.
        #[arg(long)]
        fresh: bool,
    },
    /// Validate or print the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the embedded catalog: what each instance type must have.
    Catalog {
        /// One instance type (default: all).
        instance_type: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config file; exit 2 with file, line and key on the first error.
    Check,
    /// Print the effective configuration: every key with its value, meaning and default.
    Show,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
