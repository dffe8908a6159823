//! Test fixtures for reconciling without a cluster, in the style of kube-rs's
//! controller-rs: resources built from YAML, and a mocked API server (a
//! `tower-test` service behind a real `kube::Client`) that answers each request the
//! way the test decides and records it, so a test asserts on the calls made.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::api::DynamicObject;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::children::{ChildKind, Defaults};
use crate::live::{self, ChildWriters};
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
    objects: Arc<Mutex<Objects>>,
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
        let objects = Arc::new(Mutex::new(Objects::default()));
        let task = tokio::spawn({
            let calls = calls.clone();
            let objects = objects.clone();
            async move {
                while let Some((request, respond)) = handle.next_request().await {
                    let (parts, body) = request.into_parts();
                    let bytes = body.collect_bytes().await.unwrap_or_default();
                    let merge = parts
                        .headers
                        .get("content-type")
                        .is_some_and(|t| t.as_bytes().starts_with(b"application/merge-patch"));
                    let call = Call {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    };
                    let (status, body) = answer(&call)
                        .or_else(|| objects.lock().expect("objects lock").answer(&call, merge))
                        .unwrap_or_else(|| Self::default_answer(&call, &resource));
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
            pdb: crate::children::PdbApi::v1beta1(),
        };
        let (context, writers) = Context::new(client, defaults, recorder, Metrics::default());
        let server = ApiServer {
            calls,
            objects,
            task,
        };
        (Arc::new(context), writers, server)
    }

    /// A server where nothing exists but what the operator wrote: reads and
    /// deletes of anything else find nothing, applies and creates succeed and
    /// answer the object (a child's generation goes up when its spec changes),
    /// status patches answer the resource with that status.
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

    /// The child at `path` as the server now holds it, if any.
    pub fn object<K: serde::de::DeserializeOwned>(&self, path: &str) -> Option<K> {
        let objects = self.objects.lock().expect("objects lock");
        let object = objects.by_path.get(path)?.clone();
        serde_json::from_value(object).ok()
    }

    /// Puts an object there as someone else would have.
    pub fn insert(&self, path: &str, object: Value) {
        let mut objects = self.objects.lock().expect("objects lock");
        objects.by_path.insert(path.to_owned(), object);
    }

    /// Takes an object away, as its owner would.
    pub fn remove(&self, path: &str) {
        self.objects
            .lock()
            .expect("objects lock")
            .by_path
            .remove(path);
    }

    /// What the operator's watches would see now: every child the server holds
    /// with the operator's label, put into the caches `writers` fill (as their
    /// watches keep it).
    pub fn sync(&self, writers: &mut ChildWriters) {
        for kind in ChildKind::ALL {
            let writer = writers.get_mut(&kind).expect("a writer per kind");
            let labelled = self
                .object::<DynamicObject>(path::of(kind))
                .filter(|object| {
                    object.metadata.labels.as_ref().is_some_and(|labels| {
                        labels
                            .get("app.kubernetes.io/managed-by")
                            .map(String::as_str)
                            == Some("commerce-webhook-operator")
                    })
                });
            match labelled {
                Some(object) => {
                    let kept = live::keep(kind.content(), object);
                    writer.apply_watcher_event(&watcher::Event::Apply(kept));
                }
                None => {
                    if let Some(gone) = writer.as_reader().state().first() {
                        writer.apply_watcher_event(&watcher::Event::Delete((**gone).clone()));
                    }
                }
            }
        }
    }

    pub fn forget_calls(&self) {
        self.calls.lock().expect("calls lock").clear();
    }
}

/// The children written so far, by path, so that a later read or merge patch
/// sees them as an API server would.
#[derive(Default)]
struct Objects {
    by_path: std::collections::HashMap<String, Value>,
    resource_version: u64,
}

impl Objects {
    /// The answer to a read, write or delete of a child, or `None` for the rest
    /// (status writes, events, anything else).
    fn answer(&mut self, call: &Call, merge: bool) -> Option<(StatusCode, Value)> {
        if call.path.ends_with("/status") || call.path.contains("/events") {
            return None;
        }
        match call.method {
            Method::GET => self
                .by_path
                .get(&call.path)
                .map(|o| (StatusCode::OK, o.clone())),
            Method::DELETE => self.by_path.remove(&call.path).map(|_| {
                let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                     "status": "Success", "code": 200});
                (StatusCode::OK, success)
            }),
            Method::PATCH => {
                let previous = self.by_path.get(&call.path).cloned();
                // The guards of a write, as the API server checks them: a uid
                // must be the stored object's (immutable) and names an existing
                // one; a merge patch's resourceVersion must be the stored one.
                let guard_uid = call.body["metadata"]["uid"].as_str();
                let guard_version = call.body["metadata"]["resourceVersion"].as_str();
                match (&previous, guard_uid) {
                    (None, Some(_)) => return Some(failure(StatusCode::CONFLICT, "Conflict")),
                    (Some(previous), Some(uid))
                        if previous["metadata"]["uid"].as_str() != Some(uid) =>
                    {
                        return Some(invalid_uid());
                    }
                    _ => {}
                }
                if let (Some(previous), Some(version), true) = (&previous, guard_version, merge)
                    && previous["metadata"]["resourceVersion"].as_str() != Some(version)
                {
                    return Some(failure(StatusCode::CONFLICT, "Conflict"));
                }
                let mut object = match (&previous, merge) {
                    (Some(previous), true) => {
                        let mut merged = previous.clone();
                        merge_patch(&mut merged, &call.body);
                        merged
                    }
                    (None, true) => return Some(not_found()),
                    (_, false) => call.body.clone(),
                };
                let generation = match &previous {
                    Some(previous) if previous["spec"] == object["spec"] => {
                        previous["metadata"]["generation"].as_i64().unwrap_or(1)
                    }
                    Some(previous) => previous["metadata"]["generation"].as_i64().unwrap_or(0) + 1,
                    None => 1,
                };
                self.resource_version += 1;
                let uid = match &previous {
                    Some(previous) => previous["metadata"]["uid"].clone(),
                    None => json!(format!("created-{}", self.resource_version)),
                };
                object["metadata"]["uid"] = uid;
                object["metadata"]["generation"] = json!(generation);
                object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
                self.by_path.insert(call.path.clone(), object.clone());
                Some((StatusCode::OK, object))
            }
            Method::POST => {
                let name = call.body["metadata"]["name"].as_str()?;
                let target = format!("{}/{name}", call.path);
                if self.by_path.contains_key(&target) {
                    return Some(failure(StatusCode::CONFLICT, "AlreadyExists"));
                }
                self.resource_version += 1;
                let mut object = call.body.clone();
                object["metadata"]["uid"] = json!(format!("created-{}", self.resource_version));
                object["metadata"]["generation"] = json!(1);
                object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
                // What the API server records of a create: its fields, as an Update.
                object["metadata"]["managedFields"] = json!([{
                    "manager": crate::reconciler::FIELD_MANAGER, "operation": "Update",
                    "apiVersion": object["apiVersion"], "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {}},
                }]);
                self.by_path.insert(target, object.clone());
                Some((StatusCode::CREATED, object))
            }
            _ => None,
        }
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// A `404 NotFound` Status, as the API server sends it.
pub fn not_found() -> (StatusCode, Value) {
    failure(StatusCode::NOT_FOUND, "NotFound")
}

/// The API server's answer to a write whose `metadata.uid` is not the object's.
pub fn invalid_uid() -> (StatusCode, Value) {
    let (code, mut status) = failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid");
    status["details"] = json!({"causes": [{"reason": "FieldValueInvalid",
        "message": "field is immutable", "field": "metadata.uid"}]});
    (code, status)
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
    pub const AUTOSCALER: &str =
        "/apis/autoscaling/v1/namespaces/shop/horizontalpodautoscalers/hook";
    pub const BUDGET: &str = "/apis/policy/v1beta1/namespaces/shop/poddisruptionbudgets/hook";
    pub const STATUS: &str =
        "/apis/integration.commerce.dev/v1alpha1/namespaces/shop/commercewebhooks/hook/status";
    pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
    pub const SECRETS: &str = "/api/v1/namespaces/shop/secrets";

    /// Where children of the kind at `path` are created (`POST`).
    pub fn collection(path: &str) -> String {
        path.trim_end_matches("/hook").to_owned()
    }

    /// The path of `hook`'s child of `kind`.
    pub fn of(kind: crate::children::ChildKind) -> &'static str {
        use crate::children::ChildKind;
        match kind {
            ChildKind::Deployment => DEPLOYMENT,
            ChildKind::Service => SERVICE,
            ChildKind::Ingress => INGRESS,
            ChildKind::HorizontalPodAutoscaler => AUTOSCALER,
            ChildKind::PodDisruptionBudget => BUDGET,
        }
    }
}
