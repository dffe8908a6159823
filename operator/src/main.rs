//! `commerce-webhook-operator`: runs the controller (`run`, the default), prints
//! the CRD (`crd`), or prints the Commerce side of a hook (`commerce-config`).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use commerce_webhook::ops::shutdown_signal;
use commerce_webhook_operator::children::{Defaults, PdbApi};
use commerce_webhook_operator::commerce_config;
use commerce_webhook_operator::controller::{self, Scope};
use commerce_webhook_operator::leader::{self, LeaseLock};
use commerce_webhook_operator::metrics::{self, Metrics};
use commerce_webhook_operator::reconciler::Context;
use commerce_webhook_operator::resource::{self, CommerceWebhook};

#[derive(Debug, Parser)]
#[command(
    name = "commerce-webhook-operator",
    version,
    about = "Runs Adobe Commerce webhooks declared as CommerceWebhook resources",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// tracing filter, e.g. `info` or `commerce_webhook_operator=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    log_level: String,
    /// Flags of `run`, which is what runs without a subcommand.
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run(RunArgs),
    /// Print the CommerceWebhook CRD as YAML.
    Crd,
    /// Print the Commerce configuration (webhooks.xml and REST subscription) for a
    /// resource, read from the cluster or, with -f, from a manifest (no cluster needed).
    CommerceConfig {
        /// CommerceWebhook name (optional with -f when the file holds only one).
        #[arg(required_unless_present = "filename")]
        name: Option<String>,
        #[arg(short, long, env = "NAMESPACE", default_value = "default")]
        namespace: String,
        /// Read the resource from this YAML manifest instead of the cluster.
        #[arg(short, long)]
        filename: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Only manage resources in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Image for webhooks whose spec.workload.image is empty (required: none is published).
    ///
    /// A default naming a registry namespace someone else could claim would run their
    /// code in every webhook pod: build the image from the Dockerfile, push it to a
    /// registry you control and name it here, by digest (`repository@sha256:...`) to pin it.
    // An `Option` only so that `crd` and `commerce-config` parse without it; clap
    // refuses `run` without one.
    #[arg(long, env = "WEBHOOK_IMAGE", required = true)]
    webhook_image: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Use a Lease so that only one of several replicas reconciles.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE",
        default_value = "commerce-webhook-operator"
    )]
    leader_election_lease: String,
    #[arg(long, env = "LEADER_ELECTION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..))]
    leader_election_seconds: u64,
    /// This replica's name in the Lease (the pod name in Kubernetes).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("cannot connect to Kubernetes: {0}")]
    Client(#[source] kube::Error),
    #[error("CommerceWebhook {namespace}/{name}: {source}")]
    Get {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("metrics server on {address}: {source}")]
    Metrics {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    CommerceConfig(#[from] commerce_config::CommerceConfigError),
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("discovering the PodDisruptionBudget API: {0}")]
    Discovery(#[source] kube::Error),
    #[error("lost leadership")]
    LostLease,
    #[error("no webhook image: set --webhook-image or WEBHOOK_IMAGE")]
    NoWebhookImage,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.log_level) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("commerce-webhook-operator: LOG_LEVEL: {error}");
            return ExitCode::from(2);
        }
    };
    // Colours only on a terminal: in a pod, `kubectl logs` shows plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Crd => resource::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(MainError::from),
        Command::CommerceConfig {
            name,
            namespace,
            filename,
        } => commerce_config(name.as_deref(), &namespace, filename).await,
        Command::Run(args) => run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("commerce-webhook-operator: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn commerce_config(
    name: Option<&str>,
    namespace: &str,
    filename: Option<std::path::PathBuf>,
) -> Result<(), MainError> {
    let (cwh, origin) = match filename {
        Some(path) => {
            let mut cwh = commerce_config::from_manifest(&path, name)?;
            if cwh.metadata.namespace.is_none() {
                cwh.metadata.namespace = Some(namespace.to_owned());
            }
            (cwh, commerce_config::Origin::Manifest(path))
        }
        None => {
            let name = name.unwrap_or_default();
            let client = Client::try_default().await.map_err(MainError::Client)?;
            let api: Api<CommerceWebhook> = Api::namespaced(client, namespace);
            let cwh = api.get(name).await.map_err(|source| MainError::Get {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            })?;
            (cwh, commerce_config::Origin::Cluster)
        }
    };
    let hook = commerce_config::HookConfig::for_resource(&cwh, origin);
    print!("{}", commerce_config::render(&cwh, &hook)?);
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), MainError> {
    let webhook_image = args
        .webhook_image
        .clone()
        .ok_or(MainError::NoWebhookImage)?;
    let client = Client::try_default().await.map_err(MainError::Client)?;
    let metrics = Metrics::default();
    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let address = args.metrics_address;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| MainError::Metrics { address, source })?;
    let metrics_server = tokio::spawn(metrics::serve(listener, metrics.clone(), until_stopped()));
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        })
    };

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(leader::default_identity);
    let lease = args.leader_elect.then(|| {
        LeaseLock::new(
            client.clone(),
            &args.leader_election_namespace,
            &args.leader_election_lease,
            &identity,
            Duration::from_secs(args.leader_election_seconds),
        )
    });
    if let Some(lease) = &lease {
        tokio::select! {
            () = lease.acquire() => {}
            () = until_stopped() => return Ok(()),
        }
    }
    metrics.set_leading(true);

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "commerce-webhook-operator".into(),
            instance: Some(identity.clone()),
        },
    );
    let pdb = PdbApi::discover(&client)
        .await
        .map_err(MainError::Discovery)?;
    let defaults = Defaults {
        image: webhook_image.clone(),
        pdb,
    };
    let (context, writers) = Context::new(client, defaults, recorder, metrics.clone());
    let context = Arc::new(match &lease {
        Some(lease) => context.with_leadership(lease.leadership()),
        None => context,
    });
    let scope = match &args.watch_namespace {
        Some(namespace) => Scope::Namespace(namespace.clone()),
        None => Scope::Cluster,
    };
    tracing::info!(?scope, image = %webhook_image, "controller starting");
    let mut lost = false;
    match &lease {
        Some(lease) => {
            tokio::select! {
                () = controller::run(context, writers, scope, until_stopped()) => {}
                () = lease.hold() => lost = true,
            }
            lease.release().await;
        }
        None => controller::run(context, writers, scope, until_stopped()).await,
    }
    metrics.set_leading(false);
    let _ = stop.send(true);
    signals.abort();
    if let Ok(Err(error)) = metrics_server.await {
        tracing::warn!(%error, "metrics server stopped with an error");
    }
    if lost {
        Err(MainError::LostLease)
    } else {
        Ok(())
    }
}
