//! The operator's own metrics and health endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    reconciles: Counter,
    failures: Counter,
    duration: Histogram,
    /// True while this replica runs the controller (it holds the lease, or leader
    /// election is off).
    leading: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("commerce_webhook_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "reconciles run", reconciles.clone());
        let failures = Counter::default();
        registry.register(
            "reconcile_failures",
            "reconciles that failed",
            failures.clone(),
        );
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "time of one reconcile",
            duration.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                reconciles,
                failures,
                duration,
                leading: AtomicBool::new(false),
            }),
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, elapsed: Duration, failed: bool) {
        self.inner.reconciles.inc();
        if failed {
            self.inner.failures.inc();
        }
        self.inner.duration.observe(elapsed.as_secs_f64());
    }

    /// How many reconciles ran (tests use it to know a resync happened).
    pub fn reconciles(&self) -> u64 {
        self.inner.reconciles.get()
    }

    pub fn set_leading(&self, leading: bool) {
        self.inner.leading.store(leading, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// A standby replica is ready too (it can take over at any time); the body says which.
async fn ready(State(metrics): State<Metrics>) -> (StatusCode, &'static str) {
    if metrics.inner.leading.load(Ordering::Relaxed) {
        (StatusCode::OK, "leading")
    } else {
        (StatusCode::OK, "standby")
    }
}
