//! Where stock levels come from.
//!
//! This is the Rust counterpart of the starter kit's `stock.js`: the one place an
//! integrator plugs in their back-office. A source answers "how many of each SKU can
//! be sold"; comparing that with the cart is done once, in [`shortages`], for all
//! sources.

pub mod backoffice;
pub mod inventory;

use std::collections::HashMap;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use thiserror::Error;

use crate::payload::{CheckStockRequest, Decimal, RequestedItem};

pub use backoffice::{BackOffice, BackOfficeSettings};
pub use inventory::{Inventory, InventoryFile};

/// The available quantity of each line's SKU, in the order of the request's lines
/// (a SKU a source does not know is unavailable: zero). By line rather than by SKU
/// so that answering a call builds no map: most carts have one or two lines.
pub type Availability = Vec<Decimal>;

/// A boxed future, so that sources can be chosen at start-up (`dyn StockSource`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a source answers, awaited by the caller: ready at once (a source in
/// memory, which then costs no allocation per call) or later (one that asks over
/// the network, boxed because sources are chosen at start-up).
pub enum Answer<'a> {
    Now(Ready<Result<Availability, StockError>>),
    Later(BoxFuture<'a, Result<Availability, StockError>>),
}

impl<'a> Answer<'a> {
    pub fn now(result: Result<Availability, StockError>) -> Self {
        Answer::Now(std::future::ready(result))
    }

    pub fn later(
        future: impl Future<Output = Result<Availability, StockError>> + Send + 'a,
    ) -> Self {
        Answer::Later(Box::pin(future))
    }
}

impl Future for Answer<'_> {
    type Output = Result<Availability, StockError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Now(ready) => Pin::new(ready).poll(cx),
            Answer::Later(future) => future.as_mut().poll(cx),
        }
    }
}

/// A stock source. Implement this to ask your own system; see `BackOffice` for one
/// that calls out over HTTP and `InventoryFile` for one that reads a file.
pub trait StockSource: Send + Sync + 'static {
    /// Short name for logs and metrics, e.g. `inventory` or `backoffice`.
    fn name(&self) -> &'static str;

    /// How many of each requested SKU are available.
    fn availability<'a>(&'a self, request: &'a CheckStockRequest<'_>) -> Answer<'a>;

    /// True while the source serves data it failed to refresh (an inventory whose
    /// last reload failed); `/readyz` can then report not ready.
    fn stale(&self) -> bool {
        false
    }
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
    pub requested: Decimal,
    pub available: Decimal,
}

/// Compares the cart with what is available. Lines of the same SKU are added up
/// (exactly, saturating at the largest decimal), so a cart cannot get around the
/// stock by splitting a quantity over several lines. Shortages keep the order in
/// which SKUs first appear in the cart.
pub fn shortages(request: &CheckStockRequest, availability: &[Decimal]) -> Vec<Shortage> {
    let items = &request.items;
    let mut short = Vec::new();
    for_each_sku(items, |line, requested| {
        let available = availability.get(line).copied().unwrap_or(Decimal::ZERO);
        if requested > available {
            short.push(Shortage {
                sku: items[line].sku.to_string(),
                requested,
                available,
            });
        }
    });
    short
}

/// Calls `each` with the first line of each SKU and the quantity of all its lines,
/// in the order SKUs first appear. Up to a few lines, searching the lines costs less
/// than building anything (most carts have one or two: nothing is allocated); past
/// that, a map keeps it linear.
fn for_each_sku(items: &[RequestedItem], mut each: impl FnMut(usize, Decimal)) {
    const SEARCHED: usize = 8;
    let total = |lines: &[RequestedItem], sku: &str| {
        (lines.iter().filter(|item| item.sku == sku))
            .fold(Decimal::ZERO, |sum, item| sum.saturating_add(item.qty))
    };
    if items.len() <= SEARCHED {
        for (line, item) in items.iter().enumerate() {
            if !items[..line].iter().any(|before| before.sku == item.sku) {
                each(line, total(&items[line..], &item.sku));
            }
        }
        return;
    }
    let mut first_line: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    let mut totals: Vec<(usize, Decimal)> = Vec::with_capacity(items.len());
    for (line, item) in items.iter().enumerate() {
        match first_line.get(&*item.sku) {
            Some(&at) => totals[at].1 = totals[at].1.saturating_add(item.qty),
            None => {
                first_line.insert(&item.sku, totals.len());
                totals.push((line, item.qty));
            }
        }
    }
    for (line, requested) in totals {
        each(line, requested);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    fn request<'a>(items: &[(&'a str, &str)]) -> CheckStockRequest<'a> {
        CheckStockRequest {
            cart_id: Some("c".into()),
            items: items
                .iter()
                .map(|(sku, qty)| RequestedItem {
                    sku: (*sku).into(),
                    qty: d(qty),
                })
                .collect(),
            unchecked: None,
        }
    }

    /// What a source with `table` answers for `request`.
    fn available(request: &CheckStockRequest, table: &[(&str, &str)]) -> Availability {
        let stock = |sku: &str| table.iter().find(|(s, _)| *s == sku).map(|(_, q)| d(q));
        let lines = request.items.iter();
        lines
            .map(|item| stock(&item.sku).unwrap_or(Decimal::ZERO))
            .collect()
    }

    fn short(items: &[(&str, &str)], table: &[(&str, &str)]) -> Vec<Shortage> {
        let request = request(items);
        shortages(&request, &available(&request, table))
    }

    #[test]
    fn adds_up_lines_of_the_same_sku_and_treats_unknown_as_zero() {
        let table = [("A", "3"), ("B", "10")];
        assert_eq!(
            short(&[("A", "2"), ("B", "1"), ("A", "2"), ("C", "1")], &table),
            vec![
                Shortage {
                    sku: "A".into(),
                    requested: d("4"),
                    available: d("3")
                },
                Shortage {
                    sku: "C".into(),
                    requested: d("1"),
                    available: Decimal::ZERO
                },
            ]
        );
        assert!(short(&[("A", "3"), ("B", "10")], &table).is_empty());
    }

    #[test]
    fn carts_searched_and_carts_mapped_add_up_the_same() {
        // Up to 8 lines the SKUs are searched, past that mapped: both must agree with
        // the definition (the lines of each SKU summed, in order of first appearance).
        for lines in 1..=20 {
            let items: Vec<(String, String)> = (0..lines)
                .map(|line| (format!("S{}", (line * 7) % 5), format!("{}", line + 1)))
                .collect();
            let items: Vec<(&str, &str)> = items.iter().map(|(s, q)| (&**s, &**q)).collect();
            let mut expected: Vec<(&str, Decimal)> = Vec::new();
            for (sku, qty) in &items {
                match expected.iter_mut().find(|(seen, _)| seen == sku) {
                    Some((_, sum)) => *sum += d(qty),
                    None => expected.push((sku, d(qty))),
                }
            }
            let got: Vec<(String, Decimal)> = short(&items, &[])
                .into_iter()
                .map(|shortage| (shortage.sku, shortage.requested))
                .collect();
            let expected: Vec<(String, Decimal)> = expected
                .into_iter()
                .map(|(s, q)| (s.to_owned(), q))
                .collect();
            assert_eq!(got, expected, "{lines} lines");
        }
    }

    #[test]
    fn decimal_quantities_add_up_exactly() {
        // As f64: 0.1 + 0.2 = 0.30000000000000004 > 0.3, a shortage that is not.
        let table = [("A", "0.3"), ("B", "9007199254740992")];
        assert!(short(&[("A", "0.1"), ("A", "0.2")], &table).is_empty());
        // As f64: 2^53 + 1 rounds to 2^53, and the missing unit goes unnoticed.
        let short = short(&[("B", "9007199254740992"), ("B", "1")], &table);
        assert_eq!(short.len(), 1, "{short:?}");
        assert_eq!(short[0].requested, d("9007199254740993"));
    }

    #[test]
    fn a_big_cart_is_compared_in_linear_time() {
        // 100,000 distinct lines: a search of the lines seen so far per line makes
        // 5·10^9 string comparisons (minutes unoptimised); a map takes milliseconds.
        let skus: Vec<String> = (0..100_000).map(|i| format!("SKU-{i}")).collect();
        let big = CheckStockRequest {
            cart_id: None,
            items: skus
                .iter()
                .map(|sku| RequestedItem {
                    sku: sku.into(),
                    qty: Decimal::ONE,
                })
                .collect(),
            unchecked: None,
        };
        let started = std::time::Instant::now();
        let short = shortages(&big, &[]);
        assert_eq!(short.len(), skus.len());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}
