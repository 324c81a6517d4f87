//! Every config key documented ([`KEYS`]) and `config show`: the effective configuration as TOML,
//! each key with its meaning and default.

use super::{Config, Origin};

/// One documented key: its dotted name and what it means (the default comes from
/// `Config::default()`, so it cannot drift).
pub struct KeyDoc {
    pub key: &'static str,
    pub doc: &'static str,
}

/// Every configuration key, in the order `config show` prints them.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc { key: "instance_type", doc: "EC2 instance type; skips discovery (DMI, then IMDSv2). Unset: discover." },
    KeyDoc { key: "expect.gpus", doc: "NVIDIA GPUs this node must have. Unset: from the catalog." },
    KeyDoc { key: "expect.gpu_model", doc: "Text the GPU name must contain (e.g. \"H100\"). Unset: from the catalog." },
    KeyDoc { key: "expect.nvswitch", doc: "Whether NVSwitch/fabric manager is required. Unset: from the catalog." },
    KeyDoc {
        key: "expect.efa",
        doc: "EFA devices this node must have: a count, or \"max\" (the catalog's maximum). Unset: the EFA functions EC2 attached (Karpenter attaches them only for pods that request vpc.amazonaws.com/efa).",
    },
    KeyDoc { key: "expect.instance_store_disks", doc: "NVMe instance-store disks. Unset: from the catalog." },
    KeyDoc { key: "limits.apply", doc: "Set memlock/stack for containerd and pods: auto (when EFA devices exist) | always | never." },
    KeyDoc { key: "limits.memlock", doc: "RLIMIT_MEMLOCK for pods: \"unlimited\" or bytes (at least 65536)." },
    KeyDoc { key: "limits.stack", doc: "RLIMIT_STACK for pods: \"unlimited\" or bytes (at least 1048576)." },
    KeyDoc { key: "storage.enabled", doc: "Assemble and mount instance-store NVMe: auto (when such disks exist) | always | never." },
    KeyDoc { key: "storage.devices", doc: "Explicit block devices (/dev/...) to use instead of discovery." },
    KeyDoc { key: "storage.mount_point", doc: "Where the instance-store filesystem is mounted (absolute host path)." },
    KeyDoc { key: "storage.bind", doc: "Host directories bind-mounted onto the instance store, parent first." },
    KeyDoc {
        key: "storage.wait_seconds",
        doc: "How long boot waits for every expected instance-store disk to appear (NVMe enumeration can lag at boot).",
    },
    KeyDoc { key: "serve.listen", doc: "Address of the health endpoints (/livez, /readyz, /status, /metrics)." },
    KeyDoc {
        key: "serve.metrics_listen",
        doc: "A second address serving only /metrics, for a cluster Prometheus (e.g. the node IP). Empty: none.",
    },
    KeyDoc { key: "serve.interval_seconds", doc: "Seconds between check runs in `serve` (1..86400)." },
    KeyDoc { key: "serve.follow_kernel_log", doc: "Follow /dev/kmsg between runs: a fatal XID, fatal SXid or efa driver error reruns the checks at once (within a second) instead of at the next interval." },
    KeyDoc { key: "kubernetes.enabled", doc: "Set node conditions and remove the startup taint from `serve`." },
    KeyDoc { key: "kubernetes.node_name", doc: "Node object name. Empty: NODE_NAME env, then the hostname." },
    KeyDoc { key: "kubernetes.kubeconfig", doc: "Kubeconfig path. Empty: in-cluster service account." },
    KeyDoc { key: "kubernetes.startup_taint", doc: "Taint key removed once the node is ready, registered with Karpenter and its devices are usable (Karpenter startupTaints). Empty: none (e.g. the Node Readiness Controller removes its own)." },
    KeyDoc { key: "kubernetes.device_evidence", doc: "What shows the devices usable before the taint goes: auto (either) | extended-resources (nvidia.com/gpu, vpc.amazonaws.com/efa allocatable) | dra (the DRA drivers' ResourceSlices)." },
    KeyDoc { key: "kubernetes.repair_conditions", doc: "Also set AcceleratedHardwareReady / StorageReady / NetworkingReady False on hardware failures, for Karpenter node repair or EKS auto repair (not when the EKS node monitoring agent owns them)." },
    KeyDoc { key: "kubernetes.gate_deadline_seconds", doc: "After this long with the startup taint on, an Event on the Node names the blocker and nodeprep.io/Ready says GateTimedOut (60..86400; 0: never)." },
    KeyDoc { key: "kubernetes.gate_deadline_action", doc: "At the deadline also: keep-taint (nothing more) | repair (mark hardware failures repair-eligible)." },
    KeyDoc { key: "kubernetes.dra_drivers.gpu", doc: "DRA driver whose ResourceSlices publish the GPUs." },
    KeyDoc { key: "kubernetes.dra_drivers.efa", doc: "DRA driver whose ResourceSlices publish the EFA devices." },
    KeyDoc {
        key: "imds.enabled",
        doc: "Query IMDSv2 (instance type, placement group, zone): auto (only when --root is /) | always | never.",
    },
    KeyDoc { key: "imds.endpoint", doc: "IMDS base URL (plain http)." },
    KeyDoc { key: "imds.timeout_ms", doc: "Connect and read deadline of each IMDS request; one retry (100..10000)." },
    KeyDoc { key: "checks.timeout_seconds", doc: "Deadline of each check; a check past it fails (1..300)." },
    KeyDoc { key: "checks.max_read_bytes", doc: "The most bytes one read of a host file takes; a bigger file is refused, named (65536..1073741824)." },
    KeyDoc {
        key: "nvidia.fatal_xids",
        doc: "XID errors that fail the nvidia check (the GPU needs a reset or replacing); other XIDs warn.",
    },
    KeyDoc {
        key: "nvidia.nvml_timeout_ms",
        doc: "Deadline of each NVML call; a GPU that does not answer fails the check (100..60000, below checks.timeout_seconds).",
    },
    KeyDoc { key: "efa.init_wait_seconds", doc: "boot waits up to this long for attached EFA functions to get their RDMA and uverbs devices (p5en initialises late; 0..300)." },
    KeyDoc { key: "efa.rate_limits", doc: "Per-second rates of EFA hardware counters above which serve reports the device (defaults: the EKS node monitoring agent's bursts)." },
    KeyDoc { key: "efa.rate_exceeded", doc: "warn | fail: what a rate above its limit makes of the efa check." },
    KeyDoc { key: "efa.loopback_provider", doc: "libfabric provider of the on-demand efa-loopback check (efa; tcp or udp stand in where there is no EFA)." },
    KeyDoc { key: "efa.loopback_endpoint", doc: "Its endpoint type: rdm (efa) | msg | dgram." },
    KeyDoc { key: "efa.loopback_domains", doc: "Its libfabric domains. Empty: one per usable EFA device (<device>-rdm); required for other providers." },
    KeyDoc { key: "efa.loopback_min_gbps", doc: "Bandwidth each device's loopback must reach, in Gbit/s." },
    KeyDoc { key: "efa.loopback_size", doc: "Message size of the loopback, bytes." },
    KeyDoc { key: "efa.loopback_timeout_seconds", doc: "Deadline of each device's loopback (1..300)." },
];

/// Renders the effective configuration as TOML, every key with its documentation and default.
pub fn show(cfg: &Config, origin: &Origin) -> String {
    let effective = toml::Value::try_from(cfg).expect("config serializes");
    let defaults = toml::Value::try_from(Config::default()).expect("config serializes");
    let mut out = format!("# nodeprep effective configuration\n# source: {origin}\n# keys marked \"(changed)\" differ from the default.\n");
    let mut section = "";
    for k in KEYS {
        let (table, name) = k.key.rsplit_once('.').unwrap_or(("", k.key));
        if table != section {
            out.push_str(&format!("\n[{table}]\n"));
            section = table;
        }
        let value = lookup(&effective, k.key);
        let default = lookup(&defaults, k.key);
        let default_text = default.map_or("unset".to_string(), |v| v.to_string());
        let changed = if value != default { " (changed)" } else { "" };
        out.push_str(&format!("# {} Default: {default_text}.{changed}\n", k.doc));
        match value {
            Some(v) => out.push_str(&format!("{name} = {v}\n")),
            None => out.push_str(&format!("# {name} =\n")),
        }
    }
    out
}

fn lookup<'a>(v: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted.split('.').try_fold(v, |v, part| v.get(part))
}
