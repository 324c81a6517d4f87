//! `efa-loopback` (on demand): traffic through each EFA device and back with libfabric's
//! `fi_pingpong`, each under its deadline, bandwidth against `efa.loopback_min_gbps`. A loopback
//! proves the device, driver and libfabric work; it cannot prove the security group's
//! self-referencing rule, which only traffic between two nodes does.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::observe;
use crate::capability::{Check, Context, Registration, When};
use crate::host::fabric::{self, Pingpong};
use crate::report::{CheckResult, MetricDef, MetricKind, Status};

pub static EFA_LOOPBACK_GBPS: MetricDef = MetricDef {
    name: "efa_loopback_gbps",
    help: "Bandwidth of the last efa-loopback run through each device, Gbit/s",
    kind: MetricKind::Gauge,
    labels: &["domain"],
};

/// The loopback's line in the registry.
pub static LOOPBACK: Registration = Registration {
    name: "efa-loopback",
    when: When::OnDemand,
    start_rank: 0,
    about: "fi_pingpong through each EFA device and back: bandwidth, latency",
    metrics: &[&EFA_LOOPBACK_GBPS],
    check: &Loopback,
};

pub struct Loopback;

const NOT_THE_SG: &str = "a loopback cannot prove the security group's self-referencing rule (that needs traffic between two nodes)";

impl Check for Loopback {
    fn required(&self, ctx: &Context) -> bool {
        ctx.expected.efa.is_some_and(|n| n > 0)
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let cfg = &ctx.config.efa;
        let required = self.required(ctx);
        let r = CheckResult::new("efa-loopback", Status::Skip, "").required(required);
        if !ctx.host.is_live() {
            return r.summary(
                "not run: the loopback runs fi_pingpong, which only happens with --root /",
            );
        }
        let Some(bin) = fabric::find_pingpong(&ctx.host) else {
            return r
                .summary(format!("not run: fi_pingpong is not installed ({} or PATH)", fabric::EFA_BIN))
                .remedy("install libfabric's tools: the EFA installer (aws-efa-installer) puts fi_pingpong in /opt/amazon/efa/bin; Debian/Ubuntu: libfabric-bin; RHEL/AL2023: libfabric");
        };
        let domains: Vec<String> = if cfg.loopback_domains.is_empty() {
            let snap = observe(&ctx.host);
            snap.devices
                .iter()
                .filter(|d| d.has_verbs())
                .map(|d| format!("{}-rdm", d.name))
                .collect()
        } else {
            cfg.loopback_domains.clone()
        };
        let mut r = r
            .found("provider", cfg.loopback_provider.clone())
            .found("binary", bin.display().to_string());
        if domains.is_empty() {
            return r
                .summary("not run: no usable EFA device to loop through (the efa check says why)");
        }
        let mut results = Map::new();
        let mut slow = Vec::new();
        let mut failed = Vec::new();
        let mut worst: Option<(String, f64)> = None;
        for d in &domains {
            let p = Pingpong {
                bin: &bin,
                provider: &cfg.loopback_provider,
                endpoint: &cfg.loopback_endpoint,
                domain: d,
                size: cfg.loopback_size,
                iterations: 100,
                deadline: Duration::from_secs(cfg.loopback_timeout_seconds),
            };
            tracing::info!(domain = %d, provider = %cfg.loopback_provider, "efa loopback");
            match fabric::loopback(&p) {
                Ok(m) => {
                    let gbps = m.gbps();
                    r = r.metric(&EFA_LOOPBACK_GBPS, [d], gbps);
                    results.insert(d.clone(), json!({"gbps": round(gbps), "usec_per_xfer": round(m.usec_per_xfer), "ms": m.elapsed.as_millis() as u64}));
                    if gbps < cfg.loopback_min_gbps {
                        slow.push(format!("{d} {:.1} Gbit/s", gbps));
                    }
                    if worst.as_ref().is_none_or(|(_, w)| gbps < *w) {
                        worst = Some((d.clone(), gbps));
                    }
                }
                Err(e) => {
                    results.insert(d.clone(), json!({"error": e.to_string()}));
                    failed.push(format!("{d}: {e}"));
                }
            }
        }
        r = r.found("devices", Value::Object(results)).expect("min_gbps", cfg.loopback_min_gbps);
        let n = domains.len();
        if failed.is_empty() && slow.is_empty() {
            let w = worst.map_or(String::new(), |(d, g)| format!(", slowest {d} {g:.1} Gbit/s"));
            return r.status(Status::Pass).summary(format!(
                "{n} of {n} loopbacks at least {} Gbit/s{w}; {NOT_THE_SG}",
                cfg.loopback_min_gbps
            ));
        }
        let mut problems = failed.clone();
        if !slow.is_empty() {
            problems.push(format!("below {} Gbit/s: {}", cfg.loopback_min_gbps, slow.join(", ")));
        }
        r.status(if required { Status::Fail } else { Status::Warn })
            .summary(format!("{} of {n} loopbacks failed or slow: {}; {NOT_THE_SG}", failed.len() + slow.len(), problems.join("; ")))
            .remedy("a device that cannot loop traffic is broken on this node: `fi_info -p efa` lists what libfabric sees; reload the efa driver or replace the node. A slow one: check that nothing else saturates it, then compare with another node")
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
