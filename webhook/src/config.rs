//! The validated configuration: [`Config::from_args`] turns the parsed
//! [`Args`] into the values the service runs with, and is
//! the one place they are checked. A bad value stops the process at start-up with a
//! message naming the variable, rather than failing the first shopper.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use thiserror::Error;

use crate::answers::Answers;
use crate::auth::{AuthError, Authenticator};
use crate::contract::{Args, var};
use crate::server::ShutdownPolicy;
use crate::stock::backoffice::BackOfficeSettings;
use crate::stock::inventory::InventoryError;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{var}: {0}", var = var::INVENTORY_FILE)]
    Inventory(#[from] InventoryError),
    #[error("{var}: {0}", var = var::COMMERCE_WEBHOOKS_PUBLIC_KEY)]
    PublicKey(#[from] AuthError),
    #[error("{var}: must be an http or https URL, got scheme '{0}'", var = var::BACKOFFICE_URL)]
    BackOfficeScheme(String),
    #[error("{var}: cannot build the HTTP client: {0}", var = var::BACKOFFICE_URL)]
    BackOfficeClient(#[source] reqwest::Error),
    #[error("{var}: {0}", var = var::LOG_LEVEL)]
    LogLevel(#[source] tracing_subscriber::filter::ParseError),
    #[error("{var}: must not be empty when set", var = var::WEBHOOK_AUTH_TOKEN)]
    EmptyAuthToken,
}

/// Where stock levels come from, in order of precedence.
#[derive(Debug, Clone)]
pub enum StockConfig {
    /// `BACKOFFICE_URL` is set.
    BackOffice(BackOfficeSettings),
    /// `INVENTORY_FILE` is set: load it, and re-read it this often.
    InventoryFile {
        path: PathBuf,
        reload_every: Duration,
    },
    /// Neither: the sample inventory built into the binary.
    Sample,
}

/// Everything the service runs with, checked.
pub struct Config {
    pub listen: SocketAddr,
    pub webhook_path: String,
    pub stock: StockConfig,
    pub auth: Authenticator,
    pub answers: Answers,
    /// Hard deadline for the whole answer.
    pub deadline: Duration,
    pub max_body_bytes: usize,
    pub shutdown: ShutdownPolicy,
}

impl Config {
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let deadline = Duration::from_millis(args.request_deadline_ms);
        Ok(Config {
            listen: SocketAddr::new(args.bind_address, args.port),
            webhook_path: args.webhook_path.clone(),
            stock: stock(args, deadline)?,
            auth: authenticator(args)?,
            answers: Answers {
                on_error: args.backoffice_on_error,
                fallback_message: args.fallback_error_message.clone(),
                exception_type: args.exception_type.clone().filter(|t| !t.is_empty()),
            },
            deadline,
            max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
            shutdown: ShutdownPolicy {
                drain: Duration::from_millis(args.shutdown_drain_ms),
                timeout: Duration::from_millis(args.shutdown_timeout_ms),
            },
        })
    }
}

fn stock(args: &Args, deadline: Duration) -> Result<StockConfig, ConfigError> {
    if let Some(url) = &args.backoffice_url {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::BackOfficeScheme(url.scheme().to_owned()));
        }
        let settings = BackOfficeSettings {
            url: url.clone(),
            token: args.backoffice_token.clone(),
            timeout: Duration::from_millis(args.backoffice_timeout_ms),
        };
        if settings.timeout >= deadline {
            tracing::warn!(
                "{} ({}) is not below {} ({}): the deadline will cut slow calls first",
                var::BACKOFFICE_TIMEOUT_MS,
                args.backoffice_timeout_ms,
                var::REQUEST_DEADLINE_MS,
                args.request_deadline_ms
            );
        }
        return Ok(StockConfig::BackOffice(settings));
    }
    if let Some(path) = &args.inventory_file {
        return Ok(StockConfig::InventoryFile {
            path: path.clone(),
            reload_every: Duration::from_millis(args.inventory_reload_ms),
        });
    }
    Ok(StockConfig::Sample)
}

fn authenticator(args: &Args) -> Result<Authenticator, ConfigError> {
    let token = match &args.webhook_auth_token {
        Some(token) if token.expose_secret().is_empty() => {
            return Err(ConfigError::EmptyAuthToken);
        }
        other => other.clone(),
    };
    let public_key = args
        .commerce_webhooks_public_key
        .as_ref()
        .filter(|pem| !pem.expose_secret().trim().is_empty());
    Ok(Authenticator::new(token, public_key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(flags: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["commerce-webhook"];
        argv.extend_from_slice(flags);
        Config::from_args(&Args::parse_from(argv))
    }

    #[test]
    fn the_back_office_wins_over_the_inventory_file() {
        let both = config(&[
            "--backoffice-url",
            "http://erp.example/stock",
            "--inventory-file",
            "/tmp/x.yaml",
        ])
        .unwrap();
        assert!(matches!(both.stock, StockConfig::BackOffice(_)));
        assert!(matches!(config(&[]).unwrap().stock, StockConfig::Sample));
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        let scheme = config(&["--backoffice-url", "ftp://erp.example/stock"]).err();
        assert!(
            scheme.is_some_and(|e| e.to_string().starts_with("BACKOFFICE_URL: ")),
            "a non-HTTP back-office is refused"
        );
        let empty = config(&["--webhook-auth-token", ""]).err();
        assert!(matches!(empty, Some(ConfigError::EmptyAuthToken)));
    }
}
