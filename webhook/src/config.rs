//! The validated configuration: [`Config::from_args`] turns the parsed
//! [`Args`] into the values the service runs with, and is
//! the one place they are checked. A bad value stops the process at start-up with a
//! message naming the variable, rather than failing the first shopper.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use thiserror::Error;

use crate::answers::{Answers, ShortageMessage, TemplateError};
use crate::auth::{AuthError, Authenticator};
use crate::check_stock::Limits;
use crate::contract::{Args, var};
use crate::server::{ConnectionLimits, ShutdownPolicy};
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
    #[error("{var}: {0}", var = var::SHORTAGE_MESSAGE)]
    ShortageMessage(#[from] TemplateError),
    #[error("{var}: cannot read {path}: {source}", var = var::BACKOFFICE_CA_FILE)]
    CaFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{var}: {path} holds no PEM certificate: {source}", var = var::BACKOFFICE_CA_FILE)]
    CaFileInvalid {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("{var}: {path} holds no PEM certificate", var = var::BACKOFFICE_CA_FILE)]
    CaFileEmpty { path: PathBuf },
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
    pub limits: Limits,
    pub connections: ConnectionLimits,
    /// `/readyz` fails while the stock source is stale.
    pub stale_not_ready: bool,
    pub shutdown: ShutdownPolicy,
}

/// A count from the command line, as a `usize` (saturating on 32-bit targets).
fn count(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
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
                shortage_message: ShortageMessage::parse(&args.shortage_message)?,
            },
            limits: Limits {
                deadline,
                body_timeout: Duration::from_millis(args.body_timeout_ms),
                max_body_bytes: count(args.max_body_bytes),
                max_cart_lines: count(args.max_cart_lines),
                max_bodies_reading: count(args.max_bodies_reading),
                // The semaphore's own maximum is far above any sensible value.
                max_in_flight: count(args.max_in_flight).min(tokio::sync::Semaphore::MAX_PERMITS),
            },
            connections: ConnectionLimits {
                header_timeout: Duration::from_millis(args.header_timeout_ms),
                first_header_timeout: Duration::from_millis(args.first_header_timeout_ms),
                max_connections: count(args.max_connections),
            },
            stale_not_ready: args.inventory_stale_not_ready,
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
            proxy: args.backoffice_proxy.clone(),
            extra_roots: match &args.backoffice_ca_file {
                Some(path) => ca_bundle(path)?,
                None => Vec::new(),
            },
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

/// The certificates of a PEM bundle; a file with none is refused rather than
/// silently trusting only the built-in roots.
fn ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let pem = std::fs::read(path).map_err(|source| ConfigError::CaFileRead {
        path: path.to_owned(),
        source,
    })?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
        ConfigError::CaFileInvalid {
            path: path.to_owned(),
            source,
        }
    })?;
    if roots.is_empty() {
        return Err(ConfigError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

fn authenticator(args: &Args) -> Result<Authenticator, ConfigError> {
    let token = match &args.webhook_auth_token {
        Some(token) if token.expose_secret().trim().is_empty() => {
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
        let newline = config(&["--webhook-auth-token", "\n"]).err();
        assert!(matches!(newline, Some(ConfigError::EmptyAuthToken)));
        let template = config(&["--shortage-message", "{stock} left"]).err();
        assert!(
            template.is_some_and(|e| e.to_string().starts_with("SHORTAGE_MESSAGE: ")),
            "an unknown placeholder is refused"
        );
    }

    #[test]
    fn the_ca_bundle_must_hold_a_certificate() {
        let url = ["--backoffice-url", "https://erp.example/stock"];
        let empty = tempfile::NamedTempFile::new().unwrap();
        let path = empty.path().to_str().unwrap();
        let error = config(&[url[0], url[1], "--backoffice-ca-file", path]).err();
        assert!(
            matches!(error, Some(ConfigError::CaFileEmpty { .. })),
            "{error:?}"
        );
        let error = config(&[url[0], url[1], "--backoffice-ca-file", "/nonexistent.pem"]).err();
        assert!(error.is_some_and(|e| e.to_string().starts_with("BACKOFFICE_CA_FILE: ")));
        let ca = format!(
            "{}/tests/fixtures/backoffice-ca.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let config = config(&[url[0], url[1], "--backoffice-ca-file", &ca]).unwrap();
        let StockConfig::BackOffice(settings) = config.stock else {
            panic!("the back-office is the source");
        };
        assert_eq!(settings.extra_roots.len(), 1);
    }
}
