//! Command-line definition. Kept apart from the logic so packaging can generate the man page and
//! shell completions from it.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit codes (all commands):
  0  ready: every required check passed (warnings allowed)
  1  not ready: a required check failed
  2  usage or configuration error; nothing was changed
  boot: 0 the node is prepared, 1 a step failed or was refused (checks count only with --strict)

Examples:
  nodeprep check                           # all checks, table on stdout
  nodeprep check --only efa,nvidia -v      # two checks, with progress logs on stderr
  nodeprep check --deep                    # also the on-demand checks (a canary pod through CRI)
  nodeprep --output json check | jq .ready
  nodeprep --root /host check              # a host mounted at /host (DaemonSet)
  nodeprep status                          # last report written by boot/serve, with its age
  nodeprep config show                     # every config key, its value and default
  nodeprep catalog p5.48xlarge             # what this instance type must have
  nodeprep bundle --output /tmp/b.tar.gz   # everything support needs, secrets redacted

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

    /// Report format: text or json. With `bundle`: the archive's path instead (`-`: stdout).
    #[arg(
        long,
        global = true,
        env = "NODEPREP_OUTPUT",
        default_value = "text",
        value_name = "text|json|FILE",
        value_parser = OutputArg::parse
    )]
    pub output: OutputArg,

    /// More log detail on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Less log detail: errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// `--output`: a report format, or (for `bundle` only) a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputArg {
    Format(Output),
    File(PathBuf),
}

impl OutputArg {
    fn parse(s: &str) -> Result<OutputArg, String> {
        match s {
            "text" => Ok(OutputArg::Format(Output::Text)),
            "json" => Ok(OutputArg::Format(Output::Json)),
            "" => Err("empty: give text, json, or (with bundle) a file".into()),
            file => Ok(OutputArg::File(file.into())),
        }
    }
}

impl Global {
    /// The report format (a file given to `bundle` reports in text).
    pub fn format(&self) -> Output {
        match self.output {
            OutputArg::Format(f) => f,
            OutputArg::File(_) => Output::Text,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply limits and instance storage, link NVIDIA device nodes under /dev/char, then run every
    /// check and write the status file.
    Boot {
        /// Print the plan (each file and its diff, each command) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// One boot runs at a time (a lock on /run/nodeprep/boot.lock): how long to wait for
        /// another before giving up (exit 1, naming the pid that holds it).
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        lock_timeout: u64,
        /// Also exit 1 when a required check fails. Without it boot's exit status says whether it
        /// prepared the node (limits, storage, links, status file): a GPU driver that has not
        /// loaded yet or device plugins not registered before kubelet are readiness, which
        /// `nodeprep serve` reports, not a failed boot.
        #[arg(long, conflicts_with = "dry_run")]
        strict: bool,
        /// Do nothing (exit 0) when the effective configuration equals the one the last boot
        /// applied (/run/nodeprep/boot-config.toml). nodeprep-reconfigure.service runs this when
        /// /etc/nodeprep/config.toml changes, e.g. written by userData after boot ran.
        #[arg(long, conflicts_with = "dry_run")]
        if_config_changed: bool,
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
        /// Also run the on-demand checks (they create things or take seconds): limits-canary
        /// makes a pod through containerd's CRI socket and reads the limits it really gets.
        #[arg(long, conflicts_with = "only")]
        deep: bool,
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
    /// Write a support bundle: one tar.gz with the report, config, units, journals, kernel log,
    /// mounts, containerd and kubelet config, NVIDIA and EFA facts. Secrets are never included.
    ///
    /// The archive has the EKS NodeDiagnostic categories (base/, device/, networking/, runtime/,
    /// system/) and manifest.json: every file with its source and size, what was truncated,
    /// redacted, absent, left out and why. Credential files (kubeconfigs, keys, tokens, userData)
    /// are never read; every text has its password/secret/token values replaced by REDACTED.
    /// Under --root other than / it holds the tree's files and runs no command (journalctl,
    /// systemctl, nvidia-smi, fi_info and ip are listed as not run). Exit code: the fresh report's
    /// (0 ready, 1 not ready); 2 when the bundle cannot be written.
    ///
    /// Examples:
    ///   sudo nodeprep bundle                           # ./nodeprep-bundle-<instance>-<time>.tar.gz
    ///   sudo nodeprep bundle --output /tmp/b.tar.gz --max-size 20M
    ///   kubectl -n nodeprep exec POD -- nodeprep --root /host bundle --output - > b.tar.gz
    #[command(verbatim_doc_comment)]
    Bundle {
        /// The largest archive to write, in bytes or with K, M or G (KiB, MiB, GiB). Each file
        /// keeps at most a quarter of it (up to 16 MiB, its end); files past the cap are left out
        /// and listed in the manifest.
        #[arg(long, value_name = "SIZE", default_value = "50M", value_parser = parse_size)]
        max_size: u64,
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
    /// Print the embedded catalog: what each instance type must have, and where that comes from.
    ///
    /// The catalog is generated from Karpenter's instance-types reference (GPUs, GPU model and
    /// memory, EFA maximum, NVMe instance-store total, Neuron devices, architecture) and a hand
    /// overlay with cited sources (NVSwitch, NVLSM, IMEX, GSP firmware off, the per-disk
    /// instance-store split, types Karpenter lacks). Without TYPE: one line per type, its SOURCE
    /// column `karpenter`, `karpenter+overlay` or `overlay`; `?` is unknown. With TYPE: every
    /// field of that entry and its full source text. With `--output json`: every field of each
    /// entry (`null`: unknown).
    Catalog {
        /// One instance type, e.g. p5.48xlarge (default: all).
        instance_type: Option<String>,
    },
    /// Find the NodePool, EC2NodeClass, DaemonSet and pod mistakes that leave GPU/EFA pods Pending.
    ///
    /// Reads YAML streams (multi-document, as `kubectl apply -f` takes them) and the JSON of
    /// `kubectl get -o json` lists: Pods, Deployments, StatefulSets, Jobs, CronJobs, DaemonSets,
    /// Karpenter NodePools and EC2NodeClasses, EKS Auto Mode NodePools and NodeClasses; other kinds
    /// are listed as skipped. Each finding names its rule, file:line, why and the fix. Exit 0 when
    /// no error-level finding, 1 when there is one, 2 when an input cannot be parsed.
    ///
    /// Rules: untolerated-nodepool-taint, near-miss-key, taint-nobody-tolerates,
    /// daemonset-does-not-tolerate, requirements-allow-no-efa, requirements-allow-no-gpu,
    /// label-domain, userdata-limits, two-disk-owners, startup-taint, efa-zones,
    /// hostpath-infiniband (README: `nodeprep lint`).
    Lint {
        /// Files, directories (every *.yaml, *.yml, *.json under them) or - for standard input.
        #[arg(required = true, value_name = "FILE|DIR|-")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config file; exit 2 with file, line and key on the first error.
    Check,
    /// Print the effective configuration: every key with its value, meaning and default.
    Show,
}

/// `50M`, `512K`, `1G` (binary multiples) or a number of bytes; at least 1 MiB.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 =
        num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 50M, 512K, 1048576)"))?;
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("{s} is too large"))?;
    if bytes < crate::bundle::MIN_MAX_BYTES {
        return Err(format!("{s} is below the least bundle, 1M (the manifest needs room)"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_and_outputs() {
        assert_eq!(parse_size("50M"), Ok(50 << 20));
        assert_eq!(parse_size("2048k"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("100K").unwrap_err().contains("below the least bundle"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("99999999999G").unwrap_err().contains("too large"));
        assert_eq!(OutputArg::parse("json"), Ok(OutputArg::Format(Output::Json)));
        assert_eq!(OutputArg::parse("-"), Ok(OutputArg::File("-".into())));
        assert!(OutputArg::parse("").is_err());
    }
}
