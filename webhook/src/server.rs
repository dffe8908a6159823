//! The HTTP surface: the webhook route, health, readiness, metrics, and a graceful
//! shutdown that Kubernetes can rely on.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::check_stock::CheckStock;
use crate::contract::{HEALTH_PATH, METRICS_PATH, READY_PATH};
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
}

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
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
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
    policy: ShutdownPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let closing = Arc::new(Notify::new());
    let stop_accepting = {
        let (state, closing) = (state.clone(), closing.clone());
        async move {
            shutdown.await;
            state.ready.store(false, Ordering::Relaxed);
            tracing::info!(
                drain_ms = policy.drain.as_millis() as u64,
                "shutting down: not ready, draining"
            );
            tokio::time::sleep(policy.drain).await;
            tracing::info!("listener closed, finishing in-flight requests");
            closing.notify_one();
        }
    };
    let server =
        axum::serve(listener, router(state, webhook_path)).with_graceful_shutdown(stop_accepting);
    tokio::select! {
        result = server => result,
        () = async { closing.notified().await; tokio::time::sleep(policy.timeout).await } => {
            tracing::warn!(timeout_ms = policy.timeout.as_millis() as u64, "in-flight requests cut off at the shutdown timeout");
            Ok(())
        }
    }
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
