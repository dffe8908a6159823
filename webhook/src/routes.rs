//! What each request goes to: the webhook path straight to [`CheckStock`], the
//! operational paths (health, readiness, metrics) through an axum [`Router`].
//!
//! The webhook call does not go through the router because every call would then
//! pay for it: axum boxes the request body, the handler's future and the response
//! body, and clones the route's service, for each request. Answered directly, the
//! body stays hyper's and a success is a static buffer: 9 allocations per call
//! instead of 17, and 1.02× (cart) and 1.04× (add-to-cart) the calls per second in
//! `scripts/bench-webhook-ab.sh`, 1.07–1.09× when wrk shares the server's cores.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;

use crate::check_stock::{CheckStock, RequestBody};
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

/// An answer's body: a static buffer for a success, axum's for the rest.
pub type ReplyBody = Either<Full<Bytes>, Body>;

type Reply = Result<Response<ReplyBody>, Infallible>;

/// The service of every connection.
#[derive(Clone)]
pub struct Routes {
    state: Arc<AppState>,
    webhook_path: Arc<str>,
    others: TowerToHyperService<Router>,
}

impl Routes {
    pub fn new(state: Arc<AppState>, webhook_path: &str) -> Self {
        Routes {
            others: TowerToHyperService::new(operational_router(state.clone(), webhook_path)),
            state,
            webhook_path: webhook_path.into(),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Routes {
    type Response = Response<ReplyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if request.method() == Method::POST && request.uri().path() == &*self.webhook_path {
            let state = self.state.clone();
            Box::pin(async move {
                let (parts, body) = request.into_parts();
                Ok(check_stock(&state.check_stock, &parts.headers, body).await)
            })
        } else {
            let answer = hyper::service::Service::call(&self.others, request);
            Box::pin(async move { answer.await.map(|response| response.map(Either::Right)) })
        }
    }
}

/// Health, readiness and metrics; on the webhook path, only what is not a POST
/// reaches it, and is refused.
fn operational_router(state: Arc<AppState>, webhook_path: &str) -> Router {
    Router::new()
        .route(webhook_path, any(only_post))
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route(READY_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics))
        .with_state(state)
}

/// `Operation::Success` as serialised, sent as a static body: the most common answer
/// then costs no serialisation and no buffer.
const SUCCESS_BODY: &str = r#"{"op":"success"}"#;

async fn check_stock(
    check_stock: &CheckStock,
    headers: &HeaderMap,
    body: impl RequestBody,
) -> Response<ReplyBody> {
    match check_stock.answer(headers, body).await {
        Operation::Success => {
            let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(
                SUCCESS_BODY.as_bytes(),
            ))));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        other => Json(other).into_response().map(Either::Right),
    }
}

async fn only_post() -> (StatusCode, [(header::HeaderName, &'static str); 1]) {
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")])
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
