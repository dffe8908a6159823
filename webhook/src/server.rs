//! The HTTP surface: the webhook route, health, readiness, metrics, the limits
//! that keep slow or many clients from exhausting the process, and a graceful
//! shutdown that Kubernetes can rely on.
//!
//! Connections are served by hyper directly (not `axum::serve`), so that each one
//! can be watched for requests that never come (see [`idle`]).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::check_stock::CheckStock;
use crate::contract::{HEALTH_PATH, METRICS_PATH, READY_PATH};
use crate::idle::{self, Watched};
use crate::metrics::Metrics;
use crate::operation::Operation;
use crate::ops::OPENMETRICS_CONTENT_TYPE;

/// Everything the routes share.
pub struct AppState {
    pub check_stock: CheckStock,
    pub metrics: Metrics,
    /// False from the moment shutdown starts, so that `/readyz` takes the pod out of
    /// the Service before the listener closes.
    pub ready: AtomicBool,
    /// Also not ready while the stock source is stale.
    pub stale_not_ready: bool,
}

/// What bounds the connections, whatever their requests.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a connection may go without a request (a head, an answer or a call
    /// in flight): the slow-header and the idle keep-alive timeout, enforced by
    /// [`idle::watchdog`], so between once and twice this after the last.
    pub header_timeout: Duration,
    /// Connections open at once; one more is closed on arrival.
    pub max_connections: usize,
}

/// Request heads larger than this are refused (431): Commerce's are a few hundred
/// bytes, and each connection's read buffer is bounded by it.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// How the server stops once asked to.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownPolicy {
    /// Keep serving (while not-ready) this long before closing the listener.
    pub drain: Duration,
    /// Then give in-flight requests this long to finish.
    pub timeout: Duration,
}

pub fn router(state: Arc<AppState>, webhook_path: &str) -> Router {
    Router::new()
        .route(webhook_path, post(check_stock))
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route(READY_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics))
        .with_state(state)
}

/// `Operation::Success` as serialised, sent as a static body: the most common answer
/// then costs no serialisation and no buffer.
const SUCCESS_BODY: &str = r#"{"op":"success"}"#;

/// Takes the request whole: the `HeaderMap` extractor would clone the headers.
async fn check_stock(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match state.check_stock.answer(&parts.headers, body).await {
        Operation::Success => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            SUCCESS_BODY,
        )
            .into_response(),
        other => Json(other).into_response(),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if !state.ready.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if state.stale_not_ready && state.check_stock.source().stale() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "stale: the stock source could not be refreshed",
        )
    } else {
        (StatusCode::OK, "ready")
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let content_type = HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE);
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.render(),
    )
        .into_response()
}

/// Serves until `shutdown` completes, then: not-ready, drain, close the listener,
/// finish in-flight requests (bounded by `policy.timeout`), return.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    webhook_path: &str,
    limits: ConnectionLimits,
    policy: ShutdownPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let metrics = state.metrics.clone();
    let stop_accepting = {
        let state = state.clone();
        async move {
            shutdown.await;
            state.ready.store(false, Ordering::Relaxed);
            tracing::info!(
                drain_ms = policy.drain.as_millis() as u64,
                "shutting down: not ready, draining"
            );
            tokio::time::sleep(policy.drain).await;
            tracing::info!("listener closed, finishing in-flight requests");
        }
    };
    let service = TowerToHyperService::new(router(state, webhook_path));
    let mut http = http1::Builder::new();
    http.max_buf_size(MAX_HEAD_BYTES);
    let connections = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut stop_accepting = pin!(stop_accepting);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors or memory: give other connections time to
                    // close rather than spin; per-connection errors need no pause.
                    tracing::warn!(%error, "accept failed");
                    if !is_connection_error(&error) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut stop_accepting => break,
        };
        // Closed on arrival rather than left in the backlog: the caller learns at
        // once, and the connections already open keep being served.
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            metrics.observe_connection_refused();
            continue;
        };
        // A failure only costs latency (Nagle).
        let _ = stream.set_nodelay(true);
        let (service, activity) = Watched::new(service.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            tokio::select! {
                biased;
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                },
                () = idle::watchdog(&activity, header_timeout) => {
                    tracing::debug!("connection closed: no request within the header timeout");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(policy.timeout) => {
            tracing::warn!(timeout_ms = policy.timeout.as_millis() as u64, "in-flight requests cut off at the shutdown timeout");
            Ok(())
        }
    }
}

/// Errors of one connection, after which accepting the next can go on at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_success_body_is_the_serialised_operation() {
        assert_eq!(
            serde_json::to_string(&Operation::Success).unwrap(),
            SUCCESS_BODY
        );
    }
}
