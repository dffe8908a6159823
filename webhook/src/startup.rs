//! Turning validated configuration into a running application state.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::check_stock::CheckStock;
use crate::config::{Args, ConfigError};
use crate::metrics::Metrics;
use crate::server::{AppState, ShutdownPolicy};
use crate::stock::{BackOffice, BackOfficeSettings, Inventory, InventoryFile, StockSource};

/// Builds the state from the arguments: picks the stock source (back-office, then
/// inventory file, then the embedded sample) and checks every value on the way.
pub async fn app_state(args: &Args) -> Result<Arc<AppState>, ConfigError> {
    let metrics = Metrics::default();
    let source = stock_source(args, metrics.clone()).await?;
    tracing::info!(
        source = source.name(),
        signature = args.commerce_webhooks_public_key.is_some(),
        bearer_token = args.webhook_auth_token.is_some(),
        deadline_ms = args.request_deadline_ms,
        "check-stock configured"
    );
    Ok(Arc::new(AppState {
        check_stock: CheckStock {
            source,
            auth: args.authenticator()?,
            answers: args.answers(),
            deadline: args.deadline(),
            max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
            metrics: metrics.clone(),
        },
        metrics,
        ready: AtomicBool::new(true),
    }))
}

async fn stock_source(args: &Args, metrics: Metrics) -> Result<Arc<dyn StockSource>, ConfigError> {
    if let Some(url) = &args.backoffice_url {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::BackOfficeScheme(url.scheme().to_owned()));
        }
        let settings = BackOfficeSettings {
            url: url.clone(),
            token: args.backoffice_token.clone(),
            timeout: Duration::from_millis(args.backoffice_timeout_ms),
        };
        if settings.timeout >= args.deadline() {
            tracing::warn!(
                "BACKOFFICE_TIMEOUT_MS ({}) is not below REQUEST_DEADLINE_MS ({}): the deadline will cut slow calls first",
                args.backoffice_timeout_ms,
                args.request_deadline_ms
            );
        }
        return Ok(Arc::new(BackOffice::new(settings, metrics)?));
    }
    if let Some(path) = &args.inventory_file {
        let every = Duration::from_millis(args.inventory_reload_ms);
        return Ok(Arc::new(InventoryFile::watch(path, every).await?));
    }
    tracing::info!("no BACKOFFICE_URL or INVENTORY_FILE: serving the embedded sample inventory");
    Ok(Arc::new(InventoryFile::fixed(Inventory::sample())))
}

pub fn shutdown_policy(args: &Args) -> ShutdownPolicy {
    ShutdownPolicy {
        drain: Duration::from_millis(args.shutdown_drain_ms),
        timeout: Duration::from_millis(args.shutdown_timeout_ms),
    }
}
