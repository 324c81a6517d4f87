//! The health endpoints. Every handler answers from [`Shared`] in memory.
//!
//! Hardening: request headers are bounded (8 KiB) and must arrive within 5 s (hyper's
//! header_read_timeout, which also closes idle keep-alive connections); a peer that takes none of a
//! response for [`WRITE_TIMEOUT`] is disconnected; at most [`MAX_CONNECTIONS`] connections are
//! served at once (fewer when the open-file limit cannot be raised to hold them); past them up to
//! [`WAITING`] more each close the oldest held connection (after its answer) and take its place,
//! so that a probe is answered however many clients hold connections; beyond that connections are
//! closed at accept; other methods get 405 with `Allow`, unknown paths 404.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use super::metrics::Format;
use super::Shared;

pub const MAX_CONNECTIONS: usize = 512;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response may wait for the peer to take any of it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADER_BYTES: usize = 8192;
/// Open files kept for everything but connections (the listener, logs, checks, NVML).
const RESERVED_FILES: usize = 64;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `serve.listen`: every endpoint.
    All,
    /// `serve.metrics_listen`: `/metrics` only. The report (`/status`: instance ID, placement
    /// group, devices, remedies) and the probes stay on `main`, the loopback by default.
    MetricsOnly { main: std::net::SocketAddr },
}

pub fn router(shared: Arc<Shared>, scope: Scope) -> Router {
    match scope {
        Scope::All => Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/status", get(status))
            .route("/metrics", get(metrics))
            .fallback(not_found),
        Scope::MetricsOnly { main } => Router::new().route("/metrics", get(metrics)).fallback(
            move || async move {
                text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "this address serves only /metrics; /livez, /readyz and /status are on serve.listen (http://{main}), on the node\n"
                    ),
                )
            },
        ),
    }
    .with_state(shared)
}

fn text(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn livez(State(s): State<Arc<Shared>>) -> Response {
    match s.loop_health() {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("check loop stuck: {why}\n")),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.published() {
        Some(p) if p.ready => text(StatusCode::OK, p.readyz.clone()),
        Some(p) => text(StatusCode::SERVICE_UNAVAILABLE, p.readyz.clone()),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready\nno check run has finished yet\n".into(),
        ),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    match s.published() {
        Some(p) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], p.status_json.clone())
                .into_response()
        }
        None => text(StatusCode::SERVICE_UNAVAILABLE, "no check run has finished yet\n".into()),
    }
}

/// `/metrics` in the format the scraper asks for (`Accept`): text 0.0.4 unless OpenMetrics.
async fn metrics(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let body = s.metrics.encode(format);
    (StatusCode::OK, [(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found; endpoints: /livez /readyz /status /metrics\n".into())
}

/// How many connections to serve at once, and how many may wait for room: [`MAX_CONNECTIONS`] and
/// [`WAITING`], after raising the soft open-file limit to hold them if it is lower (systemd's
/// default is 1024, a shell's may be 256); fewer, with a warning, when the hard limit does not
/// allow that (waiting ones get what the held ones leave). Without this, accept fails with EMFILE
/// and new connections (kubelet's probes among them) wait in the backlog.
pub fn connection_limit() -> (usize, usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let mut current = lim.current.unwrap_or(u64::MAX);
    let want = (MAX_CONNECTIONS + WAITING + RESERVED_FILES) as u64;
    if current < want {
        let raised = want.min(lim.maximum.unwrap_or(u64::MAX));
        if setrlimit(Resource::Nofile, Rlimit { current: Some(raised), maximum: lim.maximum })
            .is_ok()
        {
            current = raised;
        }
    }
    let avail = usize::try_from(current).unwrap_or(usize::MAX).saturating_sub(RESERVED_FILES);
    let n = avail.clamp(1, MAX_CONNECTIONS);
    if n < MAX_CONNECTIONS {
        tracing::warn!(
            open_files = current,
            connections = n,
            "the open-file limit (LimitNOFILE) allows only this many connections at once"
        );
    }
    (n, avail.saturating_sub(n).min(WAITING))
}

/// A connection whose writes must make progress: a peer that takes nothing for [`WRITE_TIMEOUT`]
/// (it stopped reading and the socket buffers are full) gets an error, which ends the connection.
/// Without it, such a peer holds one of the connections forever.
struct WriteDeadline<S> {
    inner: S,
    /// Running while a write waits.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S) -> Self {
        WriteDeadline { inner, waiting: None }
    }

    /// After a write: clears the deadline when it made progress, errors once it has waited too long.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.waiting = None;
            return poll;
        }
        let deadline =
            self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer took no data for {} s", WRITE_TIMEOUT.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, poll)
    }
}

/// Connections that may wait for one of the held ones to close: each asks the oldest connection
/// to close (once it has answered what it is answering) and takes its place, so that a probe is
/// answered however many clients hold connections; beyond these, connections are closed at accept.
pub const WAITING: usize = 256;
/// How long a waiting connection waits for its place.
pub const WAIT_FOR_ROOM: Duration = Duration::from_secs(2);

/// The connections every listener of one `serve` may hold together ([`connection_limit`]), those
/// waiting for room, and the held ones in the order they came (the oldest is closed first).
pub struct Permits {
    held: Arc<tokio::sync::Semaphore>,
    waiting: Arc<tokio::sync::Semaphore>,
    open: std::sync::Mutex<std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Permits {
    fn register(&self) -> (u64, Arc<tokio::sync::Notify>) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = Arc::new(tokio::sync::Notify::new());
        self.open.lock().unwrap_or_else(|e| e.into_inner()).push_back((id, Arc::clone(&n)));
        (id, n)
    }

    fn unregister(&self, id: u64) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).retain(|(i, _)| *i != id);
    }

    /// Asks the oldest held connection to close once it has answered what it is answering.
    fn evict_oldest(&self) {
        if let Some((_, n)) = self.open.lock().unwrap_or_else(|e| e.into_inner()).pop_front() {
            n.notify_one();
        }
    }
}

pub fn permits() -> Arc<Permits> {
    let (held, waiting) = connection_limit();
    Arc::new(Permits {
        held: Arc::new(tokio::sync::Semaphore::new(held)),
        waiting: Arc::new(tokio::sync::Semaphore::new(waiting)),
        open: Default::default(),
        next: Default::default(),
    })
}

/// Accepts connections until the task is aborted, at most `permits` of them at once across every
/// listener that shares the semaphore.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    scope: Scope,
    permits: Arc<Permits>,
) {
    let app = router(shared, scope);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match Arc::clone(&permits.held).try_acquire_owned() {
            Ok(p) => Ok(p),
            // Every connection is held: wait for room (the oldest is asked to close), unless too
            // many wait already.
            Err(_) => match Arc::clone(&permits.waiting).try_acquire_owned() {
                Ok(w) => Err(w),
                Err(_) => {
                    tracing::warn!(%peer, ?scope, "too many connections (all listeners together, and waiting); closing this one");
                    drop(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let permits = Arc::clone(&permits);
        tokio::spawn(async move {
            let permit = match permit {
                Ok(p) => p,
                Err(_waiting) => {
                    permits.evict_oldest();
                    let room = Arc::clone(&permits.held).acquire_owned();
                    match tokio::time::timeout(WAIT_FOR_ROOM, room).await {
                        Ok(Ok(p)) => p,
                        _ => {
                            tracing::warn!(%peer, ?scope, "no room for this connection within 2 s; closing it");
                            return;
                        }
                    }
                }
            };
            let (id, evicted) = permits.register();
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .keep_alive(true)
                .serve_connection(TokioIo::new(WriteDeadline::new(stream)), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                _ = evicted.notified() => {
                    // Finishes the request under way, then closes.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            permits.unregister(id);
            drop(permit);
        });
    }
}
