//! `nodeprep serve`: reruns the checks every `serve.interval_seconds` on a thread of its own (never two
//! runs at once; each check under its deadline), publishes the last report in memory and in the
//! status file, and serves it over HTTP. Endpoints answer from memory and never wait on a check.
//!
//! - [`http`]: `/livez`, `/readyz`, `/status`, `/metrics` with bounded requests and idle timeouts
//! - [`metrics`]: Prometheus text from each report
//! - [`notify`]: systemd `Type=notify` readiness, watchdog and STATUS=
//! - [`kube`]: node conditions, the startup taint, the gate deadline, the repair bridge (opt-in)
//! - [`follow`]: the kernel log between runs: a fatal XID or efa error reruns the checks at once

pub mod follow;
pub mod http;
pub mod kube;
pub mod metrics;
pub mod notify;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::capability::{self, Context};
use crate::report::Report;
use crate::run::{self, Phase};

/// Why `serve` could not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {cause} (set serve.listen or --listen, serve.metrics_listen or --metrics-listen)")]
    Listen { addr: String, cause: String },
    #[error("cannot start {what}: {cause}")]
    Start { what: &'static str, cause: String },
    #[error(transparent)]
    Kube(#[from] kube::KubeError),
}

/// The check loop is stuck: a run takes too long, or none has started for too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} for {for_s} s (limit {limit_s} s)",
    if *.running { "a check run has been running" } else { "no check run has started" }
)]
pub struct Stuck {
    pub running: bool,
    pub for_s: u64,
    pub limit_s: u64,
}

/// What the endpoints serve, rebuilt after each check run and swapped in whole.
pub struct Published {
    pub ready: bool,
    /// Body of `/readyz`: "ready" or the failing required checks.
    pub readyz: String,
    pub status_json: String,
}

/// State shared by the check loop and the endpoints.
pub struct Shared {
    published: RwLock<Option<Arc<Published>>>,
    /// When the current (or last) check run started, and whether it is still running.
    heartbeat: Mutex<(Instant, bool)>,
    /// How long one run may take before the loop counts as stuck: every check runs in parallel under
    /// the check deadline, plus slack.
    stuck_after: Duration,
    interval: Duration,
    pub(crate) metrics: metrics::Metrics,
}

impl Shared {
    pub fn new(interval: Duration, check_timeout: Duration) -> Self {
        Shared {
            published: RwLock::new(None),
            heartbeat: Mutex::new((Instant::now(), false)),
            stuck_after: check_timeout * 2 + Duration::from_secs(5),
            interval,
            metrics: metrics::Metrics::new(),
        }
    }

    pub fn published(&self) -> Option<Arc<Published>> {
        self.published.read().expect("published lock").clone()
    }

    /// `Ok` while the check loop runs on schedule; `Err` says how it is stuck.
    pub fn loop_health(&self) -> Result<(), Stuck> {
        let (since, running) = *self.heartbeat.lock().expect("heartbeat lock");
        let age = since.elapsed();
        let limit = if running { self.stuck_after } else { self.interval + self.stuck_after };
        if age > limit {
            Err(Stuck { running, for_s: age.as_secs(), limit_s: limit.as_secs() })
        } else {
            Ok(())
        }
    }

    fn run_started(&self) {
        *self.heartbeat.lock().expect("heartbeat lock") = (Instant::now(), true);
    }

    fn run_finished(&self) {
        *self.heartbeat.lock().expect("heartbeat lock") = (Instant::now(), false);
    }

    /// Publishes a new report to the endpoints.
    pub fn publish(&self, report: &Report, status_write_failed: bool) {
        self.metrics.update(report, status_write_failed);
        let readyz = if report.ready {
            "ready\n".to_string()
        } else {
            let failing: Vec<String> = report
                .checks
                .iter()
                .filter(|c| c.blocks_readiness())
                .map(|c| format!("{}: {}", c.name, c.summary))
                .collect();
            format!("not ready\n{}\n", failing.join("\n"))
        };
        let p = Published { ready: report.ready, readyz, status_json: report.to_json() };
        *self.published.write().expect("published lock") = Some(Arc::new(p));
    }
}

/// One line for systemd's STATUS= and the logs.
pub fn status_line(report: &Report) -> String {
    let failing: Vec<&str> =
        report.checks.iter().filter(|c| c.blocks_readiness()).map(|c| c.name.as_str()).collect();
    let passed = report.checks.iter().filter(|c| c.status == crate::report::Status::Pass).count();
    if failing.is_empty() {
        format!("ready: {passed} of {} checks pass", report.checks.len())
    } else {
        format!("not ready: {} failing", failing.join(", "))
    }
}

/// Lowers the calling thread's scheduling priority (nice +10; Linux nice values are per thread and
/// inherited by threads it spawns, so every check thread runs below the HTTP thread). Endpoints then
/// keep their latency while checks run on a busy node.
fn lower_priority() {
    // PRIO_PROCESS with no pid: on Linux, the calling thread.
    if let Err(e) = rustix::process::setpriority_process(None, 10) {
        tracing::debug!(error = %e, "could not lower the check loop's priority");
    }
}

/// Runs the checks forever (until [`follow::Wake::Stop`]), publishing each report; a kernel log
/// record that matters starts the next run at once.
fn check_loop(
    ctx: Arc<Context>,
    shared: Arc<Shared>,
    wake: std::sync::mpsc::Receiver<follow::Wake>,
    kube: Option<tokio::sync::watch::Sender<Option<Arc<Report>>>>,
) {
    lower_priority();
    let selected = capability::select_with(&[], capability::Selection::Serve)
        .expect("every check is selectable");
    let mut first = true;
    loop {
        shared.run_started();
        let report = run::checks(&ctx, &selected, Phase::Running);
        let status_failed = match run::write_status(&ctx.host, &report) {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(error = %e, "status file not written; endpoints keep serving");
                true
            }
        };
        shared.publish(&report, status_failed);
        shared.run_finished();
        if let Some(tx) = &kube {
            // The Kubernetes task always works from the latest report; it never blocks this loop.
            let _ = tx.send(Some(Arc::new(report.clone())));
        }
        let line = status_line(&report);
        tracing::info!(ready = report.ready, duration_ms = report.duration_ms, status = %line, "check run published");
        notify::status(&line);
        if first {
            notify::ready();
            first = false;
        }
        match wake.recv_timeout(shared.interval) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Ok(follow::Wake::Kernel(record)) => {
                // A burst of records is one more run: take every wake that is already here.
                let mut more = 0;
                loop {
                    match wake.try_recv() {
                        Ok(follow::Wake::Kernel(_)) => more += 1,
                        Ok(follow::Wake::Stop) => return,
                        Err(_) => break,
                    }
                }
                tracing::info!(record = %record, more, "check run started by the kernel log");
                continue;
            }
            Ok(follow::Wake::Stop) | Err(_) => return,
        }
    }
}

/// `nodeprep serve` on a prepared run: listens on `addr` (every endpoint) and `metrics_addr` (only
/// `/metrics`), checks every `serve.interval_seconds`, and (opt-in) updates the Node. Runs until
/// SIGTERM/SIGINT; an error when it cannot start.
pub fn run(
    ctx: Arc<Context>,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
) -> Result<(), ServeError> {
    let start = |what| move |e: std::io::Error| ServeError::Start { what, cause: e.to_string() };
    let cfg = &ctx.config;
    let interval = Duration::from_secs(cfg.serve.interval_seconds);
    let shared = Arc::new(Shared::new(interval, Duration::from_secs(cfg.checks.timeout_seconds)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(start("the runtime"))?;
    let kube_cfg = cfg.kubernetes.clone();
    let kube_tx = if kube_cfg.enabled {
        let name = kube::node_name(&kube_cfg, &ctx.host)?;
        let (client, server) = rt.block_on(kube::client(&kube_cfg, &ctx.host))?;
        tracing::info!(node = %name, %server, credentials = %kube::describe(&kube_cfg, &ctx.host), taint = %kube_cfg.startup_taint, "Kubernetes updates enabled");
        let sync = Arc::new(kube::Sync::new(client, server, name, &kube_cfg, &ctx));
        let (tx, rx) = tokio::sync::watch::channel(None);
        let metrics_shared = Arc::clone(&shared);
        rt.spawn(kube::run(sync, rx, move |taint, present| {
            metrics_shared.metrics.set_startup_taint(taint, present)
        }));
        Some(tx)
    } else {
        None
    };
    let bind = |addr: SocketAddr| {
        let l = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| ServeError::Listen { addr: addr.to_string(), cause: e.to_string() })?;
        let bound = l.local_addr().map_err(start("the listener"))?;
        Ok::<_, ServeError>((l, bound))
    };
    let (listener, bound) = bind(addr)?;
    println!("nodeprep serve: listening on http://{bound}");
    let metrics_listener = match metrics_addr {
        Some(a) => {
            let (l, b) = bind(a)?;
            println!("nodeprep serve: metrics only on http://{b}/metrics");
            tracing::info!(metrics_listen = %b, "serving /metrics only");
            Some(l)
        }
        None => None,
    };
    tracing::info!(listen = %bound, interval_s = interval.as_secs(), "serving");

    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    if cfg.serve.follow_kernel_log {
        follow::start(ctx.host.clone(), cfg.nvidia.fatal_xids.clone(), stop_tx.clone());
    }
    let loop_shared = Arc::clone(&shared);
    let checker = std::thread::Builder::new()
        .name("check-loop".into())
        .spawn(move || check_loop(ctx, loop_shared, stop_rx, kube_tx))
        .map_err(start("the check loop"))?;

    rt.block_on(async {
        let watchdog = notify::watchdog_interval()
            .map(|every| tokio::spawn(notify::watchdog(Arc::clone(&shared), every)));
        let permits = http::permits();
        let mut servers = vec![tokio::spawn(http::serve(
            listener,
            Arc::clone(&shared),
            http::Scope::All,
            Arc::clone(&permits),
        ))];
        if let Some(l) = metrics_listener {
            let scope = http::Scope::MetricsOnly { main: bound };
            servers.push(tokio::spawn(http::serve(l, Arc::clone(&shared), scope, permits)));
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        notify::stopping();
        servers.iter().for_each(|s| s.abort());
        if let Some(w) = watchdog {
            w.abort();
        }
    });
    let _ = stop_tx.send(follow::Wake::Stop);
    // A check run in progress finishes within its deadlines; do not wait for it past a bound.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !checker.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
