//! The check-stock call, from raw request to Commerce operation.
//!
//! Every path ends in an [`Operation`] with HTTP 200: Commerce treats anything else
//! as a failed call, and then shows only its generic fallback message. The whole
//! decision runs under one deadline so that Commerce always gets an answer in time,
//! whatever the stock source does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::BoxError;
use axum::body::{Bytes, HttpBody};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::answers::{Answers, FailurePolicy};
use crate::auth::{AuthError, Authenticator};
use crate::deadline;
use crate::metrics::{Metrics, RequestOutcome};
use crate::operation::Operation;
use crate::payload::{Echo, PayloadError, parse_check_stock};
use crate::stock::{Shortage, StockError, StockSource, shortages};

/// A request body: hyper's, as the server hands it over without boxing, or any
/// other (tests use axum's).
pub trait RequestBody: HttpBody<Data = Bytes, Error: Into<BoxError>> + Unpin {}

impl<B: HttpBody<Data = Bytes, Error: Into<BoxError>> + Unpin> RequestBody for B {}

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
    #[error("the cart has {lines} lines; at most {max} are checked per call")]
    TooManyLines { lines: usize, max: usize },
}

/// What bounds the work of one call and of all calls at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Hard deadline for the whole answer, reading the body included.
    pub deadline: Duration,
    /// How long the body may take to arrive, from the head (within the deadline):
    /// like nginx's `client_body_timeout`, so that a trickled body is let go early.
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_cart_lines: usize,
    /// Bodies being read at once (each holds at most `max_body_bytes`); one more
    /// is answered as overloaded.
    pub max_bodies_reading: usize,
    /// Calls answered at once, bodies read; one more is refused at once rather
    /// than queued.
    pub max_in_flight: usize,
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
    Overloaded,
}

/// Answers check-stock calls.
pub struct CheckStock {
    source: Arc<dyn StockSource>,
    auth: Authenticator,
    answers: Answers,
    limits: Limits,
    metrics: Metrics,
    /// One permit per body being read, up to `limits.max_bodies_reading`.
    reading: Semaphore,
    /// One permit per call being answered (its body read), up to
    /// `limits.max_in_flight`: a body trickled in never holds one.
    in_flight: Semaphore,
}

impl CheckStock {
    pub fn new(
        source: Arc<dyn StockSource>,
        auth: Authenticator,
        answers: Answers,
        limits: Limits,
        metrics: Metrics,
    ) -> Self {
        CheckStock {
            source,
            auth,
            answers,
            limits,
            metrics,
            reading: Semaphore::new(limits.max_bodies_reading),
            in_flight: Semaphore::new(limits.max_in_flight),
        }
    }

    /// The stock source, for readiness.
    pub fn source(&self) -> &dyn StockSource {
        &*self.source
    }

    pub async fn answer(&self, headers: &HeaderMap, body: impl RequestBody) -> Operation {
        let started = Instant::now();
        let outcome = self.check(headers, body, started).await;
        let (label, operation) = self.to_operation(outcome);
        self.metrics.observe_request(label, started.elapsed());
        operation
    }

    /// The checks that need only the headers come first: a caller without the
    /// token cannot make the service read (and buffer) a byte of its body. The body
    /// is then read under its own budget, holding only a reading permit; the call
    /// is answered under the deadline counted from its arrival, holding an
    /// in-flight permit. Over either cap a call is refused at once: waiting in a
    /// queue would only make Commerce's add-to-cart wait longer.
    async fn check(
        &self,
        headers: &HeaderMap,
        body: impl RequestBody,
        started: Instant,
    ) -> Outcome {
        if let Err(error) = self.auth.verify_token(headers) {
            return Outcome::Unauthorized(error);
        }
        if let Err(error) = check_content_type(headers) {
            return Outcome::Rejected(error);
        }
        let body = {
            let Ok(_reading) = self.reading.try_acquire() else {
                return Outcome::Overloaded;
            };
            let budget = started + self.limits.body_timeout.min(self.limits.deadline);
            match deadline::within(budget, read_body(body, self.limits.max_body_bytes)).await {
                Ok(Ok(body)) => body,
                Ok(Err(error)) => return Outcome::Rejected(error),
                Err(deadline::Elapsed) => return Outcome::DeadlineExceeded,
            }
        };
        let Ok(_answering) = self.in_flight.try_acquire() else {
            return Outcome::Overloaded;
        };
        deadline::within(started + self.limits.deadline, self.decide(headers, body))
            .await
            .unwrap_or(Outcome::DeadlineExceeded)
    }

    async fn decide(&self, headers: &HeaderMap, body: Bytes) -> Outcome {
        if let Err(error) = self.auth.verify_signature(headers, &body) {
            return Outcome::Unauthorized(error);
        }
        let request = match parse_check_stock(&body) {
            Ok(request) => request,
            Err(PayloadError::TooManyItems(lines)) => {
                return Outcome::Rejected(self.too_many_lines(lines));
            }
            Err(error) => return Outcome::Rejected(error.into()),
        };
        if request.items.len() > self.limits.max_cart_lines {
            return Outcome::Rejected(self.too_many_lines(request.items.len()));
        }
        if let Some(product) = &request.unchecked {
            // Its stocked child is not in this event: blocking would refuse the
            // product whatever the stock. The README says to pick the other event.
            tracing::warn!(sku = %Echo(&product.sku), product_type = %Echo(&product.product_type), "composite product let through unchecked: use observer.sales_quote_item_save_before to check it");
            return Outcome::InStock;
        }
        match self.source.availability(&request).await {
            Ok(availability) => {
                let short = shortages(&request, &availability);
                tracing::debug!(
                    cart_id = %Echo(request.cart_id.as_deref().unwrap_or("")),
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

    fn too_many_lines(&self, lines: usize) -> RequestError {
        RequestError::TooManyLines {
            lines,
            max: self.limits.max_cart_lines,
        }
    }

    /// The Commerce operation for an outcome, and its label for metrics.
    fn to_operation(&self, outcome: Outcome) -> (RequestOutcome, Operation) {
        let exception =
            |message: String| Operation::exception(message, self.answers.exception_type.as_deref());
        match outcome {
            Outcome::InStock => (RequestOutcome::Success, Operation::Success),
            Outcome::OutOfStock(short) => (
                RequestOutcome::OutOfStock,
                exception(self.shortage_message(&short)),
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
                tracing::warn!(deadline_ms = self.limits.deadline.as_millis() as u64, policy = ?self.answers.on_error, "no stock answer before the deadline");
                self.on_failure(
                    (
                        RequestOutcome::DeadlineAllowed,
                        RequestOutcome::DeadlineDenied,
                    ),
                    exception,
                )
            }
            Outcome::Overloaded => {
                tracing::debug!(
                    max_in_flight = self.limits.max_in_flight,
                    max_bodies_reading = self.limits.max_bodies_reading,
                    policy = ?self.answers.on_error,
                    "refused a call: too many read or answered at once"
                );
                self.on_failure(
                    (RequestOutcome::Overloaded, RequestOutcome::Overloaded),
                    exception,
                )
            }
        }
    }

    /// The shopper's message: the configured template for each short SKU (the
    /// SKU as an [`Echo`]), joined with `; `.
    fn shortage_message(&self, short: &[Shortage]) -> String {
        let mut message = String::new();
        for (index, shortage) in short.iter().enumerate() {
            if index > 0 {
                message.push_str("; ");
            }
            // Writing to a String cannot fail.
            let _ = self.answers.shortage_message.render(
                &mut message,
                Echo(&shortage.sku),
                shortage.requested,
                shortage.available,
            );
        }
        message
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
    // What Commerce sends, answered without parsing the media type.
    if value.as_bytes().eq_ignore_ascii_case(b"application/json") {
        return Ok(());
    }
    let text = value.to_str().unwrap_or("");
    let mime = text.split(';').next().unwrap_or("").trim();
    let json = mime.eq_ignore_ascii_case("application/json")
        || mime
            .get(..12)
            .is_some_and(|start| start.eq_ignore_ascii_case("application/"))
            && mime
                .get(mime.len().saturating_sub(5)..)
                .is_some_and(|end| end.eq_ignore_ascii_case("+json"));
    if json {
        Ok(())
    } else {
        Err(RequestError::ContentType(format!("'{}'", Echo(text))))
    }
}

/// The body. Usually it arrives in one chunk, which is used as hyper delivered it;
/// otherwise the chunks are collected into one buffer that never grows past
/// `limit`: it starts at the announced length (if within the limit) and doubles up
/// to the limit, so a body sent in many small chunks costs its size, not a buffer
/// per chunk.
async fn read_body(mut body: impl RequestBody, limit: usize) -> Result<Bytes, RequestError> {
    let announced = body.size_hint().lower();
    if announced > limit as u64 {
        return Err(RequestError::BodyTooLarge(limit));
    }
    let mut first: Option<Bytes> = None;
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| RequestError::BodyUnreadable(axum::Error::new(error)))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing check-stock reads
        };
        let held = first.as_ref().map_or(buffer.len(), Bytes::len);
        let needed = held + data.len();
        if needed > limit {
            return Err(RequestError::BodyTooLarge(limit));
        }
        if first.is_none() && buffer.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            buffer.reserve_exact((announced as usize).max(needed));
            buffer.extend_from_slice(&first);
        }
        if needed > buffer.capacity() {
            buffer.reserve_exact(grown_capacity(buffer.capacity(), needed, limit) - buffer.len());
        }
        buffer.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| buffer.into()))
}

/// Doubling (from at least 4 KiB), bounded by `limit`, and at least `needed`.
fn grown_capacity(current: usize, needed: usize, limit: usize) -> usize {
    needed.max(current * 2).max(4096).min(limit).max(needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use futures_core::Stream;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body of `n` one-byte chunks.
    struct Trickle(usize);

    impl Stream for Trickle {
        type Item = Result<axum::body::Bytes, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if self.0 == 0 {
                return Poll::Ready(None);
            }
            self.0 -= 1;
            Poll::Ready(Some(Ok(axum::body::Bytes::from_static(b"x"))))
        }
    }

    #[tokio::test]
    async fn a_body_in_many_chunks_is_collected_within_the_limit() {
        let body = read_body(Body::from_stream(Trickle(10_000)), 16_384)
            .await
            .unwrap();
        assert_eq!(body.len(), 10_000);
        let over = read_body(Body::from_stream(Trickle(16_385)), 16_384).await;
        assert!(matches!(over, Err(RequestError::BodyTooLarge(16_384))));
        let one = read_body(Body::from("{}"), 16).await.unwrap();
        assert_eq!(&one[..], b"{}");
    }

    #[test]
    fn the_buffer_doubles_but_never_past_the_limit() {
        assert_eq!(grown_capacity(0, 1, 16_384), 4096);
        assert_eq!(grown_capacity(4096, 4097, 16_384), 8192);
        assert_eq!(grown_capacity(8192, 8193, 10_000), 10_000);
        assert_eq!(grown_capacity(8192, 9000, 100_000), 16_384);
    }

    #[test]
    fn json_media_types_are_accepted_whatever_their_case() {
        let check = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, axum::http::HeaderValue::from_static(value));
            check_content_type(&headers).is_ok()
        };
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            assert!(check(json), "{json}");
        }
        for other in ["text/plain", "application/jsonx", "json", "", "text/x+json"] {
            assert!(!check(other), "{other}");
        }
    }
}
