//! The `commerce-webhook` binary: configuration, logging, signals.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use commerce_webhook::config::{Args, ConfigError, LogFormat};
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
    match run(args).await {
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
    #[error("cannot listen on {address} (PORT/BIND_ADDRESS): {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

async fn run(args: Args) -> Result<(), RunError> {
    let state = startup::app_state(&args).await?;
    let address = SocketAddr::new(args.bind_address, args.port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| RunError::Bind { address, source })?;
    tracing::info!(%address, path = %args.webhook_path, "listening");
    server::serve(
        listener,
        state,
        &args.webhook_path,
        startup::shutdown_policy(&args),
        shutdown_signal(),
    )
    .await
    .map_err(RunError::Serve)?;
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(args: &Args) -> Result<(), ConfigError> {
    let filter =
        EnvFilter::try_new(&args.log_level).map_err(|e| ConfigError::LogLevel(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// SIGTERM (Kubernetes) or Ctrl-C (a terminal).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
