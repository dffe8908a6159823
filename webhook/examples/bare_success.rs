//! Benchmark baseline: the least an axum server can do for Commerce, answering
//! every POST with a fixed `{"op":"success"}`. `scripts/bench-webhook.sh` loads it
//! side by side with the real service to show what validation and stock cost.

use axum::Router;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8090".to_owned());
    let app = Router::new().route(
        "/webhook/check-stock",
        post(|| async {
            (
                [("content-type", "application/json")],
                r#"{"op":"success"}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    axum::serve(listener, app).await
}
