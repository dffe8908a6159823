//! The check-stock call, from raw request to Commerce operation.
//!
//! Every path ends in an [`Operation`] with HTTP 200: Commerce treats anything else
//! as a failed call, and then shows only its generic fallback message. The whole
//! decision runs under one deadline so that Commerce always gets an answer in time,
//! whatever the stock source does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use http_body_util::LengthLimitError;
use thiserror::Error;

use crate::answers::{Answers, FailurePolicy};
use crate::auth::{AuthError, Authenticator};
use crate::deadline;
use crate::metrics::{Metrics, RequestOutcome};
use crate::operation::Operation;
use crate::payload::{PayloadError, parse_check_stock};
use crate::stock::{Shortage, StockError, StockSource, shortages};

/// Why a request was not understood. Answered as an exception with this text.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("request body could not be read: {0}")]
    BodyUnreadable(#[source] axum::Error),
    #[error("unsupported Content-Type {0}: send application/json")]
    ContentType(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// What was decided about one call, before it is put in Commerce's words.
#[derive(Debug)]
enum Outcome {
    InStock,
    OutOfStock(Vec<Shortage>),
    Rejected(RequestError),
    Unauthorized(AuthError),
    SourceFailed(StockError),
    DeadlineExceeded,
}

/// Answers check-stock calls.
pub struct CheckStock {
    pub source: Arc<dyn StockSource>,
    pub auth: Authenticator,
    pub answers: Answers,
    pub deadline: Duration,
    pub max_body_bytes: usize,
    pub metrics: Metrics,
}

impl CheckStock {
    pub async fn answer(&self, headers: &HeaderMap, body: Body) -> Operation {
        let started = Instant::now();
        let outcome = match self.read_body(headers, body).await {
            Err(rejected) => rejected,
            // The deadline counts from the request's arrival. Reading the body stays
            // outside it: the body is pending on its first poll, and a timer armed
            // for every call would cost a cross-core wake-up each (see `deadline`).
            Ok(body) => deadline::within(started + self.deadline, self.decide(headers, &body))
                .await
                .unwrap_or(Outcome::DeadlineExceeded),
        };
        let (label, operation) = self.to_operation(outcome);
        self.metrics.observe_request(label, started.elapsed());
        operation
    }

    /// The raw body, if it is JSON and within the size limit.
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Outcome> {
        check_content_type(headers).map_err(Outcome::Rejected)?;
        axum::body::to_bytes(body, self.max_body_bytes)
            .await
            .map_err(|error| Outcome::Rejected(self.body_error(error)))
    }

    async fn decide(&self, headers: &HeaderMap, body: &Bytes) -> Outcome {
        if let Err(error) = self.auth.verify(headers, body) {
            return Outcome::Unauthorized(error);
        }
        let request = match parse_check_stock(body) {
            Ok(request) => request,
            Err(error) => return Outcome::Rejected(error.into()),
        };
        if let Some(product) = &request.unchecked {
            // Its stocked child is not in this event: blocking would refuse the
            // product whatever the stock. The README says to pick the other event.
            tracing::warn!(sku = %product.sku, product_type = %product.product_type, "composite product let through unchecked: use observer.sales_quote_item_save_before to check it");
            return Outcome::InStock;
        }
        match self.source.availability(&request).await {
            Ok(availability) => {
                let short = shortages(&request, &availability);
                tracing::debug!(
                    cart_id = request.cart_id.as_deref().unwrap_or(""),
                    items = request.items.len(),
                    short = short.len(),
                    "stock checked"
                );
                if short.is_empty() {
                    Outcome::InStock
                } else {
                    Outcome::OutOfStock(short)
                }
            }
            Err(error) => Outcome::SourceFailed(error),
        }
    }

    fn body_error(&self, error: axum::Error) -> RequestError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = cause {
            if current.is::<LengthLimitError>() {
                return RequestError::BodyTooLarge(self.max_body_bytes);
            }
            cause = current.source();
        }
        RequestError::BodyUnreadable(error)
    }

    /// The Commerce operation for an outcome, and its label for metrics.
    fn to_operation(&self, outcome: Outcome) -> (RequestOutcome, Operation) {
        let exception =
            |message: String| Operation::exception(message, self.answers.exception_type.as_deref());
        match outcome {
            Outcome::InStock => (RequestOutcome::Success, Operation::Success),
            Outcome::OutOfStock(short) => (
                RequestOutcome::OutOfStock,
                exception(shortage_message(&short)),
            ),
            Outcome::Rejected(error) => {
                tracing::info!(%error, "rejected a check-stock call");
                (RequestOutcome::InvalidRequest, exception(error.to_string()))
            }
            Outcome::Unauthorized(error) => {
                tracing::warn!(%error, "refused an unauthenticated check-stock call");
                (RequestOutcome::Unauthorized, exception(error.to_string()))
            }
            Outcome::SourceFailed(error) => {
                let source = self.source.name();
                self.metrics.observe_source_failure(source, error.kind());
                let error: &(dyn std::error::Error + 'static) = &error;
                tracing::warn!(error, source, policy = ?self.answers.on_error, "stock source failed");
                self.on_failure(
                    (
                        RequestOutcome::SourceErrorAllowed,
                        RequestOutcome::SourceErrorDenied,
                    ),
                    exception,
                )
            }
            Outcome::DeadlineExceeded => {
                tracing::warn!(deadline_ms = self.deadline.as_millis() as u64, policy = ?self.answers.on_error, "no stock answer before the deadline");
                self.on_failure(
                    (
                        RequestOutcome::DeadlineAllowed,
                        RequestOutcome::DeadlineDenied,
                    ),
                    exception,
                )
            }
        }
    }

    /// Applies the failure policy; the outcomes are the ones to count if allowed or denied.
    fn on_failure(
        &self,
        (allowed, denied): (RequestOutcome, RequestOutcome),
        exception: impl Fn(String) -> Operation,
    ) -> (RequestOutcome, Operation) {
        match self.answers.on_error {
            FailurePolicy::Allow => (allowed, Operation::Success),
            FailurePolicy::Deny => (denied, exception(self.answers.fallback_message.clone())),
        }
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), RequestError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(RequestError::ContentType("(none)".into()));
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(RequestError::ContentType(format!(
            "'{}'",
            text.chars().take(80).collect::<String>()
        )))
    }
}

/// `Not enough stock for MS-02 (requested 3, available 2); MS-03 (requested 1, available 0)`
pub(crate) fn shortage_message(short: &[Shortage]) -> String {
    let lines: Vec<String> = short
        .iter()
        .map(|s| {
            format!(
                "{} (requested {}, available {})",
                s.sku, s.requested, s.available
            )
        })
        .collect();
    format!("Not enough stock for {}", lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortage_message_names_each_sku_with_quantities() {
        let message = shortage_message(&[
            Shortage {
                sku: "MS-02".into(),
                requested: 3.0,
                available: 2.0,
            },
            Shortage {
                sku: "MS-03".into(),
                requested: 1.5,
                available: 0.0,
            },
        ]);
        assert_eq!(
            message,
            "Not enough stock for MS-02 (requested 3, available 2); MS-03 (requested 1.5, available 0)"
        );
    }
}
