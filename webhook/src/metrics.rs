//! Prometheus metrics served at `GET /metrics`. A leaf module: callers hand it
//! labels, so it depends on none of the modules it measures.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ops;

/// Latency buckets in seconds, dense where Commerce's timeouts are (sub-second).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How a check-stock call was answered: the `outcome` label of `requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    Success,
    OutOfStock,
    InvalidRequest,
    Unauthorized,
    SourceErrorAllowed,
    SourceErrorDenied,
    DeadlineAllowed,
    DeadlineDenied,
    /// Refused at once because `MAX_IN_FLIGHT` calls were already being answered.
    Overloaded,
}

impl RequestOutcome {
    const ALL: [RequestOutcome; 9] = [
        RequestOutcome::Success,
        RequestOutcome::OutOfStock,
        RequestOutcome::InvalidRequest,
        RequestOutcome::Unauthorized,
        RequestOutcome::SourceErrorAllowed,
        RequestOutcome::SourceErrorDenied,
        RequestOutcome::DeadlineAllowed,
        RequestOutcome::DeadlineDenied,
        RequestOutcome::Overloaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Success => "success",
            RequestOutcome::OutOfStock => "out_of_stock",
            RequestOutcome::InvalidRequest => "invalid_request",
            RequestOutcome::Unauthorized => "unauthorized",
            RequestOutcome::SourceErrorAllowed => "source_error_allowed",
            RequestOutcome::SourceErrorDenied => "source_error_denied",
            RequestOutcome::DeadlineAllowed => "deadline_allowed",
            RequestOutcome::DeadlineDenied => "deadline_denied",
            RequestOutcome::Overloaded => "overloaded",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceFailureLabels {
    source: &'static str,
    kind: &'static str,
}

/// Cheap to clone: every clone updates the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// One counter per outcome, resolved once: the hot path indexes an array
    /// instead of hashing labels under the family's lock.
    requests: [Counter; RequestOutcome::ALL.len()],
    request_duration: Histogram,
    backoffice_duration: Histogram,
    backoffice_failures: Family<ReasonLabels, Counter>,
    source_failures: Family<SourceFailureLabels, Counter>,
    connections_refused: Counter,
    inventory_stale: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("commerce_webhook");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "check-stock calls answered, by outcome",
            requests.clone(),
        );
        let request_duration = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "request_duration_seconds",
            "time to answer a check-stock call",
            request_duration.clone(),
        );
        let backoffice_duration = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "backoffice_request_duration_seconds",
            "time of one back-office stock call",
            backoffice_duration.clone(),
        );
        let backoffice_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "backoffice_failures",
            "back-office stock calls that failed, by reason",
            backoffice_failures.clone(),
        );
        let source_failures = Family::<SourceFailureLabels, Counter>::default();
        registry.register(
            "stock_source_failures",
            "stock source calls that failed, by source and kind of error",
            source_failures.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "connections closed on arrival because MAX_CONNECTIONS were open",
            connections_refused.clone(),
        );
        let inventory_stale = Gauge::default();
        registry.register(
            "inventory_stale",
            "1 while the last reload of the inventory file failed (the last good one is served)",
            inventory_stale.clone(),
        );
        let requests = RequestOutcome::ALL.map(|outcome| {
            requests
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.as_str(),
                })
                .clone()
        });
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_duration,
                backoffice_duration,
                backoffice_failures,
                source_failures,
                connections_refused,
                inventory_stale,
            }),
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, outcome: RequestOutcome, elapsed: Duration) {
        self.inner.requests[outcome as usize].inc();
        self.inner.request_duration.observe(elapsed.as_secs_f64());
    }

    /// One back-office call: its time, and the kind of error if it failed.
    pub fn observe_backoffice(&self, elapsed: Duration, failure: Option<&'static str>) {
        self.inner
            .backoffice_duration
            .observe(elapsed.as_secs_f64());
        if let Some(reason) = failure {
            self.inner
                .backoffice_failures
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
    }

    /// A failed call to any stock source, by the source's name and the error kind.
    pub fn observe_source_failure(&self, source: &'static str, kind: &'static str) {
        self.inner
            .source_failures
            .get_or_create(&SourceFailureLabels { source, kind })
            .inc();
    }

    pub fn observe_connection_refused(&self) {
        self.inner.connections_refused.inc();
    }

    pub fn set_inventory_stale(&self, stale: bool) {
        self.inner.inventory_stale.set(i64::from(stale));
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        ops::render(&self.inner.registry)
    }
}
