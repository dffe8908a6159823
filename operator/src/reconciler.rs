//! The reconcile loop: from a `CommerceWebhook` to applied children and a status.
//!
//! Every reconcile is idempotent: children are server-side applied with one forced
//! field manager (a hand edit of a field we own is reverted; a no-op apply writes
//! nothing), and the status is only written when it differs.

use std::collections::HashMap;
use std::fmt::Debug;
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
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use thiserror::Error;

use crate::children::{self, Defaults, SpecError};
use crate::live::{self, Applied, ChildWriters, LiveChildren};
use crate::metrics::Metrics;
use crate::references::{self, ReferenceError};
use crate::resource::{CommerceWebhook, CommerceWebhookStatus};
use crate::status::{self, Observation, Reason};

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
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("updating status: {0}")]
    Status(kube::Error),
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
        .observe_reconcile(started.elapsed(), result.is_err());
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

    if let Err(error) = children::env(cwh) {
        return invalid_spec(ctx, cwh, observe, error).await;
    }

    let refs = children::references(cwh);
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

    let deployment = match children::deployment(cwh, &ctx.defaults, &config_hash) {
        Ok(deployment) => deployment,
        Err(error) => return invalid_spec(ctx, cwh, observe, error).await,
    };
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
        url: Some(children::cluster_url(cwh)),
        external_url: children::external_url(cwh),
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
    error: SpecError,
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
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let namespace = desired.meta().namespace.clone().unwrap_or_default();
    let key = (kind_name(&K::kind(&())), namespace.clone(), name.to_owned());
    let wanted = live::digest(desired);
    if let Some(live) = cache.get(&ObjectRef::new(name).within(&namespace))
        && ctx
            .applied
            .is_current(&key, &wanted, &live::version(live.meta()))
    {
        return Ok(((*live).clone(), false));
    }
    let result = apply(api, name, desired).await?;
    ctx.applied
        .record(key, wanted, live::version(result.meta()));
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

async fn apply<K>(api: &Api<K>, name: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply {
            kind: kind_name(&K::kind(&())),
            name: name.to_owned(),
            source,
        })
}

fn kind_name(kind: &str) -> &'static str {
    match kind {
        "Deployment" => "Deployment",
        "Service" => "Service",
        "Ingress" => "Ingress",
        _ => "object",
    }
}

/// Deletes the object if it exists; true if something was deleted.
async fn delete<K>(api: &Api<K>, name: &str) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(source) => Err(Error::Delete {
            kind: kind_name(&K::kind(&())),
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
    for kind in ["Deployment", "Service"] {
        ctx.applied
            .forget(&(kind, namespace.to_owned(), name.to_owned()));
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
