//! Stock from the merchant's back-office (ERP, WMS, ...) over HTTP.
//!
//! One request per webhook call, on pooled keep-alive connections:
//! `POST {"cart_id":..,"items":[{"sku":..,"qty":..}]}` (no `cart_id` when the
//! event names no cart) answered by
//! `{"items":[{"sku":..,"available":..}]}`. An answer that is not of that form, or
//! that leaves out a SKU that was asked for, is an error rather than a guess: a
//! back-office that lies must not sell stock that may not exist.
//!
//! The client goes only where it is configured to: it follows no redirect (an
//! answer is the configured endpoint's or a failure), uses a proxy only when one is
//! given explicitly (never from `HTTPS_PROXY`-like variables, which other inputs of
//! the pod could set), and trusts the built-in roots plus an optional CA bundle.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::redirect::Policy;
use reqwest::{Certificate, Proxy, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::{Answer, Availability, StockError, StockSource};
use crate::metrics::Metrics;
use crate::payload::{CheckStockRequest, Decimal, Echo};

/// Answers larger than this are not stock answers; reading stops there.
const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct BackOfficeSettings {
    pub url: Url,
    pub token: Option<SecretString>,
    pub timeout: Duration,
    /// The only proxy used, if any.
    pub proxy: Option<Url>,
    /// Trusted in addition to the built-in roots (a private CA).
    pub extra_roots: Vec<Certificate>,
}

pub struct BackOffice {
    client: reqwest::Client,
    settings: BackOfficeSettings,
    metrics: Metrics,
}

#[derive(Serialize)]
struct StockQuery<'a> {
    /// Left out when the event names no cart (`observer.checkout_cart_product_add_before`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cart_id: Option<&'a str>,
    items: Vec<QueryItem<'a>>,
}

#[derive(Serialize)]
struct QueryItem<'a> {
    sku: &'a str,
    /// A JSON number, as the contract has always sent it.
    #[serde(serialize_with = "as_number")]
    qty: Decimal,
}

fn as_number<S: Serializer>(qty: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    use rust_decimal::prelude::ToPrimitive;
    serializer.serialize_f64(qty.to_f64().unwrap_or(f64::MAX))
}

#[derive(Deserialize)]
struct StockAnswer {
    items: Vec<AnswerItem>,
}

#[derive(Deserialize)]
struct AnswerItem {
    sku: String,
    /// A JSON number or a numeric string, read exactly.
    available: Decimal,
}

impl BackOffice {
    pub fn new(settings: BackOfficeSettings, metrics: Metrics) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .redirect(Policy::none());
        builder = match &settings.proxy {
            Some(proxy) => builder.proxy(Proxy::all(proxy.clone())?),
            None => builder.no_proxy(),
        };
        for root in &settings.extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder.build()?;
        Ok(BackOffice {
            client,
            settings,
            metrics,
        })
    }

    async fn ask(&self, request: &CheckStockRequest<'_>) -> Result<Availability, StockError> {
        let query = StockQuery {
            cart_id: request.cart_id.as_deref(),
            items: request
                .items
                .iter()
                .map(|item| QueryItem {
                    sku: &item.sku,
                    qty: item.qty,
                })
                .collect(),
        };
        let body = serde_json::to_vec(&query).map_err(|e| StockError::Other(e.into()))?;
        let mut call = self
            .client
            .post(self.settings.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        if let Some(token) = &self.settings.token {
            call = call.bearer_auth(token.expose_secret());
        }
        let mut response = call.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(StockError::Status(status.as_u16()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(StockError::invalid_answer(format!(
                    "larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let answer: StockAnswer =
            serde_json::from_slice(&bytes).map_err(|e| StockError::InvalidAnswer {
                reason: format!("expected {{\"items\":[{{\"sku\",\"available\"}}]}}: {e}"),
                source: Some(e.into()),
            })?;
        availability_from(answer, request)
    }

    fn transport_error(&self, error: reqwest::Error) -> StockError {
        if error.is_timeout() {
            StockError::Timeout(self.settings.timeout)
        } else {
            // Without the URL: it may carry credentials in its query string.
            StockError::Unreachable(error.without_url().into())
        }
    }
}

fn availability_from(
    answer: StockAnswer,
    request: &CheckStockRequest,
) -> Result<Availability, StockError> {
    let mut by_sku = HashMap::with_capacity(answer.items.len());
    for item in answer.items {
        if item.available < Decimal::ZERO {
            return Err(StockError::invalid_answer(format!(
                "SKU '{}' has available {}",
                Echo(&item.sku),
                item.available
            )));
        }
        by_sku.insert(item.sku, item.available.normalize());
    }
    let lines = request.items.iter();
    lines
        .map(|item| {
            by_sku.get(&*item.sku).copied().ok_or_else(|| {
                StockError::invalid_answer(format!("no answer for SKU '{}'", Echo(&item.sku)))
            })
        })
        .collect()
}

impl StockSource for BackOffice {
    fn name(&self) -> &'static str {
        "backoffice"
    }

    fn availability<'a>(&'a self, request: &'a CheckStockRequest<'_>) -> Answer<'a> {
        Answer::later(async move {
            let started = std::time::Instant::now();
            let result = self.ask(request).await;
            let failure = result.as_ref().err().map(StockError::kind);
            self.metrics.observe_backoffice(started.elapsed(), failure);
            result
        })
    }
}
