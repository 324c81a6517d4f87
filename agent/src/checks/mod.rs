//! Checks: one module per capability, each a read-only look at the host through [`Host`].
//!
//! Every check runs on its own thread under a deadline (`checks.timeout_seconds`): a check that hangs
//! (NVML on a broken GPU, a wedged sysfs read) is reported as a failure after its deadline instead of
//! stalling the report, and a check that panics is reported as a failure naming the bug.

pub mod device_plugins;
pub mod efa;
pub mod instance;
pub mod limits;
pub mod nvidia;
pub mod storage;

use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::catalog::Expected;
use crate::config::Config;
use crate::host::Host;
use crate::identity::Identity;
use crate::report::{CheckResult, Status};

/// Everything a check may look at.
pub struct Context {
    pub host: Host,
    pub config: Config,
    pub identity: Identity,
    pub expected: Expected,
}

pub trait Check: Send + Sync {
    /// The name in reports and `--only` (DESIGN.md).
    fn name(&self) -> &'static str;
    /// Whether a failure makes the node not ready. Asked before running, so a check that times
    /// out still counts as it should.
    fn required(&self, ctx: &Context) -> bool;
    fn run(&self, ctx: &Context) -> CheckResult;
    /// True for checks of what kubelet does. `boot` runs before kubelet starts and reports them as
    /// skipped; `check` and `serve` run them.
    fn needs_kubelet(&self) -> bool {
        false
    }
}

/// Every check name nodeprep knows, in report order.
pub const ALL: &[&str] = &["instance", "limits", "efa", "nvidia", "storage", "device-plugins"];

fn build(name: &str) -> Option<Arc<dyn Check>> {
    match name {
        "instance" => Some(Arc::new(instance::Instance)),
        "device-plugins" => Some(Arc::new(device_plugins::DevicePlugins)),
        "limits" => Some(Arc::new(limits::Limits)),
        "efa" => Some(Arc::new(efa::Efa)),
        "nvidia" => Some(Arc::new(nvidia::Nvidia)),
        "storage" => Some(Arc::new(storage::Storage)),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("unknown check `{0}`; known checks: {known}", known = ALL.join(", "))]
    Unknown(String),
}

/// The checks to run: all, or those named in `--only` (in report order).
pub fn select(only: &[String]) -> Result<Vec<Arc<dyn Check>>, SelectError> {
    if let Some(bad) = only.iter().find(|n| !ALL.contains(&n.as_str())) {
        return Err(SelectError::Unknown(bad.clone()));
    }
    Ok(ALL.iter().filter(|name| only.is_empty() || only.iter().any(|o| o == *name)).filter_map(|name| build(name)).collect())
}

/// Runs the checks in parallel, each under `timeout`, and returns results in the order given.
pub fn run(ctx: Arc<Context>, checks: &[Arc<dyn Check>], timeout: Duration) -> Vec<CheckResult> {
    let started = Instant::now();
    // Each thread first says whether its check is required (deciding can read the host, and a wedged
    // read must not escape the deadline), then sends its result.
    let (tx, rx) = mpsc::channel::<(usize, Result<bool, CheckResult>)>();
    let mut results: Vec<Option<CheckResult>> = vec![None; checks.len()];
    // Until a check has said, it counts as required: a check that cannot even decide is not a pass.
    let mut required: Vec<bool> = vec![true; checks.len()];
    for (i, check) in checks.iter().enumerate() {
        let (tx, ctx, check, name) = (tx.clone(), Arc::clone(&ctx), Arc::clone(check), check.name());
        let spawned = std::thread::Builder::new().name(format!("check-{name}")).spawn(move || {
            let t0 = Instant::now();
            let name = check.name();
            if let Ok(r) = std::panic::catch_unwind(AssertUnwindSafe(|| check.required(&ctx))) {
                let _ = tx.send((i, Ok(r)));
            }
            let mut result = match std::panic::catch_unwind(AssertUnwindSafe(|| check.run(&ctx))) {
                Ok(r) => r,
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(check = name, panic = %msg, "check panicked");
                    CheckResult::new(name, Status::Fail, format!("check crashed: {msg}"))
                        .required(check.required(&ctx))
                        .remedy("this is a nodeprep bug: report it with `nodeprep check -vv` output")
                }
            };
            result.name = name.to_string();
            result.duration_ms = t0.elapsed().as_millis() as u64;
            tracing::debug!(check = name, status = result.status.as_str(), duration_ms = result.duration_ms, summary = %result.summary, "check finished");
            let _ = tx.send((i, Err(result)));
        });
        if let Err(e) = spawned {
            results[i] = Some(
                CheckResult::new(name, Status::Fail, format!("could not start the check thread: {e}"))
                    .required(required[i])
                    .remedy("the node is out of threads or memory; look at `systemctl status` and dmesg"),
            );
        }
    }
    drop(tx);
    let deadline = started + timeout;
    while results.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Ok(r))) => required[i] = r,
            Ok((i, Err(r))) => results[i] = Some(r),
            Err(_) => break,
        }
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let name = checks[i].name();
                tracing::error!(check = name, timeout_s = timeout.as_secs_f64(), "check did not finish before its deadline");
                CheckResult::new(name, Status::Fail, format!("did not finish within {} s", timeout.as_secs_f64()))
                    .required(required[i])
                    .remedy(format!("something on the host hangs (run `nodeprep check --only {name} -vv`); raise checks.timeout_seconds only if the host is just slow"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Expect;

    struct Slow;
    impl Check for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn required(&self, _: &Context) -> bool {
            true
        }
        fn run(&self, _: &Context) -> CheckResult {
            std::thread::sleep(Duration::from_secs(30));
            CheckResult::new("slow", Status::Pass, "never seen")
        }
    }
    struct Panics;
    impl Check for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn required(&self, _: &Context) -> bool {
            true
        }
        fn run(&self, _: &Context) -> CheckResult {
            panic!("index out of bounds")
        }
    }

    fn ctx() -> Arc<Context> {
        Arc::new(Context {
            host: Host::new("/nonexistent"),
            config: Config::default(),
            identity: Identity::default(),
            expected: Expected::new(None, &Expect::default()),
        })
    }

    #[test]
    fn a_hanging_check_fails_at_its_deadline_and_others_still_report() {
        let checks: Vec<Arc<dyn Check>> = vec![Arc::new(Slow), Arc::new(instance::Instance)];
        let t0 = Instant::now();
        let r = run(ctx(), &checks, Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(r[0].name, "slow");
        assert_eq!(r[0].status, Status::Fail);
        assert!(r[0].required);
        assert_eq!(r[0].summary, "did not finish within 0.2 s");
        assert_eq!(r[1].name, "instance");
        assert_eq!(r[1].status, Status::Warn);
    }

    #[test]
    fn a_panicking_check_is_a_failure_not_a_crash() {
        let checks: Vec<Arc<dyn Check>> = vec![Arc::new(Panics)];
        let r = run(ctx(), &checks, Duration::from_secs(5));
        assert_eq!(r[0].status, Status::Fail);
        assert_eq!(r[0].summary, "check crashed: index out of bounds");
    }

    #[test]
    fn selection_names_unknown_checks() {
        assert_eq!(select(&[]).unwrap().iter().map(|c| c.name()).collect::<Vec<_>>(), ALL);
        assert_eq!(select(&["storage".into(), "efa".into()]).unwrap().iter().map(|c| c.name()).collect::<Vec<_>>(), ["efa", "storage"]);
        assert_eq!(select(&["efa-typo".into()]).err(), Some(SelectError::Unknown("efa-typo".into())));
        let msg = SelectError::Unknown("x".into()).to_string();
        assert!(msg.contains("known checks: instance, limits, efa, nvidia, storage, device-plugins"), "{msg}");
    }
}
