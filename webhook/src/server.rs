//! Serving connections: the limits that keep slow or many clients from exhausting
//! the process, and a graceful shutdown that Kubernetes can rely on. What each
//! request goes to is `routes`.
//!
//! Connections are served by hyper directly (not `axum::serve`), so that each one
//! can be watched for requests that never come (see [`idle`]).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::idle::{self, Watched};
use crate::routes::Routes;

/// What the routes share; built by [`startup::app_state`](crate::startup::app_state).
pub use crate::routes::AppState;

/// What bounds the connections, whatever their requests.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a connection may go without a request (a head, an answer or a call
    /// in flight): the slow-header and the idle keep-alive timeout, enforced by
    /// [`idle::watchdog`], so between once and twice this after the last.
    pub header_timeout: Duration,
    /// Connections open at once; one more is closed on arrival.
    pub max_connections: usize,
}

/// Request heads larger than this are refused (431): Commerce's are a few hundred
/// bytes, and each connection's read buffer is bounded by it.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// How the server stops once asked to.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownPolicy {
    /// Keep serving (while not-ready) this long before closing the listener.
    pub drain: Duration,
    /// Then give in-flight requests this long to finish.
    pub timeout: Duration,
}

/// Serves until `shutdown` completes, then: not-ready, drain, close the listener,
/// finish in-flight requests (bounded by `policy.timeout`), return.
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
    let service = Routes::new(state, webhook_path);
    let mut http = http1::Builder::new();
    http.max_buf_size(MAX_HEAD_BYTES);
    let connections = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
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
        // Closed on arrival rather than left in the backlog: the caller learns at
        // once, and the connections already open keep being served.
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            metrics.observe_connection_refused();
            continue;
        };
        // A failure only costs latency (Nagle).
        let _ = stream.set_nodelay(true);
        let (service, activity) = Watched::new(service.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            tokio::select! {
                biased;
                result = connection => if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                },
                () = idle::watchdog(&activity, header_timeout) => {
                    tracing::debug!("connection closed: no request within the header timeout");
                }
            }
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

/// Errors of one connection, after which accepting the next can go on at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
