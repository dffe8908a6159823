//! Benchmark baseline: the least an axum server can do for Commerce, answering
//! every POST with a fixed `{"op":"success"}`. `scripts/bench-webhook.sh` loads it
//! side by side with the real service to show what validation and stock cost.
//!
//! With `BARE_READ_BODY=1` it also reads each body (axum's `Bytes` extractor)
//! before answering: what reading a request body through hyper costs on its own,
//! which `docs/design/benchmarks.md` compares.

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

const SUCCESS: ([(&str, &str); 1], &str) = (
    [("content-type", "application/json")],
    r#"{"op":"success"}"#,
);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8090".to_owned());
    let route = if std::env::var_os("BARE_READ_BODY").is_some_and(|v| v == "1") {
        post(|body: Bytes| async move {
            drop(body);
            SUCCESS
        })
    } else {
        post(|| async { SUCCESS })
    };
    let app = Router::new().route("/webhook/check-stock", route);
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    axum::serve(listener, app).await
}
