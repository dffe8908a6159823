//! The operator's own metrics and health endpoints. A leaf module: the reconciler
//! hands it what to count (a failure as the label of its kind).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use commerce_webhook::contract::{HEALTH_PATH, METRICS_PATH, READY_PATH};
use commerce_webhook::ops;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    reconciles: Counter,
    failures: Family<FailureLabels, Counter>,
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
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "reconciles that failed, by kind of error",
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
    /// One reconcile: its time, and the kind of error if it failed.
    pub fn observe_reconcile(&self, elapsed: Duration, failure: Option<&'static str>) {
        self.inner.reconciles.inc();
        if let Some(kind) = failure {
            self.inner
                .failures
                .get_or_create(&FailureLabels { kind })
                .inc();
        }
        self.inner.duration.observe(elapsed.as_secs_f64());
    }

    /// Shows every kind of failure at 0 before it first happens, so a dashboard
    /// (or an alert on a rate) sees each series from the start.
    pub fn declare_failure_kinds(&self, kinds: impl IntoIterator<Item = &'static str>) {
        for kind in kinds {
            drop(self.inner.failures.get_or_create(&FailureLabels { kind }));
        }
    }

    /// How many reconciles ran (tests use it to know a resync happened).
    pub fn reconciles(&self) -> u64 {
        self.inner.reconciles.get()
    }

    pub fn set_leading(&self, leading: bool) {
        self.inner.leading.store(leading, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        ops::render(&self.inner.registry)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (the same paths as the webhook's, so
/// one convention serves both) until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(METRICS_PATH, get(render))
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .route(READY_PATH, get(ready))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, ops::OPENMETRICS_CONTENT_TYPE)],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_kind() {
        let metrics = Metrics::default();
        metrics.declare_failure_kinds(["apply", "status"]);
        metrics.observe_reconcile(Duration::from_millis(3), None);
        metrics.observe_reconcile(Duration::from_millis(3), Some("apply"));
        let text = metrics.render();
        assert_eq!(metrics.reconciles(), 2);
        assert!(
            text.contains("commerce_webhook_operator_reconcile_failures_total{kind=\"apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("commerce_webhook_operator_reconcile_failures_total{kind=\"status\"} 0"),
            "declared, never failed: {text}"
        );
    }
}
