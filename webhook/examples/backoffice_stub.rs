//! A back-office for benchmarks and the demo: answers the webhook's stock query
//! with every asked SKU available in `AVAILABLE` units (default 100).

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8091".to_owned());
    let available: f64 = std::env::var("AVAILABLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    let app = Router::new().route(
        "/stock",
        post(move |Json(query): Json<Value>| async move {
            let items: Vec<Value> = query["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| json!({"sku": i["sku"], "available": available}))
                        .collect()
                })
                .unwrap_or_default();
            Json(json!({ "items": items }))
        }),
    );
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    axum::serve(listener, app).await
}
