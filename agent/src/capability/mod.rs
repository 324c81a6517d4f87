//! Capabilities: one module (a folder where it has observe/evaluate/plan parts) per thing a node
//! must have, each a read-only check through [`Host`], and, where nodeprep changes the host
//! (limits, storage), the plan `boot` applies.
//!
//! [`REGISTRY`] is the one list of checks: name, when each runs, its start rank, a line about it
//! and the metrics it reports. `--only` and its help, the start order, the report order, the
//! README's check table (a test compares them) and `serve`'s metrics all derive from it. Adding a
//! check is its module and one line here.
//!
//! No capability imports another: a fact two of them need lives in [`crate::host`].

pub mod device_plugins;
pub mod efa;
pub mod instance;
pub mod limits;
pub mod nvidia;
pub mod runner;
pub mod storage;

use crate::catalog::Expected;
use crate::config::Config;
use crate::host::{ErrorKind, Host, HostError};
use crate::identity::Identity;
use crate::report::{CheckResult, MetricDef};

/// Everything a check may look at: built once per process from `--root`, the config and the
/// node's identity (see `crate::run`).
pub struct Context {
    pub host: Host,
    pub config: Config,
    pub identity: Identity,
    pub expected: Expected,
    /// Also read what only a series over time makes sense of (EFA error counters): `serve` does;
    /// a one-shot `check` does not spend the reads.
    pub sample_counters: bool,
    /// Results of checks that run once per `serve` process ([`When::OnDemandOnceInServe`]), kept
    /// once they are conclusive.
    pub once: std::sync::Mutex<std::collections::HashMap<&'static str, CheckResult>>,
    /// The previous sample of each counter a check turns into a rate (`serve`): key, when, value.
    pub samples: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
    /// Checks a worker is running now, since when, and whether they said they are required: a
    /// check still stuck from an earlier run is reported, not started again (one thread each).
    pub running:
        std::sync::Mutex<std::collections::HashMap<&'static str, (std::time::Instant, bool)>>,
}

/// A check: a read-only look at the host that ends in a verdict.
pub trait Check: Sync {
    /// Whether a failure makes the node not ready. Asked before running (on the worker, under the
    /// deadline), so a check that times out still counts as it should.
    fn required(&self, ctx: &Context) -> bool;
    fn run(&self, ctx: &Context) -> CheckResult;
}

/// When a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// In every `check`, `boot` and `serve` run.
    EveryRun,
    /// Of what kubelet does: `boot` runs before kubelet starts and reports it as skipped; `check`
    /// and `serve` run it.
    AfterKubelet,
    /// Only when named (`--only NAME`) or with `check --deep`: it takes seconds or creates things.
    OnDemand,
    /// On demand in `check`, and once in `serve` (rerun until a run is conclusive, e.g. until
    /// containerd is up).
    OnDemandOnceInServe,
}

impl When {
    pub fn describe(self) -> &'static str {
        match self {
            When::EveryRun => "every run",
            When::AfterKubelet => "after kubelet: boot skips it",
            When::OnDemand => "on demand: only when named or with --deep",
            When::OnDemandOnceInServe => "on demand: only when named or with --deep; once in serve",
        }
    }
}

/// One line of the registry.
pub struct Registration {
    /// The name in reports, `--only` and metrics labels (DESIGN.md).
    pub name: &'static str,
    pub when: When,
    /// Checks start in rank order, lowest first: the longest first, so a run ends soonest. NVML's
    /// init takes hundreds of milliseconds on a real 8-GPU node; EFA and storage read a few hundred
    /// sysfs files.
    pub start_rank: u8,
    /// What it checks, in one line (help text and the README's table).
    pub about: &'static str,
    /// The metrics its results carry (`serve` registers them at start).
    pub metrics: &'static [&'static MetricDef],
    pub check: &'static dyn Check,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("name", &self.name).field("when", &self.when).finish()
    }
}

/// Every check, in report order.
pub static REGISTRY: &[&Registration] = &[
    &instance::REGISTRATION,
    &limits::REGISTRATION,
    &limits::CANARY,
    &efa::REGISTRATION,
    &efa::LOOPBACK,
    &nvidia::REGISTRATION,
    &storage::REGISTRATION,
    &device_plugins::REGISTRATION,
];

/// The names of every check, in report order.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|r| r.name)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("unknown check `{name}`; known checks: {known}")]
    Unknown { name: String, known: String },
}

/// Which checks a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every check that is not on demand (plain `check`, `boot`).
    Plain,
    /// Every check, on-demand ones too (`check --deep`).
    Deep,
    /// What `serve` runs: every check but the on-demand-only ones.
    Serve,
}

impl When {
    fn in_selection(self, s: Selection) -> bool {
        matches!(
            (self, s),
            (When::EveryRun | When::AfterKubelet, _)
                | (_, Selection::Deep)
                | (When::OnDemandOnceInServe, Selection::Serve)
        )
    }
}

/// The checks to run: those of `selection`, or exactly those named in `--only` (in report order).
pub fn select(only: &[String]) -> Result<Vec<&'static Registration>, SelectError> {
    select_from(REGISTRY, only, Selection::Plain)
}

/// [`select`] with a selection other than the plain one when `--only` names nothing.
pub fn select_with(
    only: &[String],
    selection: Selection,
) -> Result<Vec<&'static Registration>, SelectError> {
    select_from(REGISTRY, only, selection)
}

fn select_from(
    registry: &[&'static Registration],
    only: &[String],
    selection: Selection,
) -> Result<Vec<&'static Registration>, SelectError> {
    if let Some(bad) = only.iter().find(|n| !registry.iter().any(|r| r.name == n.as_str())) {
        let known = registry.iter().map(|r| r.name).collect::<Vec<_>>().join(", ");
        return Err(SelectError::Unknown { name: bad.clone(), known });
    }
    Ok(registry
        .iter()
        .filter(|r| match only.is_empty() {
            true => r.when.in_selection(selection),
            false => only.iter().any(|o| o == r.name),
        })
        .copied()
        .collect())
}

/// `--only`'s help: the names, from the registry.
pub fn only_help() -> String {
    format!("Run only these checks (comma-separated): {}", names().collect::<Vec<_>>().join(", "))
}

/// `--only`'s long help (`--help`, the man page): every check, when it runs and what it checks.
pub fn only_long_help() -> String {
    let mut s = only_help();
    s.push_str(".\n\nChecks, in report order:");
    for r in REGISTRY {
        s.push_str(&format!("\n  {:<15} {}", r.name, r.about));
        if r.when != When::EveryRun {
            s.push_str(&format!(" ({})", r.when.describe()));
        }
    }
    s
}

/// Each error as a person reads it (`reading /sys/...: Permission denied (os error 13)`).
pub fn error_lines(errors: &[HostError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// What to do about host reads that failed, by why they failed, each kind once: run as root
/// (denied), read again (absent: the device went away while it was read), or `fix` (the host is
/// in a bad state). `fix` is the capability's own last resort.
pub fn read_failure_remedy(errors: &[HostError], fix: &str) -> String {
    let has = |k: ErrorKind| errors.iter().any(|e| e.kind == k);
    let mut parts = Vec::new();
    if has(ErrorKind::Denied) {
        parts.push(format!(
            "run nodeprep as root (the paths above could not be read); if root cannot read them \
             either, {fix}"
        ));
    }
    if has(ErrorKind::Absent) {
        parts.push(format!(
            "the paths above vanished while they were read (a device reset, hot-unplug or driver \
             reload): run the check again; if they stay missing, {fix}"
        ));
    }
    if has(ErrorKind::Malformed) {
        parts.push(format!("the files above are not in the format the kernel writes: {fix}"));
    }
    if has(ErrorKind::Other) {
        parts.push(format!("the kernel failed to read the paths above: {fix}"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    struct Nothing;
    impl Check for Nothing {
        fn required(&self, _: &Context) -> bool {
            false
        }
        fn run(&self, _: &Context) -> CheckResult {
            CheckResult::new("x", Status::Pass, "")
        }
    }

    #[test]
    fn remedies_for_failed_reads_follow_why_they_failed() {
        let e = |kind, detail: &str| HostError {
            op: "reading",
            path: "/r/x".into(),
            kind,
            detail: detail.into(),
        };
        let denied = e(ErrorKind::Denied, "Permission denied (os error 13)");
        let absent = e(ErrorKind::Absent, "No such file or directory (os error 2)");
        let r = read_failure_remedy(std::slice::from_ref(&denied), "relaunch");
        assert_eq!(
            r,
            "run nodeprep as root (the paths above could not be read); if root cannot read them \
             either, relaunch"
        );
        let r = read_failure_remedy(std::slice::from_ref(&absent), "relaunch");
        assert!(r.starts_with("the paths above vanished while they were read"), "{r}");
        assert!(!r.contains("root"), "{r}");
        let r = read_failure_remedy(&[absent.clone(), denied, absent], "relaunch");
        assert_eq!(r.matches("relaunch").count(), 2, "each kind once: {r}");
        let odd = e(ErrorKind::Malformed, "not a PCI address");
        assert!(
            read_failure_remedy(&[odd], "x").starts_with("the files above are not in the format")
        );
        assert_eq!(error_lines(&[e(ErrorKind::Other, "EIO")]), ["reading /r/x: EIO"]);
    }

    #[test]
    fn selection_follows_the_registry_and_names_unknown_checks() {
        let all: Vec<&str> = select(&[]).unwrap().iter().map(|c| c.name).collect();
        assert_eq!(all, ["instance", "limits", "efa", "nvidia", "storage", "device-plugins"]);
        let two: Vec<&str> =
            select(&["storage".into(), "efa".into()]).unwrap().iter().map(|c| c.name).collect();
        assert_eq!(two, ["efa", "storage"], "report order, not the order named");
        let e = select(&["efa-typo".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown check `efa-typo`; known checks: instance, limits, limits-canary, efa, \
             efa-loopback, nvidia, storage, device-plugins"
        );
    }

    #[test]
    fn on_demand_checks_run_only_when_named() {
        static EVERY: Registration = Registration {
            name: "every",
            when: When::EveryRun,
            start_rank: 0,
            about: "",
            metrics: &[],
            check: &Nothing,
        };
        static DEEP: Registration = Registration { name: "deep", when: When::OnDemand, ..EVERY };
        static LATER: Registration =
            Registration { name: "later", when: When::AfterKubelet, ..EVERY };
        static ONCE: Registration =
            Registration { name: "once", when: When::OnDemandOnceInServe, ..EVERY };
        let registry: &[&'static Registration] = &[&EVERY, &DEEP, &LATER, &ONCE];
        let names = |only: &[&str], sel: Selection| -> Vec<&str> {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            select_from(registry, &only, sel).unwrap().iter().map(|r| r.name).collect()
        };
        assert_eq!(names(&[], Selection::Plain), ["every", "later"]);
        assert_eq!(names(&[], Selection::Deep), ["every", "deep", "later", "once"]);
        assert_eq!(names(&[], Selection::Serve), ["every", "later", "once"]);
        assert_eq!(names(&["deep"], Selection::Plain), ["deep"]);
        assert_eq!(names(&["once"], Selection::Serve), ["once"]);
        assert_eq!(
            names(&["later", "deep", "every"], Selection::Plain),
            ["every", "deep", "later"]
        );
    }

    #[test]
    fn every_registration_is_whole_and_unique() {
        let mut seen = Vec::new();
        for r in REGISTRY {
            assert!(!seen.contains(&r.name), "{} registered twice", r.name);
            seen.push(r.name);
            assert!(!r.about.is_empty() && !r.about.ends_with('.'), "{}: about", r.name);
            assert!(r.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{}", r.name);
        }
        let help = only_long_help();
        for r in REGISTRY {
            assert!(help.contains(r.name) && help.contains(r.about), "{help}");
        }
    }
}
