//! The `commerce-webhook` binary: arguments, logging, signals.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use commerce_webhook::config::{Config, ConfigError};
use commerce_webhook::contract::{Args, LogFormat, var};
use commerce_webhook::ops::shutdown_signal;
use commerce_webhook::{server, startup};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = init_logging(&args) {
        eprintln!("commerce-webhook: {error}");
        return ExitCode::from(2);
    }
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("commerce-webhook: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "cannot listen on {address} ({}/{}): {source}",
        var::PORT,
        var::BIND_ADDRESS
    )]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

async fn run(args: &Args) -> Result<(), RunError> {
    let config = Config::from_args(args)?;
    let state = startup::app_state(&config).await?;
    let address = config.listen;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind { address, source })?;
    tracing::info!(%address, path = %config.webhook_path, "listening");
    server::serve(
        listener,
        state,
        &config.webhook_path,
        config.connections,
        config.shutdown,
        shutdown_signal(),
    )
    .await
    .map_err(RunError::Serve)?;
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(args: &Args) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(&args.log_level).map_err(ConfigError::LogLevel)?;
    // Colours only on a terminal: `kubectl logs` and `docker logs` show plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
