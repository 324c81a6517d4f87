//! Prometheus metrics from each report, in the text format Prometheus clients speak: 0.0.4 by
//! default, OpenMetrics 1.0 when the scraper asks for it (`Accept`), as client libraries
//! negotiate. Series of a family come in label order, so two scrapes (and two processes) list
//! them alike.
//!
//! Generic families cover every check by name (status, required, duration); each check's own
//! metrics are the ones its registration declares, set from the typed values its result carries:
//! nothing here knows a check by name or reads a report's JSON. A declared metric the last run gave
//! no value for has no series (a check that timed out counts nothing, and says nothing false).
//!
//! Written here rather than with prometheus-client: that crate writes OpenMetrics only, and keeps
//! a family's series in a hash map whose order changes from process to process.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::capability::REGISTRY;
use crate::report::{MetricDef, MetricKind, Report, Status};

/// Which exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: what `promtool check metrics`, curl and old scrapers read.
    Text,
    /// `application/openmetrics-text; version=1.0.0`: what Prometheus asks for first.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it lists it with a quality no lower
    /// than plain text's, else text 0.0.4 (also for no header, `*/*`, and anything unknown).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        let (mut open, mut text) = (None::<f32>, None::<f32>);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let best = |slot: &mut Option<f32>| *slot = Some(slot.map_or(q, |s| s.max(q)));
            match media.as_str() {
                "application/openmetrics-text" => best(&mut open),
                "text/plain" | "text/*" | "*/*" => best(&mut text),
                _ => {}
            }
        }
        match open {
            Some(o) if o > 0.0 && o >= text.unwrap_or(0.0) => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// One family and its series (label values, in the family's label order → value).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    series: BTreeMap<Vec<String>, f64>,
}

impl Family {
    fn new(def: &'static MetricDef) -> Family {
        Family {
            name: def.name,
            help: def.help,
            kind: def.kind,
            labels: def.labels,
            series: BTreeMap::new(),
        }
    }

    fn set(&mut self, labels: &[&str], value: f64) {
        self.series.insert(labels.iter().map(|l| l.to_string()).collect(), value);
    }
}

const fn gauge(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> MetricDef {
    MetricDef { name, help, kind: MetricKind::Gauge, labels }
}

static READY: MetricDef = gauge("ready", "1 when every required check passed", &[]);
static CHECK_STATUS: MetricDef = gauge(
    "check_status",
    "1 for the current status of each check (pass, warn, fail, skip)",
    &["check", "status"],
);
static CHECK_REQUIRED: MetricDef =
    gauge("check_required", "1 when a failure of the check makes the node not ready", &["check"]);
static CHECK_DURATION: MetricDef =
    gauge("check_duration_seconds", "How long each check took in the last run", &["check"]);
static RUN_DURATION: MetricDef =
    gauge("run_duration_seconds", "How long the last check run took", &[]);
static LAST_RUN: MetricDef =
    gauge("last_run_timestamp_seconds", "Unix time the last check run finished", &[]);
static RUNS: MetricDef = MetricDef {
    name: "check_runs",
    help: "Check runs since start",
    kind: MetricKind::Counter,
    labels: &[],
};
static STATUS_ERRORS: MetricDef = MetricDef {
    name: "status_file_write_errors",
    help: "Failed writes of the status file",
    kind: MetricKind::Counter,
    labels: &[],
};
static STARTUP_TAINT: MetricDef = gauge(
    "startup_taint",
    "1 while the startup taint (kubernetes.startup_taint) is on the Node, 0 once removed",
    &["taint"],
);
static BUILD_INFO: MetricDef = gauge("build_info", "nodeprep version", &["version"]);

/// The families in the order they are written; where each check's own metrics start.
struct State {
    families: Vec<Family>,
}

pub struct Metrics {
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Index of the first check-declared family: the generic ones come first.
const GENERIC: usize = 9;

impl Metrics {
    pub fn new() -> Self {
        let generic: [&'static MetricDef; GENERIC] = [
            &READY,
            &CHECK_STATUS,
            &CHECK_REQUIRED,
            &CHECK_DURATION,
            &RUN_DURATION,
            &LAST_RUN,
            &RUNS,
            &STATUS_ERRORS,
            &STARTUP_TAINT,
        ];
        let mut families: Vec<Family> = generic.into_iter().map(Family::new).collect();
        families.extend(REGISTRY.iter().flat_map(|r| r.metrics.iter()).map(|d| Family::new(d)));
        let mut build = Family::new(&BUILD_INFO);
        build.set(&[env!("CARGO_PKG_VERSION")], 1.0);
        families.push(build);
        // The counters count from 0, before the first run too.
        for f in
            families.iter_mut().filter(|f| f.kind == MetricKind::Counter && f.labels.is_empty())
        {
            f.set(&[], 0.0);
        }
        Metrics { state: Mutex::new(State { families }) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sets every series from a report (the run counters count it).
    pub fn update(&self, report: &Report, status_write_failed: bool) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.with(|s| {
            let fam = |s: &mut State, def: &MetricDef| -> usize {
                s.families.iter().position(|f| f.name == def.name).expect("a registered family")
            };
            let f = fam(s, &READY);
            s.families[f].set(&[], f64::from(u8::from(report.ready)));
            let (status, required, duration) =
                (fam(s, &CHECK_STATUS), fam(s, &CHECK_REQUIRED), fam(s, &CHECK_DURATION));
            for i in [status, required, duration] {
                s.families[i].series.clear();
            }
            for c in &report.checks {
                for st in [Status::Pass, Status::Warn, Status::Fail, Status::Skip] {
                    let one = f64::from(u8::from(c.status == st));
                    s.families[status].set(&[&c.name, st.as_str()], one);
                }
                s.families[required].set(&[&c.name], f64::from(u8::from(c.required)));
                s.families[duration].set(&[&c.name], c.duration_ms as f64 / 1000.0);
            }
            let f = fam(s, &RUN_DURATION);
            s.families[f].set(&[], report.duration_ms as f64 / 1000.0);
            let f = fam(s, &LAST_RUN);
            s.families[f].set(&[], now);
            let f = fam(s, &RUNS);
            *s.families[f].series.entry(Vec::new()).or_default() += 1.0;
            if status_write_failed {
                let f = fam(s, &STATUS_ERRORS);
                *s.families[f].series.entry(Vec::new()).or_default() += 1.0;
            }
            // Each declared metric from this run's samples: values of one series add up.
            let end = s.families.len() - 1;
            for f in &mut s.families[GENERIC..end] {
                f.series.clear();
            }
            for sample in report.checks.iter().flat_map(|c| c.metrics.iter()) {
                let f = fam(s, sample.metric);
                *s.families[f].series.entry(sample.labels.clone()).or_default() += sample.value;
            }
        })
    }

    /// Whether the startup taint is on the Node (`None`: not configured, or not known yet).
    pub fn set_startup_taint(&self, taint: &str, present: Option<bool>) {
        self.with(|s| {
            let f = s.families.iter_mut().find(|f| f.name == STARTUP_TAINT.name).expect("family");
            f.series.clear();
            if let Some(p) = present {
                f.set(&[taint], f64::from(u8::from(p)));
            }
        })
    }

    pub fn encode(&self, format: Format) -> String {
        self.with(|s| encode(&s.families, format))
    }
}

/// The exposition of `families`: `# HELP`, `# TYPE`, then each series, `nodeprep_` before every
/// name; counters' samples end in `_total` (in text 0.0.4 their HELP and TYPE name it so too).
fn encode(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(4096);
    for f in families {
        let base = format!("nodeprep_{}", f.name);
        let sample = match f.kind {
            MetricKind::Counter => format!("{base}_total"),
            MetricKind::Gauge => base.clone(),
        };
        let (family, kind) = match (format, f.kind) {
            (Format::Text, MetricKind::Counter) => (sample.as_str(), "counter"),
            (Format::OpenMetrics, MetricKind::Counter) => (base.as_str(), "counter"),
            (_, MetricKind::Gauge) => (base.as_str(), "gauge"),
        };
        let help = f.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {family} {help}.");
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for (values, v) in &f.series {
            out.push_str(&sample);
            if !values.is_empty() {
                out.push('{');
                for (i, (k, val)) in f.labels.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let val = val.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                    let _ = write!(out, "{k}=\"{val}\"");
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*v));
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A value as the text formats write it: integers without a fraction, `+Inf`, `NaN`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CheckResult;

    #[test]
    fn accept_headers_choose_the_format_as_clients_do() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        let lower = "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5";
        assert_eq!(Format::negotiate(Some(lower)), Format::Text);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text; q=0")), Format::Text);
        assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
    }

    static PER: MetricDef = MetricDef {
        name: "test_things",
        help: "Things \\ with \"quotes\"",
        kind: MetricKind::Gauge,
        labels: &["thing", "where"],
    };

    #[test]
    fn both_formats_write_help_type_and_sorted_series() {
        let mut f = Family::new(&PER);
        f.set(&["b", "x"], 2.0);
        f.set(&["a", "line\nbreak \"q\""], 1.5);
        let mut runs = Family::new(&RUNS);
        runs.set(&[], 3.0);
        let families = [f, runs];
        let text = encode(&families, Format::Text);
        assert_eq!(
            text,
            "# HELP nodeprep_test_things Things \\\\ with \"quotes\".\n\
             # TYPE nodeprep_test_things gauge\n\
             nodeprep_test_things{thing=\"a\",where=\"line\\nbreak \\\"q\\\"\"} 1.5\n\
             nodeprep_test_things{thing=\"b\",where=\"x\"} 2\n\
             # HELP nodeprep_check_runs_total Check runs since start.\n\
             # TYPE nodeprep_check_runs_total counter\n\
             nodeprep_check_runs_total 3\n"
        );
        let open = encode(&families, Format::OpenMetrics);
        assert!(open.contains("# TYPE nodeprep_check_runs counter\nnodeprep_check_runs_total 3\n"));
        assert!(open.ends_with("# EOF\n"));
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(0.005), "0.005");
        assert_eq!(number(1_796_167_782.5), "1796167782.5");
    }

    #[test]
    fn a_report_becomes_metrics_from_typed_values_only() {
        use crate::capability::efa::EFA_DEVICES_UP;
        use crate::capability::nvidia::{GPUS_HEALTHY, XID_ERRORS};
        // The JSON says 32: only the typed values count.
        let efa = CheckResult::new("efa", Status::Fail, "31 of 32")
            .required(true)
            .found("devices", 32)
            .metric(&EFA_DEVICES_UP, [], 31.0);
        let nv = CheckResult::new("nvidia", Status::Fail, "xid")
            .required(true)
            .metric(&GPUS_HEALTHY, [], 7.0)
            .metric(&XID_ERRORS, ["79", "0000:53:00.0", "true"], 3.0)
            .metric(&XID_ERRORS, ["13", "0000:64:00.0", "false"], 1.0);
        let report = Report::new(Some("p5.48xlarge".into()), None, vec![efa, nv], 12);
        let m = Metrics::new();
        m.update(&report, true);
        let t = m.encode(Format::Text);
        for line in [
            "nodeprep_ready 0",
            "nodeprep_check_status{check=\"efa\",status=\"fail\"} 1",
            "nodeprep_check_status{check=\"efa\",status=\"pass\"} 0",
            "nodeprep_check_required{check=\"efa\"} 1",
            "nodeprep_efa_devices_up 31",
            "nodeprep_gpus_healthy 7",
            "nodeprep_xid_errors{xid=\"13\",pci=\"0000:64:00.0\",fatal=\"false\"} 1",
            "nodeprep_xid_errors{xid=\"79\",pci=\"0000:53:00.0\",fatal=\"true\"} 3",
            "nodeprep_check_runs_total 1",
            "nodeprep_status_file_write_errors_total 1",
            "nodeprep_build_info{version=\"",
            "nodeprep_run_duration_seconds 0.012",
        ] {
            assert!(t.contains(line), "{line} missing:\n{t}");
        }
        // A run whose checks gave no values (timed out): their series are gone, not 0.
        let timed_out =
            CheckResult::new("efa", Status::Fail, "did not finish").found("devices", 32);
        m.update(&Report::new(None, None, vec![timed_out], 1), false);
        let t = m.encode(Format::Text);
        let series = |name: &str| t.lines().any(|l| l.starts_with(name));
        assert!(!series("nodeprep_efa_devices_up") && !series("nodeprep_gpus_healthy"), "{t}");
        assert!(!t.contains("nodeprep_xid_errors{"), "{t}");
        assert!(t.contains("nodeprep_check_runs_total 2\n"), "{t}");
        m.set_startup_taint("nodeprep.io/not-ready", Some(true));
        let t = m.encode(Format::Text);
        assert!(t.contains("nodeprep_startup_taint{taint=\"nodeprep.io/not-ready\"} 1\n"), "{t}");
    }

    #[test]
    fn every_declared_metric_is_exported_from_the_first_scrape() {
        let t = Metrics::new().encode(Format::Text);
        for r in REGISTRY {
            for d in r.metrics {
                // Text 0.0.4 names a counter's family by its sample, `_total` included.
                let total = if d.kind == MetricKind::Counter { "_total" } else { "" };
                assert!(
                    t.contains(&format!("# HELP nodeprep_{}{total} {}.", d.name, d.help)),
                    "{}: {t}",
                    d.name
                );
            }
        }
        assert!(t.contains("nodeprep_check_runs_total 0\n"), "{t}");
    }
}
