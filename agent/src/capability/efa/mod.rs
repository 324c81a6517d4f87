//! `efa`: the EFA interfaces EC2 attached, bound to the efa driver and usable, and their health.
//!
//! What the node must have is what was attached (EFA PCI functions, vendor `0x1d0f`, driver bound
//! or not): Karpenter attaches EFA only for pods that request it, so the instance type's maximum is
//! only a ceiling; `[expect] efa` asks for a count (or `"max"`). A device is usable when it has its
//! RDMA and uverbs devices and the efa driver logged no error for it this boot. Port state is
//! reported, never judged (the driver reports ACTIVE/LinkUp whatever happens). Hardware counters
//! are read every run (totals since boot); `serve` turns the error counters into rates and judges
//! them against `efa.rate_limits`. Traffic is the on-demand `efa-loopback` check
//! ([`loopback`]).

mod counters;
mod evaluate;
mod kmsg;
pub mod loopback;

pub use counters::{observe_counters, with_counters, Counters, ERROR_COUNTERS};
pub use evaluate::{evaluate, not_ready, Inputs};
pub use kmsg::{parse as parse_driver_error, DriverError};
pub use loopback::LOOPBACK;

use super::{Check, Context, Registration, When};
pub use crate::host::rdma::{Attached, Device, Scan as Snapshot};
use crate::host::{rdma, Host};
use crate::report::{CheckResult, MetricDef, MetricKind};

/// Reads the EFA devices under the root.
pub fn observe(host: &Host) -> Snapshot {
    rdma::efa_devices(host)
}

/// `boot`: waits up to `max` for attached EFA functions to get their RDMA and uverbs devices
/// (p5en's late initialisation); the time waited and how many are still not ready.
pub fn settle(host: &Host, max: std::time::Duration) -> (std::time::Duration, usize) {
    let start = std::time::Instant::now();
    loop {
        let (attached, _) = rdma::attached(host);
        let left = not_ready(&observe(host), &attached);
        if left == 0 || start.elapsed() >= max {
            return (start.elapsed(), left);
        }
        if start.elapsed().as_millis() % 5000 < 250 {
            tracing::info!(
                not_ready = left,
                waited_ms = start.elapsed().as_millis() as u64,
                "waiting for attached EFA devices to initialise"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

pub static EFA_DEVICES_UP: MetricDef = MetricDef {
    name: "efa_devices_up",
    help: "Usable EFA devices: bound, with a uverbs device, no efa driver error this boot (the efa check's found.devices)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static EFA_DEVICES_EXPECTED: MetricDef = MetricDef {
    name: "efa_devices_expected",
    help: "EFA devices this node must have: those attached, or what config asks (the efa check's expected.devices)",
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
    about: "EFA devices attached, bound, usable; driver errors, counters",
    metrics: &[
        &EFA_DEVICES_UP,
        &EFA_DEVICES_EXPECTED,
        &EFA_DEVICE_USABLE,
        &counters::EFA_PORT_ERRORS,
        &counters::EFA_HW_COUNTER,
        &counters::EFA_ERROR_RATE,
    ],
    check: &Efa,
};

pub struct Efa;

impl Check for Efa {
    fn required(&self, ctx: &Context) -> bool {
        ctx.expected.efa.is_some_and(|n| n > 0)
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let snap = observe(&ctx.host);
        let (attached, attach_errors) = rdma::attached(&ctx.host);
        let driver_errors = kmsg::errors(&ctx.host);
        let r = evaluate(&Inputs {
            snap: &snap,
            attached: &attached,
            attach_errors: &attach_errors,
            driver_errors: &driver_errors,
            expected: &ctx.expected,
            identity: &ctx.identity,
        });
        with_counters(r, &observe_counters(&ctx.host, &snap), ctx)
    }
}
