//! The health endpoints. Every handler answers from [`Shared`] in memory.
//!
//! Hardening: request headers are bounded (8 KiB) and must arrive within 5 s (hyper's
//! header_read_timeout, which also closes idle keep-alive connections); at most
//! [`MAX_CONNECTIONS`] connections are served at once, further ones are closed at accept; other
//! methods get 405 with `Allow`, unknown paths 404.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use super::Shared;

pub const MAX_CONNECTIONS: usize = 512;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEADER_BYTES: usize = 8192;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .fallback(not_found)
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
        None => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\nno check run has finished yet\n".into()),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    match s.published() {
        Some(p) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], p.status_json.clone()).into_response(),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "no check run has finished yet\n".into()),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let body = match s.published() {
        Some(p) => p.metrics.clone(),
        None => s.metrics.encode(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found; endpoints: /livez /readyz /status /metrics\n".into())
}

/// Accepts connections until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = router(shared);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, max = MAX_CONNECTIONS, "too many connections; closing this one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}
