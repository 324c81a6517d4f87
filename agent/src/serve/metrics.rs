//! Prometheus metrics from each report (OpenMetrics text via `prometheus-client`).
//!
//! Generic series cover every check by name (status, required, duration); each check's own
//! metrics are the ones its registration declares, set from the typed values its result carries:
//! nothing here knows a check by name or reads a report's JSON.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::capability::REGISTRY;
use crate::report::{MetricDef, Report, Sample, Status};

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
    /// The metrics of every check, as its registration declares them.
    checks: Vec<CheckMetric>,
}

/// One declared metric of a check: a gauge, or a family of gauges by its label.
enum CheckMetric {
    Gauge(&'static MetricDef, Gauge),
    Family(&'static MetricDef, Family<Vec<(String, String)>, Gauge>),
}

impl CheckMetric {
    fn def(&self) -> &'static MetricDef {
        match self {
            CheckMetric::Gauge(d, _) | CheckMetric::Family(d, _) => d,
        }
    }
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
            checks: REGISTRY
                .iter()
                .flat_map(|r| r.metrics.iter())
                .map(|&d| match d.label {
                    None => CheckMetric::Gauge(d, Gauge::default()),
                    Some(_) => CheckMetric::Family(d, Family::default()),
                })
                .collect(),
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
        for c in &m.checks {
            match c {
                CheckMetric::Gauge(d, g) => r.register(d.name, d.help, g.clone()),
                CheckMetric::Family(d, f) => r.register(d.name, d.help, f.clone()),
            }
        }
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
        for c in &report.checks {
            for s in [Status::Pass, Status::Warn, Status::Fail, Status::Skip] {
                let labels = CheckStatusLabels { check: c.name.clone(), status: s.as_str().into() };
                self.check_status.get_or_create(&labels).set(i64::from(c.status == s));
            }
            let l = CheckLabels { check: c.name.clone() };
            self.check_duration.get_or_create(&l).set(c.duration_ms as f64 / 1000.0);
            self.check_required.get_or_create(&l).set(i64::from(c.required));
        }
        // Each declared metric from the samples of this run: values with the same label add up;
        // a metric no check gave a value for reads 0 (a check that timed out counts nothing).
        let samples: Vec<&Sample> = report.checks.iter().flat_map(|c| c.metrics.iter()).collect();
        for m in &self.checks {
            let def = m.def();
            let mine = samples.iter().filter(|s| std::ptr::eq(s.metric, def));
            match m {
                CheckMetric::Gauge(_, g) => {
                    g.set(mine.map(|s| s.value).sum());
                }
                CheckMetric::Family(_, f) => {
                    f.clear();
                    let label = def.label.unwrap_or("label");
                    for s in mine {
                        let labels = vec![(label.to_string(), s.label.clone().unwrap_or_default())];
                        f.get_or_create(&labels).inc_by(s.value);
                    }
                }
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
        use crate::capability::efa::EFA_DEVICES_UP;
        use crate::capability::nvidia::{GPUS_HEALTHY, XID_ERRORS};
        // The JSON says 32: only the typed values count.
        let efa = CheckResult::new("efa", Status::Fail, "31 of 32")
            .required(true)
            .found("devices", 32)
            .metric(&EFA_DEVICES_UP, 31);
        let nv = CheckResult::new("nvidia", Status::Fail, "xid")
            .required(true)
            .metric(&GPUS_HEALTHY, 7)
            .metric_for(&XID_ERRORS, "79".into(), 3)
            .metric_for(&XID_ERRORS, "79".into(), 1)
            .metric_for(&XID_ERRORS, "13".into(), 1);
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
        // A run whose checks gave no values (timed out): the gauges read 0, the XIDs are gone.
        let timed_out =
            CheckResult::new("efa", Status::Fail, "did not finish").found("devices", 32);
        m.update(&Report::new(None, None, vec![timed_out], 1), false);
        let t = m.encode();
        assert!(
            t.contains("nodeprep_efa_devices_up 0") && t.contains("nodeprep_gpus_healthy 0"),
            "{t}"
        );
        assert!(!t.contains("nodeprep_xid_errors{"), "{t}");
    }

    #[test]
    fn every_declared_metric_is_exported_from_the_first_scrape() {
        let t = Metrics::new().encode();
        for r in REGISTRY {
            for d in r.metrics {
                assert!(
                    t.contains(&format!("# HELP nodeprep_{} {}", d.name, d.help)),
                    "{}: {t}",
                    d.name
                );
            }
        }
    }
}
