//! The reconcile loop: from a `CommerceWebhook` to applied children and a status.
//!
//! Every reconcile is idempotent: children are server-side applied with one forced
//! field manager (a hand edit of a field we own is reverted; a no-op apply writes
//! nothing), and the status is only written when it differs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use thiserror::Error;

use crate::children::{self, Defaults};
use crate::live::{self, Applied, Child, ChildKey, ChildKind, ChildWriters, LiveChildren, Version};
use crate::metrics::Metrics;
use crate::references::{self, ReferenceError};
use crate::resource::{CommerceWebhook, CommerceWebhookStatus};
use crate::status::{self, Observation, Reason};
use crate::validation::InvalidSpec;

pub const FIELD_MANAGER: &str = "commerce-webhook-operator";
/// A healthy resource is looked at again this often even without events.
const RESYNC: Duration = Duration::from_secs(300);
/// A resource waiting for a Secret/ConfigMap is retried this often (creating the
/// object also triggers a reconcile through the watch).
const MISSING_REFERENCE_RETRY: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Error)]
pub enum Error {
    #[error("CommerceWebhook has no namespace")]
    NoNamespace,
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: ChildKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: ChildKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("updating status: {0}")]
    Status(#[source] kube::Error),
}

impl Error {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::Apply { .. } => "apply",
            Error::Delete { .. } => "delete",
            Error::Reference(_) => "reference",
            Error::Status(_) => "status",
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub defaults: Defaults,
    pub recorder: Recorder,
    pub metrics: Metrics,
    live: LiveChildren,
    applied: Applied,
    /// Consecutive failures by resource, for exponential back-off.
    failures: Mutex<HashMap<ObjectRef<CommerceWebhook>, u32>>,
}

impl Context {
    /// The context, and the writers of its child caches that `controller::run` drives.
    pub fn new(
        client: Client,
        defaults: Defaults,
        recorder: Recorder,
        metrics: Metrics,
    ) -> (Self, ChildWriters) {
        let (live, writers) = live::caches();
        let context = Context {
            client,
            defaults,
            recorder,
            metrics,
            live,
            applied: Applied::default(),
            failures: Mutex::default(),
        };
        (context, writers)
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<CommerceWebhook>, u32>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What applying one child did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
}

pub async fn reconcile(cwh: Arc<CommerceWebhook>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_resource(&cwh, &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::kind));
    if result.is_ok() {
        ctx.failures().remove(&ObjectRef::from_obj(&*cwh));
    }
    result
}

/// Retries failed reconciles with exponential back-off per resource (1 s, 2 s, 4 s, ...
/// up to 5 minutes).
pub fn error_policy(cwh: Arc<CommerceWebhook>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures();
    let count = failures.entry(ObjectRef::from_obj(&*cwh)).or_insert(0);
    *count = count.saturating_add(1);
    let delay = Duration::from_secs(1u64 << (*count - 1).min(9)).min(MAX_BACKOFF);
    tracing::warn!(name = %cwh.name_any(), namespace = ?cwh.namespace(), %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_resource(cwh: &CommerceWebhook, ctx: &Context) -> Result<Action, Error> {
    let namespace = cwh.namespace().ok_or(Error::NoNamespace)?;
    let name = cwh.name_any();
    let observe = |reason: Reason, message: String| Observation {
        generation: cwh.metadata.generation,
        reason,
        message,
        ready_replicas: 0,
        url: None,
        external_url: None,
    };

    if !cwh.spec.enabled {
        let removed = !disabled_already(cwh) && remove_children(ctx, &namespace, &name).await?;
        if removed {
            publish(
                ctx,
                cwh,
                EventType::Normal,
                "Disabled",
                "Removed the webhook's Deployment, Service and Ingress",
            )
            .await;
        }
        let message = "spec.enabled is false: the webhook is not deployed".to_owned();
        update_status(ctx, cwh, observe(Reason::Disabled, message)).await?;
        return Ok(Action::await_change());
    }

    if let Err(error) = cwh.spec.validate() {
        return invalid_spec(ctx, cwh, observe, error).await;
    }

    let refs = references::references(cwh);
    let config_hash = match references::config_hash(&ctx.client, &namespace, &refs).await {
        Ok(hash) => hash,
        Err(error) if error.is_missing() => {
            let message = format!("waiting for {error}");
            if update_status(ctx, cwh, observe(Reason::MissingReference, message.clone())).await? {
                publish(ctx, cwh, EventType::Warning, "MissingReference", &message).await;
            }
            return Ok(Action::requeue(MISSING_REFERENCE_RETRY));
        }
        Err(error) => return Err(error.into()),
    };

    let deployment = children::deployment(cwh, &ctx.defaults, &config_hash);
    let applied = apply_children(ctx, &namespace, &name, cwh, &deployment).await;
    let (deployment, change) = match applied {
        Ok(applied) => applied,
        Err(error) => {
            let message = error.to_string();
            if update_status(ctx, cwh, observe(Reason::ApplyFailed, message.clone())).await? {
                publish(ctx, cwh, EventType::Warning, "ApplyFailed", &message).await;
            }
            return Err(error);
        }
    };
    let (reason, ready_replicas, message) =
        status::deployment_readiness(&deployment, cwh.spec.workload.replicas);
    let observation = Observation {
        ready_replicas,
        url: Some(cwh.cluster_url()),
        external_url: cwh.external_url(),
        ..observe(reason, message)
    };
    // The event and the status are independent writes: send them together.
    let event = async {
        match change {
            Change::Created => {
                let note = "Created the webhook's Deployment and Service";
                publish(ctx, cwh, EventType::Normal, "Created", note).await
            }
            Change::Updated => {
                let note = "Updated the webhook's workload";
                publish(ctx, cwh, EventType::Normal, "Updated", note).await
            }
            Change::Unchanged => {}
        }
    };
    let ((), status) = tokio::join!(event, update_status(ctx, cwh, observation));
    status?;
    Ok(Action::requeue(RESYNC))
}

async fn invalid_spec(
    ctx: &Context,
    cwh: &CommerceWebhook,
    observe: impl Fn(Reason, String) -> Observation,
    error: InvalidSpec,
) -> Result<Action, Error> {
    let message = error.to_string();
    if update_status(ctx, cwh, observe(Reason::InvalidSpec, message.clone())).await? {
        publish(ctx, cwh, EventType::Warning, "InvalidSpec", &message).await;
    }
    // Nothing to retry until the resource changes.
    Ok(Action::await_change())
}

/// Applies Deployment, Service and (if wanted) Ingress concurrently, and removes an
/// Ingress this resource no longer wants. Returns the applied Deployment and what
/// changed, judged from the apply responses alone (no extra reads).
async fn apply_children(
    ctx: &Context,
    namespace: &str,
    name: &str,
    cwh: &CommerceWebhook,
    deployment: &Deployment,
) -> Result<(Deployment, Change), Error> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), namespace);
    let service = children::service(cwh);
    let ingress = async {
        match children::ingress(cwh) {
            Some(ingress) => apply(&ingresses, name, &ingress).await.map(drop),
            // Only an Ingress this resource had (its status shows the external URL).
            None if had_ingress(cwh) => delete(&ingresses, name).await.map(drop),
            None => Ok(()),
        }
    };
    let ((deployment, applied), _, ()) = tokio::try_join!(
        apply_if_changed(ctx, &ctx.live.deployments, &deployments, name, deployment),
        apply_if_changed(ctx, &ctx.live.services, &services, name, &service),
        ingress
    )?;
    let change = if applied {
        workload_change(&deployment, cwh)
    } else {
        Change::Unchanged
    };
    Ok((deployment, change))
}

/// Applies `desired` unless it is what was last applied and the cached live child
/// is still the version that apply produced. Returns the child and whether it applied.
async fn apply_if_changed<K>(
    ctx: &Context,
    cache: &Store<K>,
    api: &Api<K>,
    name: &str,
    desired: &K,
) -> Result<(K, bool), Error>
where
    K: Child,
{
    let namespace = desired.meta().namespace.clone().unwrap_or_default();
    let key = ChildKey::new(K::KIND, &namespace, name);
    let wanted = live::digest(desired);
    if let Some(live) = cache.get(&ObjectRef::new(name).within(&namespace))
        && ctx
            .applied
            .is_current(&key, &wanted, &Version::of(live.meta()))
    {
        return Ok(((*live).clone(), false));
    }
    let result = apply(api, name, desired).await?;
    ctx.applied.record(key, wanted, Version::of(result.meta()));
    Ok((result, true))
}

fn had_ingress(cwh: &CommerceWebhook) -> bool {
    cwh.status
        .as_ref()
        .is_some_and(|s| s.external_url.is_some())
}

/// A Deployment this apply created has generation 1 and has not been observed by
/// its controller (and the resource had no URL yet); one whose spec this apply
/// changed has a generation its controller has not observed yet.
fn workload_change(applied: &Deployment, cwh: &CommerceWebhook) -> Change {
    let generation = applied.metadata.generation;
    let observed = applied.status.as_ref().and_then(|s| s.observed_generation);
    let deployed_before = cwh.status.as_ref().is_some_and(|s| s.url.is_some());
    match (generation, observed) {
        (Some(1), None) if !deployed_before => Change::Created,
        (Some(generation), Some(observed)) if generation > observed => Change::Updated,
        (Some(_), None) => Change::Updated,
        _ => Change::Unchanged,
    }
}

async fn apply<K: Child>(api: &Api<K>, name: &str, object: &K) -> Result<K, Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply {
            kind: K::KIND,
            name: name.to_owned(),
            source,
        })
}

/// Deletes the object if it exists; true if something was deleted.
async fn delete<K: Child>(api: &Api<K>, name: &str) -> Result<bool, Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(source) => Err(Error::Delete {
            kind: K::KIND,
            name: name.to_owned(),
            source,
        }),
    }
}

/// Deletes the children; true if any existed.
async fn remove_children(ctx: &Context, namespace: &str, name: &str) -> Result<bool, Error> {
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let (ingress, service, deployment) = tokio::try_join!(
        delete(&ingresses, name),
        delete(&services, name),
        delete(&deployments, name),
    )?;
    for kind in [ChildKind::Deployment, ChildKind::Service] {
        ctx.applied.forget(&ChildKey::new(kind, namespace, name));
    }
    Ok(ingress || service || deployment)
}

/// Already reported disabled for this generation: its children were removed then.
fn disabled_already(cwh: &CommerceWebhook) -> bool {
    cwh.status.as_ref().is_some_and(|status| {
        status.observed_generation == cwh.metadata.generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == status::READY && c.reason == Reason::Disabled.as_str())
    })
}

/// Writes the status if it changed; true if it was written.
async fn update_status(
    ctx: &Context,
    cwh: &CommerceWebhook,
    observation: Observation,
) -> Result<bool, Error> {
    let new: CommerceWebhookStatus = status::status(observation, cwh.status.as_ref());
    if cwh.status.as_ref() == Some(&new) {
        return Ok(false);
    }
    let api: Api<CommerceWebhook> =
        Api::namespaced(ctx.client.clone(), &cwh.namespace().unwrap_or_default());
    // A merge patch keeps fields it does not mention: spell out the ones that
    // may have gone (the URLs of a disabled webhook) as null.
    let mut patch = json!({ "status": new });
    for field in ["url", "externalUrl", "observedGeneration"] {
        if patch["status"].get(field).is_none() {
            patch["status"][field] = serde_json::Value::Null;
        }
    }
    api.patch_status(
        &cwh.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map_err(Error::Status)?;
    Ok(true)
}

/// Events are best effort: failing to publish one must not fail the reconcile.
async fn publish(ctx: &Context, cwh: &CommerceWebhook, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &cwh.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish an event");
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::runtime::watcher;

    use super::*;
    use crate::fixtures::{ApiServer, answered, failure, path, webhook};

    fn secret_path(name: &str) -> String {
        format!("{}/{name}", path::SECRETS)
    }

    #[tokio::test]
    async fn a_disabled_webhook_loses_its_children_and_says_so() {
        let cwh = webhook("enabled: false");
        let (ctx, _writers, server) = ApiServer::start(
            &cwh,
            Box::new(|call| {
                // The Deployment and Service existed; the Ingress never did.
                (call.method == Method::DELETE && !call.path.contains("ingresses")).then(|| {
                    let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                             "status": "Success", "code": 200});
                    (StatusCode::OK, success)
                })
            }),
        );
        let action = reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        let mut expected = vec![
            format!("DELETE {}", path::DEPLOYMENT),
            format!("DELETE {}", path::INGRESS),
            format!("DELETE {}", path::SERVICE),
            format!("PATCH {}", path::STATUS),
            format!("POST {}", path::EVENTS),
        ];
        expected.sort();
        assert_eq!(server.lines(), expected);
        assert_eq!(server.last_status()["conditions"][0]["reason"], "Disabled");
        assert_eq!(server.event_reasons(), ["Disabled"]);
    }

    #[tokio::test]
    async fn a_missing_secret_is_waited_for_and_named() {
        let cwh = webhook("authToken: {name: hook-auth, key: token}");
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        let action = reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(MISSING_REFERENCE_RETRY));
        assert_eq!(
            server.lines(),
            [
                format!("GET {}", secret_path("hook-auth")),
                format!("PATCH {}", path::STATUS),
                format!("POST {}", path::EVENTS),
            ],
            "nothing is applied while a reference is missing"
        );
        let status = server.last_status();
        assert_eq!(status["conditions"][0]["reason"], "MissingReference");
        assert_eq!(
            status["conditions"][0]["message"],
            "waiting for Secret hook-auth not found"
        );
    }

    #[tokio::test]
    async fn an_invalid_spec_reports_every_problem_and_applies_nothing() {
        let cwh = webhook(
            "path: /metrics\ninputs: [{name: PORT, value: '1'}]\nauthToken: {name: s, key: k}",
        );
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        let action = reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
        assert_eq!(action, Action::await_change(), "only an edit can fix it");
        assert_eq!(
            server.lines(),
            [
                format!("PATCH {}", path::STATUS),
                format!("POST {}", path::EVENTS)
            ],
            "references are not even read"
        );
        let status = server.last_status();
        assert_eq!(status["conditions"][0]["reason"], "InvalidSpec");
        assert_eq!(
            status["conditions"][0]["message"],
            "spec.path /metrics: /metrics is reserved for the service itself; \
             input PORT is managed by the operator; set it there instead of in spec.inputs"
        );
    }

    #[tokio::test]
    async fn a_failed_apply_is_reported_counted_and_retried() {
        let cwh = webhook("{}");
        let (ctx, _writers, server) = ApiServer::start(
            &cwh,
            Box::new(|call| {
                (call.method == Method::PATCH && call.path == path::DEPLOYMENT)
                    .then(|| failure(StatusCode::FORBIDDEN, "Forbidden"))
            }),
        );
        let error = reconcile(Arc::new(cwh.clone()), ctx.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Apply {
                    kind: ChildKind::Deployment,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            std::error::Error::source(&error).is_some(),
            "the API error stays reachable as the source"
        );
        let status = server.last_status();
        assert_eq!(status["conditions"][0]["reason"], "ApplyFailed");
        assert_eq!(server.event_reasons(), ["ApplyFailed"]);
        assert_eq!(
            error_policy(Arc::new(cwh), &error, ctx.clone()),
            Action::requeue(Duration::from_secs(1))
        );
        assert_eq!(ctx.metrics.reconciles(), 1);
    }

    /// A child someone else edited is applied again (our fields win); a child
    /// nobody touched since our last apply costs no request at all.
    #[tokio::test]
    async fn a_child_changed_by_someone_else_is_applied_again() {
        let mut cwh = webhook("{}");
        let (ctx, mut writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
        let mut expected = vec![
            format!("PATCH {}", path::STATUS),
            format!("PATCH {}", path::SERVICE),
            format!("PATCH {}", path::DEPLOYMENT),
            format!("POST {}", path::EVENTS),
        ];
        expected.sort();
        assert_eq!(server.lines(), expected);
        assert_eq!(server.event_reasons(), ["Created"]);
        // The watches see what was applied; the resource now has its status.
        let deployment: Deployment = answered(&server, path::DEPLOYMENT, &cwh).unwrap();
        let service: k8s_openapi::api::core::v1::Service =
            answered(&server, path::SERVICE, &cwh).unwrap();
        writers
            .deployments
            .apply_watcher_event(&watcher::Event::Apply(deployment.clone()));
        writers
            .services
            .apply_watcher_event(&watcher::Event::Apply(service));
        cwh.status = Some(serde_json::from_value(server.last_status()).unwrap());
        server.forget_calls();

        reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
        assert!(
            server.lines().is_empty(),
            "a steady state sends nothing: {:?}",
            server.lines()
        );

        let mut edited = deployment;
        edited.metadata.generation = Some(2);
        writers
            .deployments
            .apply_watcher_event(&watcher::Event::Apply(edited));
        reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
        let lines = server.lines();
        assert!(
            lines.contains(&format!("PATCH {}", path::DEPLOYMENT)),
            "{lines:?}"
        );
        assert!(
            !lines.contains(&format!("PATCH {}", path::SERVICE)),
            "the untouched Service is left alone: {lines:?}"
        );
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_and_a_success_resets_them() {
        // Disabled and already reported so: a reconcile that succeeds without a call.
        let mut cwh = webhook("enabled: false");
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
        cwh.status = Some(serde_json::from_value(server.last_status()).unwrap());
        let cwh = Arc::new(cwh);

        let delays: Vec<u64> = (0..12)
            .map(|_| {
                let action = error_policy(cwh.clone(), &Error::NoNamespace, ctx.clone());
                requeue_seconds(&action)
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);

        server.forget_calls();
        reconcile(cwh.clone(), ctx.clone()).await.unwrap();
        assert!(server.lines().is_empty(), "{:?}", server.lines());
        let action = error_policy(cwh, &Error::NoNamespace, ctx);
        assert_eq!(requeue_seconds(&action), 1, "a success starts over");
    }

    fn requeue_seconds(action: &Action) -> u64 {
        let debug = format!("{action:?}");
        [1u64, 2, 4, 8, 16, 32, 64, 128, 256, 300]
            .into_iter()
            .find(|s| *action == Action::requeue(Duration::from_secs(*s)))
            .unwrap_or_else(|| panic!("unexpected action {debug}"))
    }
}
