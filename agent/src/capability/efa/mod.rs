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
use crate::host::{rdma, Host};
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
    metrics: &[&EFA_DEVICES_UP, &EFA_DEVICES_EXPECTED, &EFA_DEVICE_USABLE],
    check: &Efa,
};

pub struct Efa;

impl Check for Efa {
    fn required(&self, ctx: &Context) -> bool {
        ctx.expected.efa.is_some_and(|n| n > 0)
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        evaluate(&observe(&ctx.host), ctx.expected.efa, &ctx.identity)
    }
}
