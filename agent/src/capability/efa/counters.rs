//! EFA hardware counters: every counter of every device (device and port 1), as totals since the
//! driver loaded; in `serve`, the per-second rates of the error counters judged against
//! `efa.rate_limits` (the EKS node monitoring agent's bursts by default).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use super::Snapshot;
use crate::capability::Context;
use crate::config::Severity;
use crate::host::rdma::{self, PORT_SCOPE};
use crate::host::{Host, HostError};
use crate::report::{CheckResult, MetricDef, MetricKind, Status};

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
pub static EFA_HW_COUNTER: MetricDef = MetricDef {
    name: "efa_hw_stat",
    help: "Every EFA hardware counter, by device, scope (device: hw_counters, port1: ports/1/hw_counters) and name, as the driver exports it",
    kind: MetricKind::Counter,
    labels: &["device", "scope", "counter"],
};
pub static EFA_ERROR_RATE: MetricDef = MetricDef {
    name: "efa_error_rate",
    help: "Per-second rate of each EFA error counter with a limit in efa.rate_limits, over serve's last interval",
    kind: MetricKind::Gauge,
    labels: &["device", "counter"],
};

/// Each EFA device's counters, and the reads that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Device name and its `(scope, counter, value)`.
    pub devices: Vec<(String, Vec<rdma::Counter>)>,
    pub errors: Vec<HostError>,
}

/// Reads every hardware counter of every EFA device of the snapshot.
pub fn observe_counters(host: &Host, snap: &Snapshot) -> Counters {
    let mut c = Counters::default();
    for d in &snap.devices {
        match rdma::all_counters(host, &d.name) {
            Ok(values) => c.devices.push((d.name.clone(), values)),
            Err(e) => c.errors.push(e),
        }
    }
    c
}

fn per_second(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}/s")
    } else {
        format!("{v:.2}/s")
    }
}

/// The counters as metrics and totals (`found.counters`, `found.port_errors`); in `serve` the
/// rates of the error counters against their limits (`found.rates`, and a warning or failure per
/// `efa.rate_exceeded` when one is over). An unreadable counter is named in
/// `found.counter_errors` and leaves the verdict alone.
pub fn with_counters(mut r: CheckResult, c: &Counters, ctx: &Context) -> CheckResult {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut port_errors: BTreeMap<&str, u64> = BTreeMap::new();
    let now = Instant::now();
    let mut rates: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut over = Vec::new();
    let limits = &ctx.config.efa.rate_limits;
    let mut samples = ctx.samples.lock().ok();
    for (device, values) in &c.devices {
        for (scope, counter, v) in values {
            r = r.metric(&EFA_HW_COUNTER, [device, scope, counter], *v as f64);
            *totals.entry(counter.clone()).or_default() += v;
            if *scope == PORT_SCOPE {
                if let Some(name) = ERROR_COUNTERS.iter().find(|n| **n == counter.as_str()) {
                    r = r.metric(&EFA_PORT_ERRORS, [device, counter], *v as f64);
                    *port_errors.entry(name).or_default() += v;
                }
            }
            let Some(limit) = limits.get(counter) else { continue };
            if !ctx.sample_counters {
                continue;
            }
            let Some(samples) = samples.as_mut() else { continue };
            let key = format!("efa/{device}/{scope}/{counter}");
            let prev = samples.insert(key, (now, *v));
            // A counter that went down was reset (the driver reloaded): no rate this time.
            let Some((then, before)) = prev.filter(|(_, before)| *v >= *before) else { continue };
            let secs = now.duration_since(then).as_secs_f64();
            if secs <= 0.0 {
                continue;
            }
            let rate = (v - before) as f64 / secs;
            r = r.metric(&EFA_ERROR_RATE, [device, counter], rate);
            rates.entry(device.clone()).or_default().insert(counter.clone(), rate);
            if rate > *limit {
                over.push(format!(
                    "{device} {counter} {} (limit {})",
                    per_second(rate),
                    per_second(*limit)
                ));
            }
        }
    }
    r = r
        .found("port_errors", serde_json::to_value(&port_errors).unwrap_or_default())
        .found("counters", serde_json::to_value(&totals).unwrap_or_default());
    r = match ctx.sample_counters {
        true => r.found("rates", serde_json::to_value(&rates).unwrap_or_default()),
        false => r.found("rates", Value::Null).found(
            "rates_note",
            "counters are totals since the efa driver loaded; their rates need two samples: `nodeprep serve` reports them",
        ),
    };
    if !c.errors.is_empty() {
        r = r.found("counter_errors", crate::capability::error_lines(&c.errors));
    }
    if !over.is_empty() {
        r = r.found("rates_over_limit", over.clone());
        let worse = match ctx.config.efa.rate_exceeded {
            Severity::Fail if r.required => Status::Fail,
            _ => Status::Warn,
        };
        if r.status == Status::Pass || (r.status == Status::Warn && worse == Status::Fail) {
            r.status = worse;
        }
        if !r.summary.is_empty() {
            r.summary.push_str("; ");
        }
        r.summary.push_str(&format!("error counters rising: {}", over.join(", ")));
        let hint = "EFA error counters rising fast mean lost or retransmitted traffic: check the security group's self-referencing rule, the placement group, and `nodeprep check --only efa-loopback`; if one device alone keeps rising, drain and replace the node";
        r.remedy = Some(match r.remedy.take() {
            Some(prev) => format!("{prev}; {hint}"),
            None => hint.to_string(),
        });
    }
    r
}
