//! Prometheus metrics from each report (OpenMetrics text via `prometheus-client`).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::{Report, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckStatusLabels {
    check: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct XidLabels {
    xid: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    ready: Gauge,
    check_status: Family<CheckStatusLabels, Gauge>,
    check_required: Family<CheckLabels, Gauge>,
    check_duration: Family<CheckLabels, Gauge<f64, AtomicU64>>,
    run_duration: Gauge<f64, AtomicU64>,
    last_run: Gauge<f64, AtomicU64>,
    runs: Counter,
    status_file_errors: Counter,
    efa_up: Gauge,
    gpus: Gauge,
    xids: Family<XidLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("nodeprep");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            ready: Gauge::default(),
            check_status: Family::default(),
            check_required: Family::default(),
            check_duration: Family::default(),
            run_duration: Gauge::default(),
            last_run: Gauge::default(),
            runs: Counter::default(),
            status_file_errors: Counter::default(),
            efa_up: Gauge::default(),
            gpus: Gauge::default(),
            xids: Family::default(),
        };
        r.register("ready", "1 when every required check passed", m.ready.clone());
        r.register(
            "check_status",
            "1 for the current status of each check (pass, warn, fail, skip)",
            m.check_status.clone(),
        );
        r.register(
            "check_required",
            "1 when a failure of the check makes the node not ready",
            m.check_required.clone(),
        );
        r.register(
            "check_duration_seconds",
            "How long each check took in the last run",
            m.check_duration.clone(),
        );
        r.register(
            "run_duration_seconds",
            "How long the last check run took",
            m.run_duration.clone(),
        );
        r.register(
            "last_run_timestamp_seconds",
            "Unix time the last check run finished",
            m.last_run.clone(),
        );
        r.register("check_runs", "Check runs since start", m.runs.clone());
        r.register(
            "status_file_write_errors",
            "Failed writes of the status file",
            m.status_file_errors.clone(),
        );
        r.register(
            "efa_devices_up",
            "EFA devices with port ACTIVE, LinkUp and a uverbs device",
            m.efa_up.clone(),
        );
        r.register("gpus_healthy", "Healthy NVIDIA GPUs", m.gpus.clone());
        r.register(
            "xid_errors",
            "NVIDIA XID errors seen in the kernel log this boot, by XID",
            m.xids.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        r.register("build_info", "nodeprep version", build);
        *m.registry.lock().expect("registry lock") = r;
        m
    }

    pub fn update(&self, report: &Report, status_write_failed: bool) {
        self.ready.set(i64::from(report.ready));
        self.runs.inc();
        if status_write_failed {
            self.status_file_errors.inc();
        }
        self.run_duration.set(report.duration_ms as f64 / 1000.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_run.set(now);
        self.check_status.clear();
        self.check_duration.clear();
        self.check_required.clear();
        self.xids.clear();
        for c in &report.checks {
            for s in [Status::Pass, Status::Warn, Status::Fail, Status::Skip] {
                let labels = CheckStatusLabels { check: c.name.clone(), status: s.as_str().into() };
                self.check_status.get_or_create(&labels).set(i64::from(c.status == s));
            }
            let l = CheckLabels { check: c.name.clone() };
            self.check_duration.get_or_create(&l).set(c.duration_ms as f64 / 1000.0);
            self.check_required.get_or_create(&l).set(i64::from(c.required));
            let count = |key: &str| c.found.get(key).and_then(serde_json::Value::as_i64);
            match c.name.as_str() {
                "efa" => {
                    self.efa_up.set(count("devices").unwrap_or(0));
                }
                "nvidia" => {
                    self.gpus.set(count("gpus").unwrap_or(0));
                    for x in
                        c.found.get("xid_errors").and_then(|v| v.as_array()).into_iter().flatten()
                    {
                        if let Some(xid) = x.get("xid").and_then(serde_json::Value::as_u64) {
                            // One entry per (XID, GPU) with how often it was logged.
                            let n = x.get("count").and_then(serde_json::Value::as_i64).unwrap_or(1);
                            self.xids.get_or_create(&XidLabels { xid: xid.to_string() }).inc_by(n);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &self.registry.lock().expect("registry lock"),
        )
        .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CheckResult;

    #[test]
    fn report_becomes_metrics() {
        let efa =
            CheckResult::new("efa", Status::Fail, "31 of 32").required(true).found("devices", 31);
        let nv = CheckResult::new("nvidia", Status::Fail, "xid").required(true).found("gpus", 7).found(
            "xid_errors",
            serde_json::json!([{"xid": 79, "pci": "0000:53:00.0", "message": "x", "count": 3}, {"xid": 79, "pci": "0000:64:00.0", "message": "y", "count": 1}, {"xid": 13, "pci": "0000:53:00.0", "message": "z"}]),
        );
        let report = Report::new(Some("p5.48xlarge".into()), None, vec![efa, nv], 12);
        let m = Metrics::new();
        m.update(&report, true);
        let t = m.encode();
        for line in [
            "nodeprep_ready 0",
            "nodeprep_check_status{check=\"efa\",status=\"fail\"} 1",
            "nodeprep_check_status{check=\"efa\",status=\"pass\"} 0",
            "nodeprep_check_required{check=\"efa\"} 1",
            "nodeprep_efa_devices_up 31",
            "nodeprep_gpus_healthy 7",
            "nodeprep_xid_errors{xid=\"79\"} 4",
            "nodeprep_xid_errors{xid=\"13\"} 1",
            "nodeprep_check_runs_total 1",
            "nodeprep_status_file_write_errors_total 1",
            "nodeprep_build_info{version=\"",
            "nodeprep_run_duration_seconds 0.012",
        ] {
            assert!(t.contains(line), "{line} missing:\n{t}");
        }
        assert!(t.ends_with("# EOF\n"));
    }
}
