//! Test fixtures for reconciling without a cluster, in the style of kube-rs's
//! controller-rs: resources built from YAML, and a mocked API server (a
//! `tower-test` service behind a real `kube::Client`) that answers each request the
//! way the test decides and records it, so a test asserts on the calls made.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::children::Defaults;
use crate::live::ChildWriters;
use crate::metrics::Metrics;
use crate::reconciler::Context;
use crate::resource::{CommerceWebhook, CommerceWebhookSpec};

/// A resource `hook` in namespace `shop`, generation 1, with the spec in `yaml`.
pub fn webhook(yaml: &str) -> CommerceWebhook {
    let spec: CommerceWebhookSpec = serde_yaml::from_str(yaml).expect("test spec is valid YAML");
    let mut cwh = CommerceWebhook::new("hook", spec);
    cwh.metadata.namespace = Some("shop".into());
    cwh.metadata.uid = Some("uid-1".into());
    cwh.metadata.generation = Some(1);
    cwh.metadata.resource_version = Some("1".into());
    cwh
}

/// One request the operator made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

impl Call {
    /// `METHOD /path`, what assertions compare.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// How the mocked API server answers a request; `None` falls back to
/// [`ApiServer::default_answer`].
pub type Answer = Box<dyn Fn(&Call) -> Option<(StatusCode, Value)> + Send + Sync>;

/// The mocked API server behind a context's client.
pub struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// A context whose client talks to a mocked API server that answers with
    /// `answer`, else [`ApiServer::default_answer`] for `cwh`.
    pub fn start(cwh: &CommerceWebhook, answer: Answer) -> (Arc<Context>, ChildWriters, ApiServer) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let resource = serde_json::to_value(cwh).expect("resource serialises");
        let task = tokio::spawn({
            let calls = calls.clone();
            async move {
                while let Some((request, respond)) = handle.next_request().await {
                    let (parts, body) = request.into_parts();
                    let bytes = body.collect_bytes().await.unwrap_or_default();
                    let call = Call {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    };
                    let (status, body) =
                        answer(&call).unwrap_or_else(|| Self::default_answer(&call, &resource));
                    calls.lock().expect("calls lock").push(call);
                    let response = Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string().into_bytes()))
                        .expect("response builds");
                    respond.send_response(response);
                }
            }
        });
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        );
        let defaults = Defaults {
            image: "img:test".into(),
        };
        let (context, writers) = Context::new(client, defaults, recorder, Metrics::default());
        (Arc::new(context), writers, ApiServer { calls, task })
    }

    /// A server where nothing exists yet: reads and deletes find nothing, applies
    /// and creates succeed and answer the object (at generation 1), status patches
    /// answer the resource with that status.
    pub fn default_answer(call: &Call, resource: &Value) -> (StatusCode, Value) {
        let is_status = call.path.ends_with("/status");
        match call.method {
            Method::GET | Method::DELETE => not_found(),
            Method::PATCH if is_status => {
                let mut updated = resource.clone();
                updated["status"] = call.body["status"].clone();
                (StatusCode::OK, updated)
            }
            Method::PATCH | Method::POST => {
                let mut object = call.body.clone();
                if object["metadata"]["generation"].is_null() {
                    object["metadata"]["generation"] = json!(1);
                }
                object["metadata"]["resourceVersion"] = json!("10");
                let status = if call.method == Method::POST {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                (status, object)
            }
            _ => failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }

    /// Every request so far, as `METHOD /path`, sorted (children are written
    /// concurrently, so their order is not part of the contract).
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.calls().iter().map(Call::line).collect();
        lines.sort();
        lines
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// The body of the last status write.
    pub fn last_status(&self) -> Value {
        self.calls()
            .iter()
            .rev()
            .find(|c| c.path.ends_with("/status"))
            .map(|c| c.body["status"].clone())
            .unwrap_or(Value::Null)
    }

    /// The reasons of the events published, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.calls()
            .iter()
            .filter(|c| c.path.contains("/events"))
            .filter_map(|c| c.body["reason"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn forget_calls(&self) {
        self.calls.lock().expect("calls lock").clear();
    }
}

/// A `404 NotFound` Status, as the API server sends it.
pub fn not_found() -> (StatusCode, Value) {
    failure(StatusCode::NOT_FOUND, "NotFound")
}

/// A failure Status with this code and reason.
pub fn failure(code: StatusCode, reason: &str) -> (StatusCode, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{reason} (test)"), "reason": reason, "code": code.as_u16(),
        }),
    )
}

/// Paths of the objects of `hook` in `shop`.
pub mod path {
    pub const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/hook";
    pub const SERVICE: &str = "/api/v1/namespaces/shop/services/hook";
    pub const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/hook";
    pub const STATUS: &str =
        "/apis/integration.commerce.dev/v1alpha1/namespaces/shop/commercewebhooks/hook/status";
    pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
    pub const SECRETS: &str = "/api/v1/namespaces/shop/secrets";
}

/// The object `K` as the API answered it to the call at `path`, if any.
pub fn answered<K: Resource + serde::de::DeserializeOwned>(
    server: &ApiServer,
    path: &str,
    resource: &CommerceWebhook,
) -> Option<K> {
    let value = serde_json::to_value(resource).ok()?;
    server
        .calls()
        .iter()
        .rev()
        .find(|c| c.path == path && c.method == Method::PATCH)
        .map(|c| ApiServer::default_answer(c, &value).1)
        .and_then(|v| serde_json::from_value(v).ok())
}
