//! Configuration: environment variables (what the operator sets from a
//! CommerceWebhook's `spec.inputs`), mirrored one-to-one by command-line flags.
//!
//! Everything is checked at start-up: a bad value stops the process with a message
//! naming the variable, rather than failing the first shopper.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use reqwest::Url;
use thiserror::Error;

use crate::auth::{AuthError, Authenticator};
use crate::stock::inventory::InventoryError;

/// A secret value (a token or key). Its `Debug`/`Display` never show the value, so
/// it cannot leak through logs, `{:?}` of the configuration or panics.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// What to answer when the stock source fails or the deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailurePolicy {
    /// Block the add-to-cart with the fallback message (safe for scarce stock).
    Deny,
    /// Let the add-to-cart through and log a warning (safe for revenue).
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The check-stock webhook for Adobe Commerce. Every flag can be given as the
/// environment variable named in brackets.
#[derive(Debug, Clone, Parser)]
#[command(name = "commerce-webhook", version, about)]
pub struct Args {
    /// TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Path Commerce posts to.
    #[arg(long, env = "WEBHOOK_PATH", default_value = crate::server::DEFAULT_WEBHOOK_PATH, value_parser = parse_webhook_path)]
    pub webhook_path: String,
    /// tracing filter, e.g. `info`, `debug`, `commerce_webhook=debug,warn`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Inventory file (YAML or JSON: SKU -> quantity), re-read when it changes.
    #[arg(long, env = "INVENTORY_FILE")]
    pub inventory_file: Option<PathBuf>,
    /// How often the inventory file is checked for changes.
    #[arg(long, env = "INVENTORY_RELOAD_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub inventory_reload_ms: u64,
    /// Back-office stock endpoint; when set, it is the stock source.
    #[arg(long, env = "BACKOFFICE_URL")]
    pub backoffice_url: Option<Url>,
    /// Bearer token sent to the back-office.
    #[arg(long, env = "BACKOFFICE_TOKEN", hide_env_values = true)]
    pub backoffice_token: Option<Secret>,
    /// Timeout of one back-office call.
    #[arg(long, env = "BACKOFFICE_TIMEOUT_MS", default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..))]
    pub backoffice_timeout_ms: u64,
    /// What to answer when the back-office fails or the deadline passes.
    #[arg(long, env = "BACKOFFICE_ON_ERROR", value_enum, default_value = "deny")]
    pub backoffice_on_error: FailurePolicy,
    /// Message of the exception answered under the `deny` policy.
    #[arg(
        long,
        env = "FALLBACK_ERROR_MESSAGE",
        default_value = "We could not check the stock of your cart right now. Please try again."
    )]
    pub fallback_error_message: String,
    /// Exception class added to exception answers, e.g.
    /// `Magento\Framework\GraphQl\Exception\GraphQlInputException`.
    #[arg(long, env = "EXCEPTION_TYPE")]
    pub exception_type: Option<String>,
    /// Hard deadline for the whole answer, whatever the back-office does.
    #[arg(long, env = "REQUEST_DEADLINE_MS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_deadline_ms: u64,
    /// Largest request body accepted.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,
    /// PEM public key from the Commerce Admin; when set, every call must be signed.
    #[arg(
        long,
        env = "COMMERCE_WEBHOOKS_PUBLIC_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub commerce_webhooks_public_key: Option<Secret>,
    /// When set, every call must carry `Authorization: Bearer <token>`.
    #[arg(long, env = "WEBHOOK_AUTH_TOKEN", hide_env_values = true)]
    pub webhook_auth_token: Option<Secret>,
    /// After SIGTERM, how long to keep serving while reporting not-ready, so load
    /// balancers stop sending traffic before the listener closes.
    #[arg(long, env = "SHUTDOWN_DRAIN_MS", default_value_t = 0)]
    pub shutdown_drain_ms: u64,
    /// After the listener closes, how long in-flight requests may take to finish.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
}

fn parse_webhook_path(value: &str) -> Result<String, String> {
    let reserved = ["/healthz", "/readyz", "/metrics"];
    if !value.starts_with('/') || value.contains(['?', '#', ' ', '{', '}']) || value == "/" {
        Err("must be a plain path starting with '/', like /webhook/check-stock".into())
    } else if reserved.contains(&value) {
        Err(format!("{value} is reserved for the service itself"))
    } else {
        Ok(value.to_owned())
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("INVENTORY_FILE: {0}")]
    Inventory(#[from] InventoryError),
    #[error("COMMERCE_WEBHOOKS_PUBLIC_KEY: {0}")]
    PublicKey(#[from] AuthError),
    #[error("BACKOFFICE_URL: must be an http or https URL, got scheme '{0}'")]
    BackOfficeScheme(String),
    #[error("BACKOFFICE_URL: cannot build the HTTP client: {0}")]
    BackOfficeClient(#[from] reqwest::Error),
    #[error("LOG_LEVEL: {0}")]
    LogLevel(String),
    #[error("WEBHOOK_AUTH_TOKEN: must not be empty when set")]
    EmptyAuthToken,
}

/// What the answers say, shared by every request.
#[derive(Debug, Clone)]
pub struct Answers {
    pub on_error: FailurePolicy,
    pub fallback_message: String,
    pub exception_type: Option<String>,
}

impl Args {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }

    pub fn answers(&self) -> Answers {
        Answers {
            on_error: self.backoffice_on_error,
            fallback_message: self.fallback_error_message.clone(),
            exception_type: self.exception_type.clone().filter(|t| !t.is_empty()),
        }
    }

    pub fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        let token = match &self.webhook_auth_token {
            Some(token) if token.expose().is_empty() => return Err(ConfigError::EmptyAuthToken),
            other => other.clone(),
        };
        let public_key = self
            .commerce_webhooks_public_key
            .as_ref()
            .filter(|pem| !pem.expose().trim().is_empty());
        Ok(Authenticator::new(token, public_key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let args = Args::parse_from([
            "commerce-webhook",
            "--webhook-auth-token",
            "hunter2",
            "--backoffice-token",
            "s3cret",
        ]);
        let shown = format!("{args:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let error = Args::try_parse_from(["commerce-webhook", "--backoffice-timeout-ms", "soon"])
            .unwrap_err();
        assert!(
            error.to_string().contains("BACKOFFICE_TIMEOUT_MS"),
            "{error}"
        );
        let error = Args::try_parse_from(["commerce-webhook", "--backoffice-on-error", "maybe"])
            .unwrap_err();
        assert!(error.to_string().contains("maybe"), "{error}");
        let error =
            Args::try_parse_from(["commerce-webhook", "--request-deadline-ms", "0"]).unwrap_err();
        assert!(error.to_string().contains("REQUEST_DEADLINE_MS"), "{error}");
    }
}
