//! `efa`: every EFA interface the instance type has, up and usable.
//!
//! The facts come from [`crate::host::rdma`]: each EFA device's PCI ids, port state, uverbs device
//! and node, and the driver version. A device is usable when its port is ACTIVE/LinkUp and it has a
//! uverbs device and node. The count is compared with the catalog (or `[expect] efa`); the check is
//! required on types whose catalog lists EFA.

mod evaluate;

pub use evaluate::evaluate;

use super::{Check, Context, Registration, When};
pub use crate::host::rdma::{Device, Scan as Snapshot};
use crate::host::{rdma, Host, HostError};
use crate::report::{CheckResult, MetricDef, MetricKind};

/// Reads the EFA devices under the root.
pub fn observe(host: &Host) -> Snapshot {
    rdma::efa_devices(host)
}

pub static EFA_DEVICES_UP: MetricDef = MetricDef {
    name: "efa_devices_up",
    help:
        "EFA devices with port ACTIVE, LinkUp and a uverbs device (the efa check's found.devices)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static EFA_DEVICES_EXPECTED: MetricDef = MetricDef {
    name: "efa_devices_expected",
    help: "EFA devices this node must have (the efa check's expected.devices; absent when unknown)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static EFA_DEVICE_USABLE: MetricDef = MetricDef {
    name: "efa_device_usable",
    help: "1 for each EFA device that is usable, 0 for one that is not",
    kind: MetricKind::Gauge,
    labels: &["device"],
};

/// The `efa` check's line in the registry.
pub static REGISTRATION: Registration = Registration {
    name: "efa",
    when: When::EveryRun,
    start_rank: 1,
    about: "EFA devices present, up and usable through uverbs",
    metrics: &[&EFA_DEVICES_UP, &EFA_DEVICES_EXPECTED, &EFA_DEVICE_USABLE, &EFA_PORT_ERRORS],
    check: &Efa,
};

pub struct Efa;

impl Check for Efa {
    fn required(&self, ctx: &Context) -> bool {
        ctx.expected.efa.is_some_and(|n| n > 0)
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let snap = observe(&ctx.host);
        let r = evaluate(&snap, ctx.expected.efa, &ctx.identity);
        match ctx.sample_counters {
            true => with_counters(r, &observe_counters(&ctx.host, &snap)),
            false => r,
        }
    }
}

/// The port error counters the EKS node monitoring agent watches the rates of
/// (aws/eks-node-monitoring-agent `monitors/networking/efa/efa.go`).
pub const ERROR_COUNTERS: &[&str] = &[
    "rx_drops",
    "rdma_read_wr_err",
    "rdma_write_wr_err",
    "unresponsive_remote_events",
    "impaired_remote_conn_events",
    "retrans_timeout_events",
    "retrans_pkts",
    "retrans_bytes",
];

pub static EFA_PORT_ERRORS: MetricDef = MetricDef {
    name: "efa_port_errors",
    help: "EFA port error counters (ports/1/hw_counters), by device and counter; watch their rates",
    kind: MetricKind::Counter,
    labels: &["device", "counter"],
};

/// Each EFA device's error counters, and the reads that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub devices: Vec<(String, Vec<(String, u64)>)>,
    pub errors: Vec<HostError>,
}

/// Reads [`ERROR_COUNTERS`] of every EFA device of the snapshot.
pub fn observe_counters(host: &Host, snap: &Snapshot) -> Counters {
    let mut c = Counters::default();
    for d in &snap.devices {
        match rdma::port_counters(host, &d.name, ERROR_COUNTERS) {
            Ok(values) => c.devices.push((d.name.clone(), values)),
            Err(e) => c.errors.push(e),
        }
    }
    c
}

/// The counters as metrics, and their sums over the devices in the report (`found.port_errors`).
/// They inform; the verdict does not depend on them (a rate needs two samples: alert on it).
pub fn with_counters(mut r: CheckResult, c: &Counters) -> CheckResult {
    let mut sums: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (device, values) in &c.devices {
        for (counter, v) in values {
            r = r.metric(&EFA_PORT_ERRORS, [device, counter], *v as f64);
            *sums.entry(counter).or_default() += v;
        }
    }
    r = r.found("port_errors", serde_json::to_value(&sums).unwrap_or_default());
    if !c.errors.is_empty() {
        r = r.found("counter_errors", crate::capability::error_lines(&c.errors));
    }
    r
}
