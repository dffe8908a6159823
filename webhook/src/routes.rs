//! What each request goes to: one axum [`Router`] for the webhook path and the
//! operational paths (health, readiness, metrics).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};

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
    /// Also not ready while the stock source is stale.
    pub stale_not_ready: bool,
}

/// The service of every connection: the webhook (POST only; anything else on its
/// path is answered 405 with `Allow: POST`), health, readiness and metrics.
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

async fn check_stock(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match state.check_stock.answer(&parts.headers, body).await {
        Operation::Success => {
            let mut response =
                Response::new(Body::from(Bytes::from_static(SUCCESS_BODY.as_bytes())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
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
