//! The webhook's interface to whoever runs it: the environment variables it reads
//! (each mirrored by a command-line flag), their defaults and types, and the paths
//! it serves besides the webhook itself.
//!
//! This is the one definition of that interface. The binary parses it ([`Args`]);
//! the operator builds a pod's environment from the same names and types, so a
//! variable renamed here cannot silently stop reaching the pod. It is compiled
//! without the `server` feature, so depending on it costs no HTTP stack.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, ValueEnum};
use url::Url;

pub use crate::answers::{DEFAULT_SHORTAGE_MESSAGE, FailurePolicy};
/// The type of the secret arguments, and how to read one.
pub use secrecy::{ExposeSecret, SecretString};

/// The environment variables the webhook reads.
pub mod var {
    pub const PORT: &str = "PORT";
    pub const BIND_ADDRESS: &str = "BIND_ADDRESS";
    pub const WEBHOOK_PATH: &str = "WEBHOOK_PATH";
    pub const LOG_LEVEL: &str = "LOG_LEVEL";
    pub const LOG_FORMAT: &str = "LOG_FORMAT";
    pub const INVENTORY_FILE: &str = "INVENTORY_FILE";
    pub const INVENTORY_RELOAD_MS: &str = "INVENTORY_RELOAD_MS";
    pub const BACKOFFICE_URL: &str = "BACKOFFICE_URL";
    pub const BACKOFFICE_TOKEN: &str = "BACKOFFICE_TOKEN";
    pub const BACKOFFICE_TIMEOUT_MS: &str = "BACKOFFICE_TIMEOUT_MS";
    pub const BACKOFFICE_ON_ERROR: &str = "BACKOFFICE_ON_ERROR";
    pub const FALLBACK_ERROR_MESSAGE: &str = "FALLBACK_ERROR_MESSAGE";
    pub const EXCEPTION_TYPE: &str = "EXCEPTION_TYPE";
    pub const REQUEST_DEADLINE_MS: &str = "REQUEST_DEADLINE_MS";
    pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
    pub const COMMERCE_WEBHOOKS_PUBLIC_KEY: &str = "COMMERCE_WEBHOOKS_PUBLIC_KEY";
    pub const WEBHOOK_AUTH_TOKEN: &str = "WEBHOOK_AUTH_TOKEN";
    pub const SHUTDOWN_DRAIN_MS: &str = "SHUTDOWN_DRAIN_MS";
    pub const SHUTDOWN_TIMEOUT_MS: &str = "SHUTDOWN_TIMEOUT_MS";
    pub const HEADER_TIMEOUT_MS: &str = "HEADER_TIMEOUT_MS";
    pub const MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
    pub const MAX_IN_FLIGHT: &str = "MAX_IN_FLIGHT";
    pub const MAX_CART_LINES: &str = "MAX_CART_LINES";
    pub const SHORTAGE_MESSAGE: &str = "SHORTAGE_MESSAGE";
    pub const BACKOFFICE_PROXY: &str = "BACKOFFICE_PROXY";
    pub const BACKOFFICE_CA_FILE: &str = "BACKOFFICE_CA_FILE";
    pub const INVENTORY_STALE_NOT_READY: &str = "INVENTORY_STALE_NOT_READY";
    pub const BODY_TIMEOUT_MS: &str = "BODY_TIMEOUT_MS";
    pub const MAX_BODIES_READING: &str = "MAX_BODIES_READING";
    pub const FIRST_HEADER_TIMEOUT_MS: &str = "FIRST_HEADER_TIMEOUT_MS";

    /// Every variable above, for whoever must know which names the webhook owns
    /// (a test checks this list against [`super::Args`]).
    pub const ALL: [&str; 30] = [
        PORT,
        BIND_ADDRESS,
        WEBHOOK_PATH,
        LOG_LEVEL,
        LOG_FORMAT,
        INVENTORY_FILE,
        INVENTORY_RELOAD_MS,
        BACKOFFICE_URL,
        BACKOFFICE_TOKEN,
        BACKOFFICE_TIMEOUT_MS,
        BACKOFFICE_ON_ERROR,
        FALLBACK_ERROR_MESSAGE,
        EXCEPTION_TYPE,
        REQUEST_DEADLINE_MS,
        MAX_BODY_BYTES,
        COMMERCE_WEBHOOKS_PUBLIC_KEY,
        WEBHOOK_AUTH_TOKEN,
        SHUTDOWN_DRAIN_MS,
        SHUTDOWN_TIMEOUT_MS,
        HEADER_TIMEOUT_MS,
        MAX_CONNECTIONS,
        MAX_IN_FLIGHT,
        MAX_CART_LINES,
        SHORTAGE_MESSAGE,
        BACKOFFICE_PROXY,
        BACKOFFICE_CA_FILE,
        INVENTORY_STALE_NOT_READY,
        BODY_TIMEOUT_MS,
        MAX_BODIES_READING,
        FIRST_HEADER_TIMEOUT_MS,
    ];
}

pub const DEFAULT_PORT: u16 = 8080;
/// Default route, the same name as the starter kit's action (`webhook/check-stock`).
pub const DEFAULT_WEBHOOK_PATH: &str = "/webhook/check-stock";
pub const DEFAULT_BACKOFFICE_TIMEOUT_MS: u32 = 400;
pub const DEFAULT_REQUEST_DEADLINE_MS: u32 = 600;
pub const DEFAULT_FALLBACK_ERROR_MESSAGE: &str =
    "We could not check the stock of your cart right now. Please try again.";

/// Liveness: the process answers.
pub const HEALTH_PATH: &str = "/healthz";
/// Readiness: false from the moment shutdown starts.
pub const READY_PATH: &str = "/readyz";
/// Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Paths the service serves itself, which the webhook route cannot take.
pub const RESERVED_PATHS: [&str; 3] = [HEALTH_PATH, READY_PATH, METRICS_PATH];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The value as the variable spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The check-stock webhook for Adobe Commerce. Every flag can be given as the
/// environment variable named in brackets.
#[derive(Debug, Clone, Parser)]
#[command(name = "commerce-webhook", version, about)]
pub struct Args {
    /// TCP port to listen on.
    #[arg(long, env = var::PORT, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = var::BIND_ADDRESS, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Path Commerce posts to.
    #[arg(long, env = var::WEBHOOK_PATH, default_value = DEFAULT_WEBHOOK_PATH, value_parser = parse_webhook_path)]
    pub webhook_path: String,
    /// tracing filter, e.g. `info`, `debug`, `commerce_webhook=debug,warn`.
    #[arg(long, env = var::LOG_LEVEL, default_value = "info")]
    pub log_level: String,
    #[arg(long, env = var::LOG_FORMAT, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Inventory file (YAML or JSON: SKU -> quantity), re-read when it changes.
    #[arg(long, env = var::INVENTORY_FILE)]
    pub inventory_file: Option<PathBuf>,
    /// How often the inventory file is checked for changes.
    #[arg(long, env = var::INVENTORY_RELOAD_MS, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub inventory_reload_ms: u64,
    /// Report not ready while the inventory file's last reload failed (the last
    /// good inventory is still served either way).
    #[arg(long, env = var::INVENTORY_STALE_NOT_READY, default_value_t = false, action = clap::ArgAction::Set)]
    pub inventory_stale_not_ready: bool,
    /// Back-office stock endpoint; when set, it is the stock source.
    #[arg(long, env = var::BACKOFFICE_URL)]
    pub backoffice_url: Option<Url>,
    /// Bearer token sent to the back-office.
    #[arg(long, env = var::BACKOFFICE_TOKEN, hide_env_values = true, value_parser = parse_secret)]
    pub backoffice_token: Option<SecretString>,
    /// Proxy for the back-office calls (http, https or socks5 URL). Without it no
    /// proxy is used, whatever HTTPS_PROXY-like variables say.
    #[arg(long, env = var::BACKOFFICE_PROXY)]
    pub backoffice_proxy: Option<Url>,
    /// PEM file of CA certificates trusted for the back-office, besides the built-in roots.
    #[arg(long, env = var::BACKOFFICE_CA_FILE)]
    pub backoffice_ca_file: Option<PathBuf>,
    /// Timeout of one back-office call.
    #[arg(long, env = var::BACKOFFICE_TIMEOUT_MS, default_value_t = u64::from(DEFAULT_BACKOFFICE_TIMEOUT_MS), value_parser = clap::value_parser!(u64).range(1..))]
    pub backoffice_timeout_ms: u64,
    /// What to answer when the back-office fails or the deadline passes.
    #[arg(long, env = var::BACKOFFICE_ON_ERROR, value_enum, default_value_t = FailurePolicy::default())]
    pub backoffice_on_error: FailurePolicy,
    /// Message of the exception answered under the `deny` policy.
    #[arg(long, env = var::FALLBACK_ERROR_MESSAGE, default_value = DEFAULT_FALLBACK_ERROR_MESSAGE)]
    pub fallback_error_message: String,
    /// Exception class added to exception answers, e.g.
    /// `Magento\Framework\GraphQl\Exception\GraphQlInputException`.
    #[arg(long, env = var::EXCEPTION_TYPE)]
    pub exception_type: Option<String>,
    /// Hard deadline for the whole answer, whatever the back-office does.
    #[arg(long, env = var::REQUEST_DEADLINE_MS, default_value_t = u64::from(DEFAULT_REQUEST_DEADLINE_MS), value_parser = clap::value_parser!(u64).range(1..))]
    pub request_deadline_ms: u64,
    /// Largest request body accepted. Bodies being read take at most
    /// MAX_BODIES_READING times this much memory.
    #[arg(long, env = var::MAX_BODY_BYTES, default_value_t = 256 << 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,
    /// Most cart lines checked in one call; a larger cart is refused with an exception.
    /// At most 5,000: the most lines a payload is read with (`payload::MAX_CART_LINES`).
    #[arg(long, env = var::MAX_CART_LINES, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub max_cart_lines: u64,
    /// How long a request body may take to arrive, from its head (within
    /// REQUEST_DEADLINE_MS): a body trickled in is let go then, answered as at the
    /// deadline. Like nginx's `client_body_timeout`.
    #[arg(long, env = var::BODY_TIMEOUT_MS, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub body_timeout_ms: u64,
    /// Most request bodies being read at once, apart from the calls being answered
    /// (a body trickled in holds no answering slot); one more is answered as
    /// overloaded, following BACKOFFICE_ON_ERROR.
    #[arg(long, env = var::MAX_BODIES_READING, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_bodies_reading: u64,
    /// Most calls answered at once (bodies read); one more is refused at once
    /// (counted as `overloaded`, answered following BACKOFFICE_ON_ERROR) instead
    /// of waiting.
    #[arg(long, env = var::MAX_IN_FLIGHT, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,
    /// Most connections open at once. At the cap, a new connection sheds the
    /// oldest one that has not completed a request yet; if every connection has,
    /// the new one is closed on arrival.
    #[arg(long, env = var::MAX_CONNECTIONS, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// How long a request head may take, counted from when the connection waits
    /// for it: a kept-alive connection idle this long is closed (hyper's
    /// `header_read_timeout`).
    #[arg(long, env = var::HEADER_TIMEOUT_MS, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub header_timeout_ms: u64,
    /// How long a new connection may take to complete its first request head
    /// (at most HEADER_TIMEOUT_MS applies either way): shorter than a kept-alive
    /// connection's, so connections that send nothing are let go early.
    #[arg(long, env = var::FIRST_HEADER_TIMEOUT_MS, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub first_header_timeout_ms: u64,
    /// The shopper's message for each short SKU; {sku}, {requested} and {available}
    /// are optional placeholders (leave {available} out to keep stock levels private).
    #[arg(long, env = var::SHORTAGE_MESSAGE, default_value = DEFAULT_SHORTAGE_MESSAGE)]
    pub shortage_message: String,
    /// PEM public key from the Commerce Admin; when set, every call must be signed.
    #[arg(
        long,
        env = var::COMMERCE_WEBHOOKS_PUBLIC_KEY,
        hide_env_values = true,
        allow_hyphen_values = true,
        value_parser = parse_secret
    )]
    pub commerce_webhooks_public_key: Option<SecretString>,
    /// When set, every call must carry `Authorization: Bearer <token>`.
    #[arg(long, env = var::WEBHOOK_AUTH_TOKEN, hide_env_values = true, value_parser = parse_secret)]
    pub webhook_auth_token: Option<SecretString>,
    /// After SIGTERM, how long to keep serving while reporting not-ready, so load
    /// balancers stop sending traffic before the listener closes.
    #[arg(long, env = var::SHUTDOWN_DRAIN_MS, default_value_t = 0)]
    pub shutdown_drain_ms: u64,
    /// After the listener closes, how long in-flight requests may take to finish.
    #[arg(long, env = var::SHUTDOWN_TIMEOUT_MS, default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
}

impl Args {
    /// Parses an environment given as a map, exactly as the binary would parse its
    /// process environment (same names, parsers and defaults). Variables the webhook
    /// does not read are ignored, as they are in a pod. This lets a caller check an
    /// environment without touching its own process's.
    pub fn try_from_env<I, K, V>(vars: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<OsString>,
    {
        let command = Args::command();
        let mut argv: Vec<OsString> = vec!["commerce-webhook".into()];
        for (name, value) in vars {
            let flag = command.get_arguments().find(|arg| {
                arg.get_env()
                    .is_some_and(|env| env.to_str() == Some(name.as_ref()))
            });
            if let Some(long) = flag.and_then(|arg| arg.get_long()) {
                // `--flag=value` keeps values that start with '-' (a PEM key) a value.
                let mut arg = OsString::from(format!("--{long}="));
                arg.push(value.into());
                argv.push(arg);
            }
        }
        Args::try_parse_from(argv)
    }
}

/// The variables [`Args`] reads, as clap knows them.
pub fn variables() -> Vec<String> {
    Args::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .filter_map(|env| env.to_str().map(str::to_owned))
        .collect()
}

/// Checks a webhook route: a plain absolute path that is not one of the service's
/// own ([`RESERVED_PATHS`]).
pub fn check_webhook_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') || value.contains(['?', '#', ' ', '{', '}']) || value == "/" {
        Err("must be a plain path starting with '/', like /webhook/check-stock".into())
    } else if RESERVED_PATHS.contains(&value) {
        Err(format!("{value} is reserved for the service itself"))
    } else {
        Ok(())
    }
}

fn parse_webhook_path(value: &str) -> Result<String, String> {
    check_webhook_path(value).map(|()| value.to_owned())
}

fn parse_secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
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
        assert!(shown.contains("REDACTED"));
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

    #[test]
    fn the_variable_list_is_what_the_parser_reads() {
        let mut parsed = variables();
        let mut listed: Vec<String> = var::ALL.iter().map(|v| (*v).to_owned()).collect();
        parsed.sort();
        listed.sort();
        assert_eq!(parsed, listed);
    }

    #[test]
    fn an_env_map_parses_like_the_process_environment() {
        let args = Args::try_from_env([
            (var::PORT, "9000"),
            (var::BACKOFFICE_ON_ERROR, "allow"),
            (
                var::COMMERCE_WEBHOOKS_PUBLIC_KEY,
                "-----BEGIN PUBLIC KEY-----",
            ),
            ("SOMETHING_ELSE", "ignored"),
        ])
        .unwrap();
        assert_eq!(args.port, 9000);
        assert_eq!(args.backoffice_on_error, FailurePolicy::Allow);
        assert!(args.commerce_webhooks_public_key.is_some());
        assert_eq!(args.webhook_path, DEFAULT_WEBHOOK_PATH);
        let error = Args::try_from_env([(var::WEBHOOK_PATH, "/metrics")]).unwrap_err();
        assert!(error.to_string().contains("reserved"), "{error}");
    }
}
