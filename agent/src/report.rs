//! The report: what every command prints and what `serve` publishes (schema `nodeprep.report/v1`).
//!
//! `ready` is derived, never set: it is true exactly when no required check failed. The exit code
//! follows from it (0 ready, 1 not ready).

use std::fmt::Write as _;
use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const SCHEMA: &str = "nodeprep.report/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub status: Status,
    pub required: bool,
    pub summary: String,
    pub expected: Map<String, Value>,
    pub found: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// The failure is the hardware's (a GPU lost, a fatal XID, an EFA device that failed, a disk
    /// gone), not a configuration mistake: what replacing the node would fix. Read by the node
    /// repair bridge (`kubernetes.repair_conditions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_fault: Option<String>,
    pub duration_ms: u64,
    /// Typed values for `/metrics` (not in the JSON report: it carries the same facts by name).
    #[serde(skip)]
    pub metrics: Vec<Sample>,
}

/// A metric a check reports (`serve` exports it as `nodeprep_<name>`): declared by the check's
/// registration, so its help and type are there from the first scrape on.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    /// The labels that tell its series apart, in order (none: one series).
    pub labels: &'static [&'static str],
}

/// How Prometheus reads a metric's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value now.
    Gauge,
    /// A total that only grows (until its source restarts); exported with `_total`.
    Counter,
}

/// One value of a [`MetricDef`] from one check run, with its label values in the order the def
/// names them. Values of the same series add up. A metric the run gave no value for has no series:
/// what was not seen is not exported as 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: &'static MetricDef,
    pub labels: Vec<String>,
    pub value: f64,
}

impl CheckResult {
    pub fn new(name: &str, status: Status, summary: impl Into<String>) -> Self {
        CheckResult {
            name: name.to_string(),
            status,
            required: false,
            summary: summary.into(),
            expected: Map::new(),
            found: Map::new(),
            remedy: None,
            hardware_fault: None,
            duration_ms: 0,
            metrics: Vec::new(),
        }
    }

    /// Adds a value of `metric`; `labels` are its label values, in the def's order.
    pub fn metric<const N: usize>(
        mut self,
        metric: &'static MetricDef,
        labels: [&str; N],
        value: f64,
    ) -> Self {
        debug_assert_eq!(metric.labels.len(), N, "{}: label values", metric.name);
        let labels = labels.iter().map(|l| l.to_string()).collect();
        self.metrics.push(Sample { metric, labels, value });
        self
    }

    pub fn status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = summary.into();
        self
    }

    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    pub fn expect(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.expected.insert(key.to_string(), value.into());
        self
    }

    pub fn found(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.found.insert(key.to_string(), value.into());
        self
    }

    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    /// Marks the failure as the hardware's, with what failed.
    pub fn hardware_fault(mut self, what: impl Into<String>) -> Self {
        self.hardware_fault = Some(what.into());
        self
    }

    /// True when this result makes the node not ready.
    pub fn blocks_readiness(&self) -> bool {
        self.required && self.status == Status::Fail
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub ready: bool,
    pub instance_type: Option<String>,
    pub generated_at: String,
    pub duration_ms: u64,
    pub checks: Vec<CheckResult>,
    /// How the instance was identified (source, placement group, zone, why discovery failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Value>,
}

impl Report {
    pub fn new(
        instance_type: Option<String>,
        identity: Option<Value>,
        checks: Vec<CheckResult>,
        duration_ms: u64,
    ) -> Self {
        let ready = !checks.iter().any(CheckResult::blocks_readiness);
        Report {
            schema: SCHEMA.to_string(),
            ready,
            instance_type,
            generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string(),
            duration_ms,
            checks,
            identity,
        }
    }

    /// 0 when ready, 1 when not (DESIGN.md exit codes).
    pub fn exit_code(&self) -> i32 {
        if self.ready {
            0
        } else {
            1
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes") + "\n"
    }

    /// A readable table: one row per check, remedies under the rows that need them.
    pub fn to_text(&self, style: Style) -> String {
        let mut out = String::new();
        let verdict =
            if self.ready { style.paint("READY", GREEN) } else { style.paint("NOT READY", RED) };
        let blocking = self.checks.iter().filter(|c| c.blocks_readiness()).count();
        let itype = self.instance_type.as_deref().unwrap_or("unknown instance type");
        let _ = write!(out, "nodeprep: {itype}: {verdict}");
        if blocking > 0 {
            let _ = write!(
                out,
                " ({blocking} required check{} failed)",
                if blocking == 1 { "" } else { "s" }
            );
        }
        let _ = writeln!(out, "  [{} ms, {}]", self.duration_ms, self.generated_at);
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(5).max(5);
        let _ = writeln!(out, "{:<6}  {:<width$}  SUMMARY", "STATUS", "CHECK");
        for c in &self.checks {
            let (label, colour) = match c.status {
                Status::Pass => ("pass", GREEN),
                Status::Warn => ("warn", YELLOW),
                Status::Fail if c.required => ("FAIL", RED),
                Status::Fail => ("fail", RED),
                Status::Skip => ("skip", DIM),
            };
            // Pad before painting so escape codes do not break the columns.
            let label = style.paint(&format!("{label:<6}"), colour);
            let req = if c.required { "" } else { " (not required)" };
            let req = if c.status == Status::Fail { req } else { "" };
            let _ = writeln!(out, "{label}  {:<width$}  {}{req}", c.name, c.summary);
            if let Some(r) = &c.remedy {
                if matches!(c.status, Status::Fail | Status::Warn) {
                    let pad = " ".repeat(8 + width + 2);
                    let _ = writeln!(out, "{pad}{} {r}", style.paint("remedy:", BOLD));
                }
            }
        }
        out
    }
}

const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const DIM: &str = "2";
const BOLD: &str = "1";

/// Whether to colour text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Colour,
}

impl Style {
    /// Colour only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
    pub fn for_stdout() -> Style {
        if std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        {
            Style::Colour
        } else {
            Style::Plain
        }
    }

    fn paint(self, text: &str, code: &str) -> String {
        match self {
            Style::Plain => text.to_string(),
            Style::Colour => format!("\x1b[{code}m{text}\x1b[0m"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let efa = CheckResult::new("efa", Status::Fail, "31 of 32 EFA devices active")
            .required(true)
            .expect("devices", 32)
            .found("devices", 31)
            .found("down", vec!["rdmap79s0"])
            .remedy("relaunch the instance");
        let inst = CheckResult::new("instance", Status::Pass, "p5.48xlarge (DMI)");
        Report::new(Some("p5.48xlarge".into()), None, vec![inst, efa], 12)
    }

    #[test]
    fn ready_follows_required_failures_only() {
        assert!(!sample().ready);
        assert_eq!(sample().exit_code(), 1);
        let optional_fail = CheckResult::new("x", Status::Fail, "x").required(false);
        let warn = CheckResult::new("y", Status::Warn, "y").required(true);
        let r = Report::new(None, None, vec![optional_fail, warn], 1);
        assert!(r.ready);
        assert_eq!(r.exit_code(), 0);
    }

    #[test]
    fn json_matches_the_design_schema() {
        let v: Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["schema"], "nodeprep.report/v1");
        assert_eq!(v["ready"], false);
        assert_eq!(v["instance_type"], "p5.48xlarge");
        assert!(v["generated_at"].as_str().unwrap().ends_with('Z'));
        let efa = &v["checks"][1];
        assert_eq!(efa["name"], "efa");
        assert_eq!(efa["status"], "fail");
        assert_eq!(efa["required"], true);
        assert_eq!(efa["expected"]["devices"], 32);
        assert_eq!(efa["found"]["down"][0], "rdmap79s0");
        assert_eq!(efa["remedy"], "relaunch the instance");
        assert!(efa["duration_ms"].is_u64());
        // The report reads back unchanged (the status file round-trips).
        let back: Report = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(back.checks, sample().checks);
    }

    #[test]
    fn text_table_shows_status_summary_and_remedy_without_colour() {
        let t = sample().to_text(Style::Plain);
        assert!(t.starts_with("nodeprep: p5.48xlarge: NOT READY (1 required check failed)"), "{t}");
        assert!(t.contains("STATUS  CHECK     SUMMARY"), "{t}");
        assert!(t.contains("pass    instance  p5.48xlarge (DMI)"), "{t}");
        assert!(t.contains("FAIL    efa       31 of 32 EFA devices active\n"), "{t}");
        assert!(t.contains("remedy: relaunch the instance"), "{t}");
        assert!(!t.contains('\x1b'));
        let c = sample().to_text(Style::Colour);
        assert!(c.contains("\x1b[31mNOT READY\x1b[0m"));
    }
}
