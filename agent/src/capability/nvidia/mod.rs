//! `nvidia`: the GPUs the instance type promises are present and healthy, the driver answers, the
//! NVLink fabric is up as this GPU generation needs it, and the kernel has logged no fatal XID
//! error this boot.
//!
//! Each generation's own requirement is a named part of the check (`found.parts` in the report), with its remedy:
//! Blackwell HGX (p6-b200, p6-b300) needs NVLSM running beside the fabric manager; GB200
//! (p6e-gb200) needs the IMEX service, and its fabric manager state "not supported" is normal;
//! g4dn/g5/g5g run the proprietary kernel module with GSP firmware off. Every NVIDIA device node
//! needs its `/dev/char/MAJOR:MINOR` link (`boot` makes the missing ones: see [`plan`]).
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
mod plan;
pub mod xid;

use std::time::Duration;

pub use evaluate::{evaluate, model_matches};
pub use observe::{
    dev_char, dev_nodes, driver_number, fabric_unit, imex, nvlsm, observe,
    parse_enable_gpu_firmware, parse_proc_devices, parse_proc_version, pci_scan, CharLink, DevChar,
    FabricUnit, Gsp, Options, PciGpu, Snapshot,
};
pub use plan::plan;

use super::{Check, Context, Registration, When};
pub use crate::host::pci::{PciAddr, PCI_DEVICES};
use crate::report::{CheckResult, MetricDef, MetricKind};

pub const PROC_VERSION: &str = "/proc/driver/nvidia/version";
pub const FM_PID_FILE: &str = "/run/nvidia-fabricmanager/nv-fabricmanager.pid";
pub const FM_UNIT: &str = "nvidia-fabricmanager.service";
pub const PROC_PARAMS: &str = "/proc/driver/nvidia/params";
pub const NVLSM_PID_FILE: &str = "/run/nvlsm.pid";
pub const IMEX_UNIT: &str = "nvidia-imex.service";
pub const NVIDIA_VENDOR: &str = "0x10de";

/// What the node must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub instance_type: Option<String>,
    pub gpus: Option<u32>,
    pub gpu_model: Option<String>,
    pub nvswitch: Option<bool>,
    /// A fractional GPU (a slice of one): present and healthy, never counted as whole GPUs.
    pub fractional: bool,
    /// Blackwell HGX: NVLSM must run beside the fabric manager.
    pub nvlsm: bool,
    /// GB200: the IMEX service must run; fabric manager "not supported" is normal.
    pub imex: bool,
    /// The proprietary kernel module with GSP firmware off (g4dn, g5, g5g).
    pub gsp_off: bool,
    pub fatal_xids: Vec<u32>,
}

impl Expect {
    /// Whether the node must have NVIDIA GPUs (whole or a slice).
    pub fn needs_gpus(&self) -> bool {
        self.gpus.is_some_and(|n| n > 0) || self.fractional
    }
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
    about: "NVIDIA driver, GPUs, each generation's fabric, /dev/char, XIDs",
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
            fractional: ctx.expected.gpu_fraction,
            nvlsm: ctx.expected.nvlsm,
            imex: ctx.expected.imex,
            gsp_off: ctx.expected.gsp_off,
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
        Self::expect(ctx).needs_gpus()
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let want = Self::expect(ctx);
        let opts = Options {
            expected_gpus: if want.fractional { Some(1) } else { want.gpus },
            nvswitch: want.nvswitch == Some(true),
            nvlsm: want.nvlsm,
            imex: want.imex,
            gsp_off: want.gsp_off,
            deadlines: Self::deadlines(ctx),
            lib_env: std::env::var_os(nvml::LIB_ENV),
        };
        let snap = observe(&ctx.host, &opts);
        evaluate(&snap, &want)
    }
}
