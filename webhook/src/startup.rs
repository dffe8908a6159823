//! Turning the validated [`Config`] into a running application state: the one step
//! that does I/O before serving (loading the inventory, building the HTTP client).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::check_stock::CheckStock;
use crate::config::{Config, ConfigError, StockConfig};
use crate::contract::var;
use crate::metrics::Metrics;
use crate::server::AppState;
use crate::stock::{BackOffice, Inventory, InventoryFile, StockSource};

/// Builds the state: the stock source the configuration chose, the authenticator,
/// the answers, and fresh metrics.
pub async fn app_state(config: &Config) -> Result<Arc<AppState>, ConfigError> {
    let metrics = Metrics::default();
    let source = stock_source(&config.stock, metrics.clone()).await?;
    tracing::info!(
        source = source.name(),
        signature = config.auth.requires_signature(),
        bearer_token = config.auth.requires_token(),
        deadline_ms = config.limits.deadline.as_millis() as u64,
        "check-stock configured"
    );
    Ok(Arc::new(AppState {
        check_stock: CheckStock::new(
            source,
            config.auth.clone(),
            config.answers.clone(),
            config.limits,
            metrics.clone(),
        ),
        metrics,
        ready: AtomicBool::new(true),
        stale_not_ready: config.stale_not_ready,
    }))
}

async fn stock_source(
    stock: &StockConfig,
    metrics: Metrics,
) -> Result<Arc<dyn StockSource>, ConfigError> {
    Ok(match stock {
        StockConfig::BackOffice(settings) => Arc::new(
            BackOffice::new(settings.clone(), metrics).map_err(ConfigError::BackOfficeClient)?,
        ),
        StockConfig::InventoryFile { path, reload_every } => {
            Arc::new(InventoryFile::watch(path, *reload_every, metrics).await?)
        }
        StockConfig::Sample => {
            tracing::info!(
                "no {} or {}: serving the embedded sample inventory",
                var::BACKOFFICE_URL,
                var::INVENTORY_FILE
            );
            Arc::new(InventoryFile::fixed(Inventory::sample()))
        }
    })
}
