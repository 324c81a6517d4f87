//! `nvidia`: the GPUs the instance type promises are present and healthy, the driver answers, the
//! NVSwitch fabric is up, and the kernel has logged no fatal XID error this boot.
//!
//! GPUs are counted three ways and compared with the catalog: on PCI (vendor 0x10de, class
//! 0x0300xx/0x0302xx; NVSwitch bridges 0x0680xx are counted apart), as `/dev/nvidia<N>` nodes,
//! and by NVML. NVML (see [`nvml`]) also gives each GPU's name, UUID, bus id, memory, volatile
//! uncorrected ECC errors, pending page retirement and row remapping, and on NVSwitch types the
//! GPU fabric state. XID errors come from the kernel log (see [`xid`]) and are mapped to GPUs by
//! PCI address. [`observe`] reads everything once; [`evaluate`] decides, without touching the
//! host.
//!
//! Fabric manager: NVML's `nvmlDeviceGetGpuFabricInfo` (R525+) says whether each GPU's fabric
//! registration completed. When the driver lacks it or says "not supported", nodeprep falls back
//! to the `nvidia-fabricmanager` service, read-only: its pid file
//! (`/run/nvidia-fabricmanager/nv-fabricmanager.pid`, the unit's `PIDFile=`) naming a live
//! `nv-fabricmanager` process, else a non-empty `cgroup.procs` of `nvidia-fabricmanager.service`,
//! else (no such cgroup: not started by systemd) any such process in `/proc`. Running is all those
//! fallbacks can tell.

mod evaluate;
pub mod nvml;
mod observe;
pub mod xid;

use std::time::Duration;

pub use evaluate::{evaluate, model_matches};
pub use observe::{
    dev_nodes, fabric_unit, observe, parse_proc_version, pci_scan, FabricUnit, Options, PciGpu,
    Snapshot,
};

use super::{Check, Context, Registration, When};
pub use crate::host::pci::{PciAddr, PCI_DEVICES};
use crate::report::{CheckResult, MetricDef, MetricKind};

pub const PROC_VERSION: &str = "/proc/driver/nvidia/version";
pub const FM_PID_FILE: &str = "/run/nvidia-fabricmanager/nv-fabricmanager.pid";
pub const FM_UNIT: &str = "nvidia-fabricmanager.service";
pub const NVIDIA_VENDOR: &str = "0x10de";

/// What the node must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub instance_type: Option<String>,
    pub gpus: Option<u32>,
    pub gpu_model: Option<String>,
    pub nvswitch: Option<bool>,
    pub fatal_xids: Vec<u32>,
}

pub static GPUS_HEALTHY: MetricDef = MetricDef {
    name: "gpus_healthy",
    help: "Healthy NVIDIA GPUs (the nvidia check's found.gpus; 0 while a node-wide fault stops them all)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static GPUS_EXPECTED: MetricDef = MetricDef {
    name: "gpus_expected",
    help: "NVIDIA GPUs this node must have (the nvidia check's expected.gpus; absent when unknown)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static GPU_HEALTHY: MetricDef = MetricDef {
    name: "gpu_healthy",
    help: "1 for each GPU NVML answered for that is healthy, 0 for one that is not",
    kind: MetricKind::Gauge,
    labels: &["gpu", "pci"],
};
pub static XID_ERRORS: MetricDef = MetricDef {
    name: "xid_errors",
    help: "NVIDIA XID errors in the kernel log this boot, by XID and GPU PCI address",
    kind: MetricKind::Gauge,
    labels: &["xid", "pci", "fatal"],
};

/// The `nvidia` check's line in the registry.
pub static REGISTRATION: Registration = Registration {
    name: "nvidia",
    when: When::EveryRun,
    start_rank: 0,
    about: "NVIDIA driver, GPUs, NVSwitch fabric and XID errors",
    metrics: &[&GPUS_HEALTHY, &GPUS_EXPECTED, &GPU_HEALTHY, &XID_ERRORS],
    check: &Nvidia,
};

pub struct Nvidia;

impl Nvidia {
    fn expect(ctx: &Context) -> Expect {
        Expect {
            instance_type: ctx.expected.instance_type.clone(),
            gpus: ctx.expected.gpus,
            gpu_model: ctx.expected.gpu_model.clone(),
            nvswitch: ctx.expected.nvswitch,
            fatal_xids: ctx.config.nvidia.fatal_xids.clone(),
        }
    }

    /// Each NVML call gets `nvidia.nvml_timeout_ms`; all of them together get three quarters of
    /// the check's own deadline, so the check reports NVML's timeout itself.
    pub fn deadlines(ctx: &Context) -> nvml::Deadlines {
        let per_call = Duration::from_millis(ctx.config.nvidia.nvml_timeout_ms);
        let check = Duration::from_secs(ctx.config.checks.timeout_seconds);
        nvml::Deadlines { per_call, total: (check * 3 / 4).max(per_call) }
    }
}

impl Check for Nvidia {
    fn required(&self, ctx: &Context) -> bool {
        ctx.expected.gpus.is_some_and(|n| n > 0)
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let want = Self::expect(ctx);
        let opts = Options {
            expected_gpus: want.gpus,
            nvswitch: want.nvswitch == Some(true),
            deadlines: Self::deadlines(ctx),
            lib_env: std::env::var_os(nvml::LIB_ENV),
        };
        let snap = observe(&ctx.host, &opts);
        evaluate(&snap, &want)
    }
}
