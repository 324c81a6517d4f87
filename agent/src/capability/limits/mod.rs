//! `limits`: the RLIMIT_MEMLOCK and RLIMIT_STACK a new pod gets, and `boot`'s plan to set them.
//!
//! A container's rlimits come from the OCI spec's `process.rlimits` when containerd's base runtime
//! spec sets them; otherwise the container inherits containerd's own limits (through the shim), which
//! come from its systemd unit (`LimitMEMLOCK=`), else systemd's default of 8 MiB. limits.d is read by
//! PAM for login sessions only and never reaches pods. EFA (libfabric) fails with ENOMEM when memlock
//! is low, so on EFA nodes this check is required.
//!
//! [`observe`] reads everything once; [`evaluate`] (the check) and [`plan`] (`boot`) decide from it.

mod canary;
mod evaluate;
mod observe;
mod plan;

pub use canary::CANARY;

pub use evaluate::evaluate;
pub use observe::{
    observe, parse_spec, parse_systemd_limit, spec_rlimit, Containerd, Snapshot, SpecState,
    UnitLimit,
};
pub use plan::{dropin_content, limits_d_content, plan, skipped_because, updated_spec};

use super::{Check, Context, Registration, When};
use crate::config::{Limit, LimitsConfig, Mode};
use crate::host::rdma;
use crate::report::{CheckResult, MetricDef, MetricKind};

/// Where EKS AMIs keep containerd's base runtime spec (their config.toml names it). containerd has
/// no default spec: it reads this file only when its config names it.
pub const BASE_RUNTIME_SPEC: &str = "/etc/containerd/base-runtime-spec.json";
pub const DROPIN: &str = "/etc/systemd/system/containerd.service.d/50-nodeprep-limits.conf";
pub const LIMITS_D: &str = "/etc/security/limits.d/50-nodeprep.conf";
/// systemd's DefaultLimitMEMLOCK (8 MiB since v253) and the kernel's default stack soft limit.
pub const SYSTEMD_DEFAULT: u64 = 8 << 20;
/// The value an OCI spec or setrlimit uses for "unlimited".
pub const RLIM_INFINITY: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memlock,
    Stack,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Memlock, Kind::Stack];
    pub fn key(self) -> &'static str {
        match self {
            Kind::Memlock => "memlock",
            Kind::Stack => "stack",
        }
    }
    pub fn oci(self) -> &'static str {
        match self {
            Kind::Memlock => "RLIMIT_MEMLOCK",
            Kind::Stack => "RLIMIT_STACK",
        }
    }
    pub fn systemd(self) -> &'static str {
        match self {
            Kind::Memlock => "LimitMEMLOCK",
            Kind::Stack => "LimitSTACK",
        }
    }
    pub fn wanted(self, cfg: &LimitsConfig) -> Limit {
        match self {
            Kind::Memlock => cfg.memlock,
            Kind::Stack => cfg.stack,
        }
    }
}

pub static POD_RLIMIT_BYTES: MetricDef = MetricDef {
    name: "pod_rlimit_bytes",
    help: "The memlock and stack limits new pods get, in bytes (+Inf: unlimited; absent: unknown)",
    kind: MetricKind::Gauge,
    labels: &["limit"],
};

/// The `limits` check's line in the registry.
pub static REGISTRATION: Registration = Registration {
    name: "limits",
    when: When::EveryRun,
    start_rank: 3,
    about: "memlock/stack limits that new pods get from containerd",
    metrics: &[&POD_RLIMIT_BYTES],
    check: &Limits,
};

pub struct Limits;

impl Limits {
    /// `efa_present` is asked only when the type and the config do not already decide.
    fn is_required(ctx: &Context, efa_present: impl FnOnce() -> bool) -> bool {
        ctx.expected.efa.is_some_and(|n| n > 0)
            || ctx.config.limits.apply == Mode::Always
            || efa_present()
    }
}

impl Check for Limits {
    fn required(&self, ctx: &Context) -> bool {
        Limits::is_required(ctx, || rdma::efa_present(&ctx.host))
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let snap = observe(&ctx.host);
        let required = Limits::is_required(ctx, || snap.efa_present);
        evaluate(&snap, &ctx.config.limits, required)
    }
}
