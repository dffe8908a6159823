//! Real servers on loopback for the webhook's tests: the service itself, and a
//! back-office stub whose behaviour each test chooses.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use commerce_webhook::config::Config;
use commerce_webhook::contract::Args;
use commerce_webhook::{server, startup};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running `commerce-webhook` on 127.0.0.1:<random port>.
pub struct Service {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Service {
    /// Starts the service with flags, exactly as the binary would parse them.
    pub async fn start(flags: &[&str]) -> Service {
        let mut argv = vec!["commerce-webhook"];
        argv.extend_from_slice(flags);
        let args = Args::try_parse_from(argv).expect("test flags are valid");
        let config = Config::from_args(&args).expect("test configuration is valid");
        let state = startup::app_state(&config)
            .await
            .expect("test configuration is valid");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let policy = config.shutdown;
        let limits = config.connections;
        let path = config.webhook_path.clone();
        let task = tokio::spawn(async move {
            server::serve(listener, state, &path, limits, policy, async {
                let _ = stopped.await;
            })
            .await
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Service {
            base,
            client,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a JSON body to the check-stock route and returns status and JSON answer.
    pub async fn check(&self, body: &Value) -> (StatusCode, Value) {
        self.post_raw(
            body.to_string().into_bytes(),
            &[("content-type", "application/json")],
        )
        .await
    }

    pub async fn post_raw(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(self.url("/webhook/check-stock"))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("webhook answers");
        let status = response.status();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"));
        (status, json)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics answer");
        response.text().await.expect("metrics body")
    }

    /// Asks the server to shut down (as SIGTERM would).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn cart(items: Value) -> Value {
    json!({"data": {"cart_id": "42", "items": items}})
}

pub fn exception(message: &str) -> Value {
    json!({"op": "exception", "message": message})
}

pub fn success() -> Value {
    json!({"op": "success"})
}

/// How the back-office stub answers.
#[derive(Clone)]
pub enum Behaviour {
    /// Answers from this stock table, after an optional delay.
    Stock(Vec<(&'static str, f64)>, Duration),
    /// Never answers (well past any deadline).
    Hang,
    Status(u16),
    Body(&'static str),
    /// Answers 307 to this URL.
    Redirect(String),
}

/// What the stub received, to check the request the webhook makes.
#[derive(Default)]
pub struct Seen {
    pub bodies: Vec<Value>,
    pub authorization: Vec<Option<String>>,
}

pub struct BackOfficeStub {
    pub url: String,
    pub seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for BackOfficeStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BackOfficeStub {
    pub async fn start(behaviour: Behaviour) -> BackOfficeStub {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new()
            .route("/stock", post(answer))
            .with_state((behaviour, seen.clone()));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!(
            "http://{}/stock",
            listener.local_addr().expect("local addr")
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        BackOfficeStub { url, seen, task }
    }
}

async fn answer(
    State((behaviour, seen)): State<(Behaviour, Arc<Mutex<Seen>>)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    {
        let mut seen = seen.lock().expect("lock");
        seen.bodies
            .push(serde_json::from_str(&body).unwrap_or(Value::Null));
        seen.authorization.push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        );
    }
    match behaviour {
        Behaviour::Stock(table, delay) => {
            tokio::time::sleep(delay).await;
            let items: Vec<Value> = table
                .iter()
                .map(|(sku, available)| json!({"sku": sku, "available": available}))
                .collect();
            axum::Json(json!({"items": items})).into_response()
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Behaviour::Status(code) => StatusCode::from_u16(code)
            .expect("valid status")
            .into_response(),
        Behaviour::Body(text) => ([("content-type", "application/json")], text).into_response(),
        Behaviour::Redirect(to) => {
            (StatusCode::TEMPORARY_REDIRECT, [("location", to.as_str())]).into_response()
        }
    }
}

/// An address where nothing listens: bound, then released.
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address: SocketAddr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{address}/stock")
}
