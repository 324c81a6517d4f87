//! Runs checks in parallel on a few worker threads, each under a deadline
//! (`checks.timeout_seconds`): a check that hangs (NVML on a broken GPU, a wedged sysfs read) is
//! reported as a failure after its deadline instead of stalling the report, it never keeps the other
//! checks from running (a worker is added when all are held), and a check that panics is reported as
//! a failure naming the bug.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Context, Registration};
use crate::report::{CheckResult, Status};

/// The checks of one run, taken by the workers in start order: by [`Registration::start_rank`],
/// the longest first, so the run ends soonest (ties in the order given).
struct Queue {
    checks: Vec<&'static Registration>,
    order: Vec<usize>,
    next: AtomicUsize,
}

impl Queue {
    /// The checks to start, leaving out those with `skip` set.
    fn new(checks: &[&'static Registration], skip: &[bool]) -> Queue {
        let mut order: Vec<usize> = (0..checks.len()).filter(|&i| !skip[i]).collect();
        order.sort_by_key(|&i| checks[i].start_rank);
        Queue { checks: checks.to_vec(), order, next: AtomicUsize::new(0) }
    }

    /// The index (in the order given to [`run`]) of the next check to start, if any is left.
    fn take(&self) -> Option<usize> {
        self.order.get(self.next.fetch_add(1, Ordering::SeqCst)).copied()
    }

    fn waiting(&self) -> bool {
        self.next.load(Ordering::SeqCst) < self.order.len()
    }
}

/// Workers started at first. Thread start-up is a real cost for a whole `nodeprep check` process
/// (more than most checks take; figures in bench/README.md), and two workers keep two cores busy;
/// more are started only when checks wait while every worker is held (see [`STALL`]).
const FIRST_WORKERS: usize = 2;

/// When no check has finished for this long while some checks have not started, every worker is
/// held by a slow or hung check: one more worker is started, so that a hung check delays the others
/// by about this long and never costs them their deadline.
const STALL: Duration = Duration::from_millis(25);

/// What the workers tell the waiting thread without waking it: which check each has started, and
/// what each said about being required. Only a finished check wakes it (a message on the channel).
struct Board {
    started: Vec<bool>,
    required: Vec<bool>,
}

/// Runs the checks in parallel, each under `timeout` (counted from the start of the run), and
/// returns results in the order given.
///
/// Checks are taken in start order by a few worker threads; one more is started whenever all are held
/// for [`STALL`] while checks wait. A check that does not finish by the deadline is reported as
/// failed and its worker is left behind (it cannot be killed; it ends with the process, or finishes
/// later and finds no one listening).
pub fn run(
    ctx: Arc<Context>,
    checks: &[&'static Registration],
    timeout: Duration,
) -> Vec<CheckResult> {
    let started = Instant::now();
    let deadline = started + timeout;
    // A check whose earlier run has not returned (a read that never returns) is not started again:
    // a new thread each interval would pile up behind the same stuck read.
    let mut results: Vec<Option<CheckResult>> = vec![None; checks.len()];
    {
        let running = ctx.running.lock().unwrap_or_else(|e| e.into_inner());
        for (i, c) in checks.iter().enumerate() {
            if let Some((since, required)) = running.get(c.name) {
                let secs = since.elapsed().as_secs_f64();
                tracing::error!(
                    check = c.name,
                    stuck_s = secs,
                    "check still stuck in an earlier run; not started again"
                );
                results[i] = Some(
                    CheckResult::new(c.name, Status::Fail, format!("stuck: its run of {secs:.0} s ago has not returned; not started again until it does"))
                        .required(*required)
                        .remedy(format!("something on the host hangs (run `nodeprep check --only {} -vv` to see the read); restart nodeprep once it is fixed", c.name)),
                );
            }
        }
    }
    let skip: Vec<bool> = results.iter().map(Option::is_some).collect();
    let queue = Arc::new(Queue::new(checks, &skip));
    // Until a check has said, it counts as required: a check that cannot even decide is not a pass.
    let board = Arc::new(Mutex::new(Board {
        started: vec![false; checks.len()],
        required: vec![true; checks.len()],
    }));
    let (tx, rx) = mpsc::channel::<(usize, CheckResult)>();
    let mut workers = 0usize;
    let mut spawn_error: Option<String> = None;
    let mut spawn = |workers: &mut usize| {
        let (tx, ctx, queue, board, id) =
            (tx.clone(), Arc::clone(&ctx), Arc::clone(&queue), Arc::clone(&board), *workers);
        match std::thread::Builder::new()
            .name(format!("check-worker-{id}"))
            .spawn(move || worker(id, &ctx, &queue, &board, &tx))
        {
            Ok(_) => *workers += 1,
            Err(e) => {
                tracing::error!(error = %e, workers = *workers, "could not start a check worker thread");
                spawn_error = Some(e.to_string());
            }
        }
    };
    for _ in 0..FIRST_WORKERS.min(skip.iter().filter(|s| !**s).count()) {
        spawn(&mut workers);
    }
    while results.iter().any(Option::is_none) && workers > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left.min(STALL)) {
            Ok((i, r)) => results[i] = Some(r),
            Err(RecvTimeoutError::Timeout) => {
                if queue.waiting() && workers < checks.len() {
                    let b = board.lock().unwrap_or_else(|e| e.into_inner());
                    let held: Vec<&str> = (0..checks.len())
                        .filter(|&i| b.started[i] && results[i].is_none())
                        .map(|i| checks[i].name)
                        .collect();
                    drop(b);
                    tracing::debug!(held = ?held, workers = workers + 1, "every check worker is held; starting one more");
                    spawn(&mut workers);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    tracing::debug!(workers, elapsed_us = started.elapsed().as_micros() as u64, "checks finished");
    let b = board.lock().unwrap_or_else(|e| e.into_inner());
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let name = checks[i].name;
                if workers == 0 {
                    let e = spawn_error.as_deref().unwrap_or("unknown error");
                    return CheckResult::new(name, Status::Fail, format!("could not start a thread to run the check: {e}"))
                        .required(b.required[i])
                        .remedy("the node is out of threads or memory; look at `systemctl status` and dmesg");
                }
                if !b.started[i] {
                    tracing::error!(check = name, timeout_s = timeout.as_secs_f64(), "check did not start before its deadline");
                    return CheckResult::new(name, Status::Fail, format!("did not start within {} s: other checks held every worker", timeout.as_secs_f64()))
                        .required(b.required[i])
                        .remedy("another check hangs (see the checks that did not finish); the node is short of threads if none did");
                }
                tracing::error!(check = name, timeout_s = timeout.as_secs_f64(), "check did not finish before its deadline");
                CheckResult::new(name, Status::Fail, format!("did not finish within {} s", timeout.as_secs_f64()))
                    .required(b.required[i])
                    .remedy(format!("something on the host hangs (run `nodeprep check --only {name} -vv`); raise checks.timeout_seconds only if the host is just slow"))
            })
        })
        .collect()
}

/// A worker: takes the next check until none is left. Each check first says whether it is required
/// (deciding can read the host, and a wedged read must not escape the deadline), then runs.
fn worker(
    id: usize,
    ctx: &Context,
    queue: &Queue,
    board: &Mutex<Board>,
    tx: &mpsc::Sender<(usize, CheckResult)>,
) {
    let note =
        |f: &mut dyn FnMut(&mut Board)| f(&mut board.lock().unwrap_or_else(|e| e.into_inner()));
    while let Some(i) = queue.take() {
        let Registration { name, check, .. } = *queue.checks[i];
        let t0 = Instant::now();
        note(&mut |b| b.started[i] = true);
        let running = |f: &mut dyn FnMut(&mut std::collections::HashMap<_, _>)| {
            f(&mut ctx.running.lock().unwrap_or_else(|e| e.into_inner()))
        };
        running(&mut |m| {
            m.insert(name, (t0, true));
        });
        if let Ok(r) = std::panic::catch_unwind(AssertUnwindSafe(|| check.required(ctx))) {
            note(&mut |b| b.required[i] = r);
            running(&mut |m| {
                m.insert(name, (t0, r));
            });
        }
        let mut result = match std::panic::catch_unwind(AssertUnwindSafe(|| check.run(ctx))) {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(check = name, panic = %msg, "check panicked");
                let required = std::panic::catch_unwind(AssertUnwindSafe(|| check.required(ctx)))
                    .unwrap_or(true);
                CheckResult::new(name, Status::Fail, format!("check crashed: {msg}"))
                    .required(required)
                    .remedy("this is a nodeprep bug: report it with `nodeprep check -vv` output")
            }
        };
        running(&mut |m| {
            m.remove(name);
        });
        result.name = name.to_string();
        result.duration_ms = t0.elapsed().as_millis() as u64;
        tracing::debug!(check = name, status = result.status.as_str(), duration_us = t0.elapsed().as_micros() as u64, worker = id, summary = %result.summary, "check finished");
        if tx.send((i, result)).is_err() {
            return; // the run is over (deadline passed): no one reads results any more
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{Check, When};
    use crate::catalog::Expected;
    use crate::config::{Config, Expect};
    use crate::host::Host;
    use crate::identity::Identity;

    struct Slow;
    impl Check for Slow {
        fn required(&self, _: &Context) -> bool {
            true
        }
        fn run(&self, _: &Context) -> CheckResult {
            std::thread::sleep(Duration::from_secs(30));
            CheckResult::new("slow", Status::Pass, "never seen")
        }
    }
    struct Quick;
    impl Check for Quick {
        fn required(&self, _: &Context) -> bool {
            true
        }
        fn run(&self, _: &Context) -> CheckResult {
            CheckResult::new("quick", Status::Pass, "done")
        }
    }
    struct Panics;
    impl Check for Panics {
        fn required(&self, _: &Context) -> bool {
            true
        }
        fn run(&self, _: &Context) -> CheckResult {
            panic!("index out of bounds")
        }
    }

    const fn reg(name: &'static str, start_rank: u8, check: &'static dyn Check) -> Registration {
        Registration { name, when: When::EveryRun, start_rank, about: "", metrics: &[], check }
    }
    static SLOW: Registration = reg("slow", 0, &Slow);
    static QUICK: Registration = reg("quick", 0, &Quick);
    static PANICS: Registration = reg("panics", 0, &Panics);
    static INSTANCE: &Registration = &crate::capability::instance::REGISTRATION;

    fn ctx() -> Arc<Context> {
        Arc::new(Context {
            host: Host::new("/nonexistent"),
            config: Config::default(),
            identity: Identity::default(),
            expected: Expected::new(None, &Expect::default()),
            sample_counters: false,
            once: Default::default(),
            samples: Default::default(),
            running: Default::default(),
        })
    }

    #[test]
    fn a_hanging_check_fails_at_its_deadline_and_others_still_report() {
        let t0 = Instant::now();
        let r = run(ctx(), &[&SLOW, INSTANCE], Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(r[0].name, "slow");
        assert_eq!(r[0].status, Status::Fail);
        assert!(r[0].required);
        assert_eq!(r[0].summary, "did not finish within 0.2 s");
        assert_eq!(r[1].name, "instance");
        assert_eq!(r[1].status, Status::Warn);
    }

    /// serve runs the same checks every interval: one stuck in a read that never returns is not
    /// started again (one thread, not one more per run), says so, and runs again once it returns.
    #[test]
    fn a_check_stuck_from_an_earlier_run_is_reported_and_not_started_again() {
        use std::sync::atomic::AtomicBool;
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        static RELEASE: AtomicBool = AtomicBool::new(false);
        struct Stuck;
        impl Check for Stuck {
            fn required(&self, _: &Context) -> bool {
                false
            }
            fn run(&self, _: &Context) -> CheckResult {
                RUNS.fetch_add(1, Ordering::SeqCst);
                while !RELEASE.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                CheckResult::new("stuck", Status::Pass, "returned")
            }
        }
        static STUCK: Registration = reg("stuck", 0, &Stuck);
        let ctx = ctx();
        let r = run(Arc::clone(&ctx), &[&STUCK, &QUICK], Duration::from_millis(100));
        assert_eq!(r[0].summary, "did not finish within 0.1 s");
        for _ in 0..5 {
            let r = run(Arc::clone(&ctx), &[&STUCK, &QUICK], Duration::from_millis(100));
            assert_eq!(r[0].status, Status::Fail);
            assert!(r[0].summary.starts_with("stuck: its run of "), "{}", r[0].summary);
            assert!(!r[0].required, "keeps what the check said about itself");
            assert_eq!(r[1].status, Status::Pass, "the others still run");
        }
        assert_eq!(RUNS.load(Ordering::SeqCst), 1, "started once, not once per run");
        RELEASE.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        while ctx.running.lock().unwrap().contains_key("stuck") {
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = run(Arc::clone(&ctx), &[&STUCK], Duration::from_secs(5));
        assert_eq!((r[0].status, r[0].summary.as_str()), (Status::Pass, "returned"));
        assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn hung_checks_holding_every_worker_do_not_keep_the_others_from_running() {
        // More hung checks than first workers, the quick one started last (all of the same rank,
        // so they start in the order given): it still runs and reports.
        let t0 = Instant::now();
        let r = run(ctx(), &[&SLOW, &SLOW, &SLOW, &QUICK], Duration::from_millis(600));
        assert!(t0.elapsed() < Duration::from_secs(5));
        for slow in &r[..3] {
            assert_eq!(
                (slow.status, slow.summary.as_str()),
                (Status::Fail, "did not finish within 0.6 s")
            );
        }
        assert_eq!((r[3].name.as_str(), r[3].status), ("quick", Status::Pass), "{}", r[3].summary);
    }

    #[test]
    fn checks_start_by_rank_and_results_keep_the_order_given() {
        static A: Registration = reg("a", 3, &Quick);
        static B: Registration = reg("b", 1, &Quick);
        static C: Registration = reg("c", 2, &Quick);
        static D: Registration = reg("d", 1, &Quick);
        let checks = [&A, &B, &C, &D];
        let q = Queue::new(&checks, &vec![false; checks.len()]);
        let started: Vec<&str> = std::iter::from_fn(|| q.take()).map(|i| checks[i].name).collect();
        assert_eq!(started, ["b", "d", "c", "a"]);
        assert!(!q.waiting());
        let r = run(ctx(), &checks, Duration::from_secs(10));
        assert_eq!(r.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn many_quick_checks_all_report_in_order() {
        let checks = [INSTANCE; 40];
        let r = run(ctx(), &checks, Duration::from_secs(10));
        assert_eq!(r.len(), 40);
        assert!(r.iter().all(|c| c.name == "instance" && c.status == Status::Warn), "{r:?}");
    }

    #[test]
    fn a_panicking_check_is_a_failure_not_a_crash() {
        let r = run(ctx(), &[&PANICS], Duration::from_secs(5));
        assert_eq!(r[0].status, Status::Fail);
        assert_eq!(r[0].summary, "check crashed: index out of bounds");
    }
}
