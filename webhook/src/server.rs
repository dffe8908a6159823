//! Serving connections: the limits that keep slow or many clients from exhausting
//! the process, and a graceful shutdown that Kubernetes can rely on. What each
//! request goes to is `routes`.
//!
//! hyper bounds each request head (`header_read_timeout`, which also closes idle
//! kept-alive connections) and its size; this module adds what hyper has no
//! setting for: a shorter budget for a connection's first head, and, at the
//! connection cap, shedding the oldest connection that has not completed a request
//! rather than refusing the new one (connections that send nothing would
//! otherwise lock real callers out).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::Request;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

/// What the routes share; built by [`startup::app_state`](crate::startup::app_state).
pub use crate::routes::AppState;

/// What bounds the connections, whatever their requests.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a request head may take, counted from when the connection waits
    /// for it: also how long a kept-alive connection may stay idle.
    pub header_timeout: Duration,
    /// How long a new connection may take to complete its first request head.
    pub first_header_timeout: Duration,
    /// Connections open at once; see [`serve`] for what happens at the cap.
    pub max_connections: usize,
}

/// Request heads larger than this are refused (431): Commerce's are a few hundred
/// bytes, and each connection's read buffer is bounded by it.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// How long a new connection waits for the slot of the connection it shed.
const SHED_WAIT: Duration = Duration::from_millis(200);

/// How the server stops once asked to.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownPolicy {
    /// Keep serving (while not-ready) this long before closing the listener.
    pub drain: Duration,
    /// Then give in-flight requests this long to finish.
    pub timeout: Duration,
}

/// Connections that have not completed a request yet, oldest first, each with the
/// way to close it.
#[derive(Default)]
struct Fresh {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
}

impl Fresh {
    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, oneshot::Sender<()>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self) -> (u64, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (shed, shed_signal) = oneshot::channel();
        self.waiting().insert(id, shed);
        (id, shed_signal)
    }

    /// The connection completed a request head, or closed: it is no longer shed
    /// first (dropping its sender tells it so).
    fn remove(&self, id: u64) {
        self.waiting().remove(&id);
    }

    /// Closes the oldest connection still waiting for its first head; false if
    /// there is none.
    fn shed_oldest(&self) -> bool {
        let mut waiting = self.waiting();
        while let Some((_, shed)) = waiting.pop_first() {
            if shed.send(()).is_ok() {
                return true;
            }
        }
        false
    }
}

/// Serves until `shutdown` completes, then: not-ready, drain, close the listener,
/// finish in-flight requests (bounded by `policy.timeout`), return.
///
/// At `limits.max_connections`, a new connection sheds the oldest connection that
/// has not completed a request head (as nginx and Envoy favour connections that do
/// work); when every open connection has, the new one is closed on arrival.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    webhook_path: &str,
    limits: ConnectionLimits,
    policy: ShutdownPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let metrics = state.metrics.clone();
    let stop_accepting = {
        let state = state.clone();
        async move {
            shutdown.await;
            state.ready.store(false, Ordering::Relaxed);
            tracing::info!(
                drain_ms = policy.drain.as_millis() as u64,
                "shutting down: not ready, draining"
            );
            tokio::time::sleep(policy.drain).await;
            tracing::info!("listener closed, finishing in-flight requests");
        }
    };
    let router = TowerToHyperService::new(crate::routes::router(state, webhook_path));
    let mut http = http1::Builder::new();
    http.max_buf_size(MAX_HEAD_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connections = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let fresh = Arc::new(Fresh::default());
    let graceful = GracefulShutdown::new();
    let mut stop_accepting = pin!(stop_accepting);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors or memory: give other connections time to
                    // close rather than spin; per-connection errors need no pause.
                    tracing::warn!(%error, "accept failed");
                    if !is_connection_error(&error) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut stop_accepting => break,
        };
        let slot = match connections.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) if fresh.shed_oldest() => {
                metrics.observe_connection_refused();
                match tokio::time::timeout(SHED_WAIT, connections.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => continue,
                }
            }
            // Closed on arrival rather than left in the backlog: the caller learns
            // at once, and the connections already open keep being served.
            Err(_) => {
                metrics.observe_connection_refused();
                continue;
            }
        };
        // A failure only costs latency (Nagle).
        let _ = stream.set_nodelay(true);
        let (id, shed) = fresh.add();
        let service = {
            let (router, fresh, first) = (router.clone(), fresh.clone(), AtomicBool::new(true));
            hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                if first.swap(false, Ordering::Relaxed) {
                    fresh.remove(id);
                }
                hyper::service::Service::call(&router, request)
            })
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let (fresh, first_header_timeout) = (fresh.clone(), limits.first_header_timeout);
        tokio::spawn(async move {
            tokio::select! {
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                },
                why = until_first_head_missed(shed, first_header_timeout) => {
                    tracing::debug!("connection closed: {why}");
                }
            }
            fresh.remove(id);
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(policy.timeout) => {
            tracing::warn!(timeout_ms = policy.timeout.as_millis() as u64, "in-flight requests cut off at the shutdown timeout");
            Ok(())
        }
    }
}

/// Returns (why) once a connection must be closed before its first request: shed
/// at the cap, or its first head not complete in time. Never, once it completed one
/// (its sender is then dropped).
async fn until_first_head_missed(shed: oneshot::Receiver<()>, budget: Duration) -> &'static str {
    match tokio::time::timeout(budget, shed).await {
        Ok(Ok(())) => "shed at the connection cap before its first request",
        Ok(Err(_)) => std::future::pending().await,
        Err(_) => "no first request head within its timeout",
    }
}

/// Errors of one connection, after which accepting the next can go on at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
