//! Stock from an inventory document (SKU → quantity), kept in memory.
//!
//! The file is polled and re-read when its bytes change: a ConfigMap mounted into a
//! pod is updated by an atomic symlink swap, which file-event watchers easily miss
//! but a content comparison never does. A file that becomes invalid is logged and
//! ignored; the last good inventory keeps serving, so a bad edit loses nothing. It
//! is then stale: the `commerce_webhook_inventory_stale` gauge says so, and the pod
//! can be made not ready ([`StockSource::stale`]) until a reload succeeds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use thiserror::Error;
use tokio::task::JoinHandle;

use super::{Answer, Availability, BoxError, StockSource};
use crate::metrics::Metrics;
use crate::payload::{CheckStockRequest, Decimal};

/// The inventory compiled into the binary, so that it runs with no configuration.
pub const SAMPLE_INVENTORY: &str = include_str!("../../sample-inventory.yaml");

/// Quantities by SKU.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inventory(HashMap<String, Decimal, FastHash>);

/// Every call looks up each of its SKUs: foldhash is several times quicker than
/// the standard SipHash on short keys, and as it is seeded per process, and the
/// keys come from the merchant's file, a caller cannot steer collisions.
type FastHash = foldhash::fast::RandomState;

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("cannot read inventory file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid inventory{}: expected a mapping of SKU to a quantity >= 0 ({reason})", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Invalid {
        path: Option<PathBuf>,
        reason: String,
        /// The parser's error, when one was the cause.
        #[source]
        source: Option<BoxError>,
    },
}

impl Inventory {
    /// Parses YAML or JSON (YAML is a superset of JSON) of the form `SKU: quantity`.
    /// A SKU written as a plain integer (`100234: 5`) is YAML's number, read as its
    /// decimal digits; any other non-string key is refused, to be quoted.
    pub fn parse(text: &str) -> Result<Self, InventoryError> {
        let invalid = |reason: String| InventoryError::Invalid {
            path: None,
            reason,
            source: None,
        };
        let unparsable = |e: serde_yaml::Error| InventoryError::Invalid {
            path: None,
            reason: e.to_string(),
            source: Some(e.into()),
        };
        // An empty document is far more often a file caught half-written than a
        // deliberate empty inventory (which is spelled `{}`): refuse it.
        let document: serde_yaml::Value = serde_yaml::from_str(text).map_err(unparsable)?;
        if document.is_null() {
            return Err(invalid(
                "the document is empty; write {} for an empty inventory".into(),
            ));
        }
        let serde_yaml::Value::Mapping(entries) = document else {
            return Err(invalid("the document is not a mapping".into()));
        };
        let mut map = HashMap::with_capacity_and_hasher(entries.len(), FastHash::default());
        for (key, qty) in entries {
            let sku: String = match key {
                serde_yaml::Value::String(sku) => sku,
                serde_yaml::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                other => {
                    return Err(invalid(format!(
                        "key {} is not a SKU: quote it",
                        serde_yaml::to_string(&other).unwrap_or_default().trim()
                    )));
                }
            };
            let qty: Decimal =
                serde_yaml::from_value(qty).map_err(|e| InventoryError::Invalid {
                    path: None,
                    reason: format!("SKU '{sku}': {e}"),
                    source: Some(e.into()),
                })?;
            if qty < Decimal::ZERO {
                return Err(invalid(format!("SKU '{sku}' has quantity {qty}")));
            }
            map.insert(sku, qty.normalize());
        }
        Ok(Inventory(map))
    }

    pub fn sample() -> Self {
        Self::parse(SAMPLE_INVENTORY).expect("the embedded sample inventory is valid")
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn availability(&self, request: &CheckStockRequest<'_>) -> Availability {
        let stock = |sku: &str| self.0.get(sku).copied().unwrap_or(Decimal::ZERO);
        request.items.iter().map(|item| stock(&item.sku)).collect()
    }
}

/// An inventory served from memory, optionally kept in sync with a file.
pub struct InventoryFile {
    current: Arc<ArcSwap<Inventory>>,
    /// The last reload failed: what is served is the last good inventory.
    stale: Arc<AtomicBool>,
    reloader: Option<JoinHandle<()>>,
}

impl InventoryFile {
    /// Serves a fixed inventory (the embedded sample, or one built by a test).
    pub fn fixed(inventory: Inventory) -> Self {
        InventoryFile {
            current: Arc::new(ArcSwap::from_pointee(inventory)),
            stale: Arc::default(),
            reloader: None,
        }
    }

    /// Loads `path` (failing if it is unreadable or invalid) and re-reads it every
    /// `every` in the background, reporting whether it is stale to `metrics`.
    pub async fn watch(
        path: &Path,
        every: Duration,
        metrics: Metrics,
    ) -> Result<Self, InventoryError> {
        let bytes = read(path).await?;
        let inventory = parse_file(path, &bytes)?;
        tracing::info!(path = %path.display(), skus = inventory.len(), "inventory loaded");
        let current = Arc::new(ArcSwap::from_pointee(inventory));
        let stale = Arc::new(AtomicBool::new(false));
        let reloader = tokio::spawn(reload_loop(
            path.to_owned(),
            every,
            bytes,
            current.clone(),
            Staleness {
                stale: stale.clone(),
                metrics,
            },
        ));
        Ok(InventoryFile {
            current,
            stale,
            reloader: Some(reloader),
        })
    }

    /// The inventory being served now.
    pub fn snapshot(&self) -> Arc<Inventory> {
        self.current.load_full()
    }
}

impl Drop for InventoryFile {
    fn drop(&mut self) {
        if let Some(task) = &self.reloader {
            task.abort();
        }
    }
}

impl StockSource for InventoryFile {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn availability<'a>(&'a self, request: &'a CheckStockRequest<'_>) -> Answer<'a> {
        Answer::now(Ok(self.current.load().availability(request)))
    }

    fn stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }
}

/// Where the reload loop reports whether its last attempt failed.
struct Staleness {
    stale: Arc<AtomicBool>,
    metrics: Metrics,
}

impl Staleness {
    fn set(&self, stale: bool) {
        self.stale.store(stale, Ordering::Relaxed);
        self.metrics.set_inventory_stale(stale);
    }
}

async fn read(path: &Path) -> Result<Vec<u8>, InventoryError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<Inventory, InventoryError> {
    let text = std::str::from_utf8(bytes).map_err(|e| InventoryError::Invalid {
        path: Some(path.to_owned()),
        reason: e.to_string(),
        source: Some(e.into()),
    })?;
    Inventory::parse(text).map_err(|e| match e {
        InventoryError::Invalid { reason, source, .. } => InventoryError::Invalid {
            path: Some(path.to_owned()),
            reason,
            source,
        },
        other => other,
    })
}

async fn reload_loop(
    path: PathBuf,
    every: Duration,
    mut last: Vec<u8>,
    current: Arc<ArcSwap<Inventory>>,
    staleness: Staleness,
) {
    let mut last_parsed = true;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let bytes = match read(&path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%error, "keeping the last good inventory");
                staleness.set(true);
                continue;
            }
        };
        if bytes == last {
            // Unchanged, readable again: as fresh (or as stale) as its last parse.
            staleness.set(!last_parsed);
            continue;
        }
        match parse_file(&path, &bytes) {
            Ok(inventory) => {
                tracing::info!(path = %path.display(), skus = inventory.len(), "inventory reloaded");
                current.store(Arc::new(inventory));
                last_parsed = true;
            }
            Err(error) => {
                let error: &(dyn std::error::Error + 'static) = &error;
                tracing::warn!(error, "keeping the last good inventory");
                last_parsed = false;
            }
        }
        staleness.set(!last_parsed);
        last = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_yaml_and_json() {
        let yaml = Inventory::parse("A: 1\nB: 2.5\n").unwrap();
        let json = Inventory::parse(r#"{"A": 1, "B": 2.5}"#).unwrap();
        assert_eq!(yaml, json);
        assert_eq!(yaml.len(), 2);
        assert!(Inventory::parse("{}").unwrap().is_empty());
        assert!(
            Inventory::parse("").is_err(),
            "an empty file is a half-written file"
        );
        assert!(Inventory::parse("# only a comment\n").is_err());
    }

    #[test]
    fn rejects_negative_and_non_numeric_quantities() {
        let negative = Inventory::parse("A: -1").unwrap_err().to_string();
        assert!(negative.contains("SKU 'A' has quantity -1"), "{negative}");
        assert!(Inventory::parse("A: lots").is_err());
        assert!(Inventory::parse("- A\n- B").is_err());
    }

    #[test]
    fn numeric_skus_load_as_their_digits() {
        let inventory = Inventory::parse("100234: 5\n'00042': 1\nA: 2.5\n").unwrap();
        let get = |sku: &str| inventory.0.get(sku).copied();
        assert_eq!(get("100234"), Some(Decimal::from(5)));
        assert_eq!(get("00042"), Some(Decimal::ONE));
        assert_eq!(get("A"), Some(Decimal::new(25, 1)));
        let float_key = Inventory::parse("1.5: 2").unwrap_err().to_string();
        assert!(float_key.contains("quote it"), "{float_key}");
    }

    #[test]
    fn the_sample_inventory_is_valid() {
        assert!(Inventory::sample().len() >= 3);
    }
}
