//! Where stock levels come from.
//!
//! This is the Rust counterpart of the starter kit's `stock.js`: the one place an
//! integrator plugs in their back-office. A source answers "how many of each SKU can
//! be sold"; comparing that with the cart is done once, in [`shortages`], for all
//! sources.

pub mod backoffice;
pub mod inventory;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use thiserror::Error;

use crate::payload::CheckStockRequest;

pub use backoffice::{BackOffice, BackOfficeSettings};
pub use inventory::{Inventory, InventoryFile};

/// Available quantity by SKU. A SKU a source does not know is treated as unavailable.
pub type Availability = HashMap<String, f64>;

/// A boxed future, so that sources can be chosen at start-up (`dyn StockSource`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stock source. Implement this to ask your own system; see `BackOffice` for one
/// that calls out over HTTP and `InventoryFile` for one that reads a file.
pub trait StockSource: Send + Sync + 'static {
    /// Short name for logs and metrics, e.g. `inventory` or `backoffice`.
    fn name(&self) -> &'static str;

    /// How many of each requested SKU are available.
    fn availability<'a>(
        &'a self,
        request: &'a CheckStockRequest,
    ) -> BoxFuture<'a, Result<Availability, StockError>>;
}

/// Any error a source wraps: its cause stays reachable through `source()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a source could not answer, for any [`StockSource`]. The variants are what
/// the metrics distinguish ([`StockError::kind`]); the text goes to logs (which
/// name the source), never to the shopper.
#[derive(Debug, Error)]
pub enum StockError {
    /// No answer within the source's own timeout.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The source could not be reached (connection refused, reset, DNS...).
    #[error("unreachable: {0}")]
    Unreachable(#[source] BoxError),
    /// The source answered with a failure status (HTTP or otherwise).
    #[error("answered with status {0}")]
    Status(u16),
    /// The source answered something that is not a stock answer.
    #[error("invalid answer: {reason}")]
    InvalidAnswer {
        reason: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else a custom source runs into.
    #[error("failed: {0}")]
    Other(#[source] BoxError),
}

impl StockError {
    /// An invalid answer described by `reason` alone.
    pub fn invalid_answer(reason: impl Into<String>) -> Self {
        StockError::InvalidAnswer {
            reason: reason.into(),
            source: None,
        }
    }

    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StockError::Timeout(_) => "timeout",
            StockError::Unreachable(_) => "unreachable",
            StockError::Status(_) => "status",
            StockError::InvalidAnswer { .. } => "invalid_answer",
            StockError::Other(_) => "other",
        }
    }
}

/// A SKU the cart wants more of than is available.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortage {
    pub sku: String,
    pub requested: f64,
    pub available: f64,
}

/// Compares the cart with what is available. Lines of the same SKU are added up, so
/// a cart cannot get around the stock by splitting a quantity over several lines.
/// Shortages keep the order in which SKUs first appear in the cart.
pub fn shortages(request: &CheckStockRequest, availability: &Availability) -> Vec<Shortage> {
    let mut wanted: Vec<(&str, f64)> = Vec::with_capacity(request.items.len());
    for item in &request.items {
        match wanted.iter_mut().find(|(sku, _)| *sku == item.sku) {
            Some((_, qty)) => *qty += item.qty,
            None => wanted.push((&item.sku, item.qty)),
        }
    }
    wanted
        .into_iter()
        .filter_map(|(sku, requested)| {
            let available = availability.get(sku).copied().unwrap_or(0.0);
            (requested > available).then(|| Shortage {
                sku: sku.to_owned(),
                requested,
                available,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::RequestedItem;

    fn request(items: &[(&str, f64)]) -> CheckStockRequest {
        CheckStockRequest {
            cart_id: Some("c".into()),
            items: items
                .iter()
                .map(|(sku, qty)| RequestedItem {
                    sku: (*sku).into(),
                    qty: *qty,
                })
                .collect(),
            unchecked: None,
        }
    }

    #[test]
    fn adds_up_lines_of_the_same_sku_and_treats_unknown_as_zero() {
        let availability = Availability::from([("A".to_owned(), 3.0), ("B".to_owned(), 10.0)]);
        let short = shortages(
            &request(&[("A", 2.0), ("B", 1.0), ("A", 2.0), ("C", 1.0)]),
            &availability,
        );
        assert_eq!(
            short,
            vec![
                Shortage {
                    sku: "A".into(),
                    requested: 4.0,
                    available: 3.0
                },
                Shortage {
                    sku: "C".into(),
                    requested: 1.0,
                    available: 0.0
                },
            ]
        );
        assert!(shortages(&request(&[("A", 3.0), ("B", 10.0)]), &availability).is_empty());
    }
}
