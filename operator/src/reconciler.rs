//! The reconcile loop: from a `CommerceWebhook` to applied children and a status.
//!
//! Every reconcile is idempotent: children are server-side applied with one forced
//! field manager (a hand edit of a field we own is reverted; a no-op apply writes
//! nothing), and the status is only written when it differs.
//!
//! Only objects carrying this resource's controller reference (its uid) are ever
//! written or deleted: a Deployment, Service, ... that merely has the same name is
//! someone else's, and the resource reports `ChildConflict` instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use thiserror::Error;

use crate::children::{self, Defaults};
use crate::leader::Leadership;
use crate::live::{self, Applied, Child, ChildKey, ChildKind, ChildWriters, LiveChildren, Version};
use crate::metrics::Metrics;
use crate::references::{self, ReferenceError};
use crate::resource::{CommerceWebhook, CommerceWebhookStatus, Workload};
use crate::status::{self, Observation, Reason};
use crate::validation::InvalidSpec;

pub const FIELD_MANAGER: &str = "commerce-webhook-operator";
/// A healthy resource is looked at again this often even without events.
const RESYNC: Duration = Duration::from_secs(300);
/// A resource waiting for a Secret/ConfigMap is retried this often (creating the
/// object also triggers a reconcile through the watch), and so is one whose child
/// name is taken by someone else's object (which no watch of ours sees go).
const MISSING_REFERENCE_RETRY: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Error)]
pub enum Error {
    #[error("CommerceWebhook has no namespace")]
    NoNamespace,
    #[error("not the leader (the Lease was not renewed in time): nothing is written")]
    NotLeading,
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: ChildKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name} exists and is not owned by this CommerceWebhook")]
    Conflict { kind: ChildKind, name: String },
    #[error("reading {kind} {name}: {source}")]
    Read {
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
            Error::NotLeading => "not_leading",
            Error::Conflict { .. } => "conflict",
            Error::Read { .. } => "read",
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
    /// Checked before every write: a replica whose Lease lapsed writes nothing.
    leadership: Leadership,
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
            leadership: Leadership::unconditional(),
            live,
            applied: Applied::default(),
            failures: Mutex::default(),
        };
        (context, writers)
    }

    /// The same context, writing only while `leadership` is valid.
    pub fn with_leadership(self, leadership: Leadership) -> Self {
        Context { leadership, ..self }
    }

    fn ensure_leading(&self) -> Result<(), Error> {
        if self.leadership.is_valid() {
            Ok(())
        } else {
            Err(Error::NotLeading)
        }
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
    let result = match ctx.ensure_leading() {
        Ok(()) => reconcile_resource(&cwh, &ctx).await,
        Err(error) => Err(error),
    };
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
        exposure: status::exposure(&cwh.spec),
    };

    if !cwh.spec.enabled {
        let removed = !disabled_already(cwh) && remove_children(ctx, cwh, &namespace).await?;
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

    let live = LiveSet::look(ctx, cwh, &namespace).await?;
    let desired = Desired {
        ingress: children::ingress(cwh),
        autoscaler: children::autoscaler(cwh),
        budget: children::disruption_budget(cwh, &ctx.defaults.pdb),
    };
    let conflicts = live.conflicts(&desired);
    if !conflicts.is_empty() {
        let message = format!(
            "{} already exist and are not owned by this CommerceWebhook; \
             rename the CommerceWebhook or remove them",
            conflicts.join(", ")
        );
        if update_status(ctx, cwh, observe(Reason::ChildConflict, message.clone())).await? {
            publish(ctx, cwh, EventType::Warning, "ChildConflict", &message).await;
        }
        return Ok(Action::requeue(MISSING_REFERENCE_RETRY));
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
    let applied = apply_children(ctx, &namespace, &name, cwh, live, desired, &deployment).await;
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
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let (reason, ready_replicas, message) = status::deployment_readiness(&deployment, wanted);
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

/// What the cluster holds under a child's name.
enum Live<K> {
    Absent,
    /// Carries this resource's controller reference: ours to write and delete.
    Ours(K),
    /// Someone else's: never written, never deleted.
    Foreign,
}

impl<K> Live<K> {
    fn is_foreign(&self) -> bool {
        matches!(self, Live::Foreign)
    }
}

/// True if `meta` names `cwh` (this very object, by uid) as its controller.
fn owned_by(meta: &ObjectMeta, cwh: &CommerceWebhook) -> bool {
    let Some(uid) = cwh.metadata.uid.as_deref() else {
        return false;
    };
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.uid == uid)
}

/// The child named `name` of kind `K`: from the watch cache when it is there,
/// else as the API server has it (an object without our label is in no cache).
async fn look<K: Child>(
    api: &Api<K>,
    name: &str,
    cached: Option<Arc<K>>,
    cwh: &CommerceWebhook,
) -> Result<Live<K>, Error> {
    let object = match cached {
        Some(cached) => Some((*cached).clone()),
        None => api.get_opt(name).await.map_err(|source| Error::Read {
            kind: K::KIND,
            name: name.to_owned(),
            source,
        })?,
    };
    Ok(match object {
        None => Live::Absent,
        Some(object) if owned_by(object.meta(), cwh) => Live::Ours(object),
        Some(_) => Live::Foreign,
    })
}

/// The children a resource can have, as they are now.
struct LiveSet {
    name: String,
    deployments: Api<Deployment>,
    services: Api<Service>,
    ingresses: Api<Ingress>,
    autoscalers: Api<HorizontalPodAutoscaler>,
    budgets: Api<DynamicObject>,
    deployment: Live<Deployment>,
    service: Live<Service>,
    ingress: Live<Ingress>,
    autoscaler: Live<HorizontalPodAutoscaler>,
    budget: Live<DynamicObject>,
}

/// The optional children a valid resource wants (it always wants a Deployment
/// and a Service).
struct Desired {
    ingress: Option<Ingress>,
    autoscaler: Option<HorizontalPodAutoscaler>,
    budget: Option<DynamicObject>,
}

impl LiveSet {
    /// Reads every child concurrently.
    async fn look(ctx: &Context, cwh: &CommerceWebhook, namespace: &str) -> Result<Self, Error> {
        let client = &ctx.client;
        let name = cwh.name_any();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let ingresses: Api<Ingress> = Api::namespaced(client.clone(), namespace);
        let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
        let budgets: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &ctx.defaults.pdb.0);
        let (deployment, service, ingress, autoscaler, budget) = tokio::try_join!(
            look(
                &deployments,
                &name,
                ctx.live
                    .deployments
                    .get(&ObjectRef::new(&name).within(namespace)),
                cwh
            ),
            look(
                &services,
                &name,
                ctx.live
                    .services
                    .get(&ObjectRef::new(&name).within(namespace)),
                cwh
            ),
            look(&ingresses, &name, None, cwh),
            look(&autoscalers, &name, None, cwh),
            look(&budgets, &name, None, cwh),
        )?;
        Ok(LiveSet {
            name,
            deployments,
            services,
            ingresses,
            autoscalers,
            budgets,
            deployment,
            service,
            ingress,
            autoscaler,
            budget,
        })
    }

    /// The wanted children whose name someone else's object already has.
    fn conflicts(&self, desired: &Desired) -> Vec<String> {
        let wanted = [
            (ChildKind::Deployment, self.deployment.is_foreign()),
            (ChildKind::Service, self.service.is_foreign()),
            (
                ChildKind::Ingress,
                desired.ingress.is_some() && self.ingress.is_foreign(),
            ),
            (
                ChildKind::HorizontalPodAutoscaler,
                desired.autoscaler.is_some() && self.autoscaler.is_foreign(),
            ),
            (
                ChildKind::PodDisruptionBudget,
                desired.budget.is_some() && self.budget.is_foreign(),
            ),
        ];
        wanted
            .into_iter()
            .filter(|(_, conflict)| *conflict)
            .map(|(kind, _)| format!("{kind} {}", self.name))
            .collect()
    }
}

/// Applies every wanted child concurrently and deletes the ones this resource owns
/// but no longer wants. Returns the applied Deployment and what changed, judged
/// from the apply responses alone (no extra reads).
async fn apply_children(
    ctx: &Context,
    namespace: &str,
    name: &str,
    cwh: &CommerceWebhook,
    live: LiveSet,
    desired: Desired,
    deployment: &Deployment,
) -> Result<(Deployment, Change), Error> {
    let service = children::service(cwh);
    let created = matches!(live.deployment, Live::Absent);
    let ((deployment, applied), _, _, _, _) = tokio::try_join!(
        apply_if_changed(
            ctx,
            &live.deployments,
            namespace,
            name,
            live.deployment,
            deployment
        ),
        apply_if_changed(ctx, &live.services, namespace, name, live.service, &service),
        converge(
            ctx,
            &live.ingresses,
            namespace,
            name,
            live.ingress,
            desired.ingress.as_ref()
        ),
        converge(
            ctx,
            &live.autoscalers,
            namespace,
            name,
            live.autoscaler,
            desired.autoscaler.as_ref()
        ),
        converge(
            ctx,
            &live.budgets,
            namespace,
            name,
            live.budget,
            desired.budget.as_ref()
        ),
    )?;
    let change = if applied {
        workload_change(&deployment, cwh)
    } else {
        Change::Unchanged
    };
    let deployment = if created {
        seed_replicas(ctx, &live.deployments, namespace, name, cwh, deployment).await?
    } else {
        deployment
    };
    Ok((deployment, change))
}

/// A new Deployment whose replicas nobody set starts with the default for its hook
/// (two pods for a required one). Written as a plain patch, not in the apply: the
/// operator never owns a `replicas` the spec does not set, so a later
/// `kubectl scale` or HPA keeps the count.
async fn seed_replicas(
    ctx: &Context,
    api: &Api<Deployment>,
    namespace: &str,
    name: &str,
    cwh: &CommerceWebhook,
    deployment: Deployment,
) -> Result<Deployment, Error> {
    let workload = &cwh.spec.workload;
    let initial = Workload::default_replicas(cwh.spec.commerce.required);
    let current = deployment.spec.as_ref().and_then(|spec| spec.replicas);
    if workload.replicas.is_some() || workload.autoscaling.is_some() || current == Some(initial) {
        return Ok(deployment);
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let patch = json!({"spec": {"replicas": initial}});
    ctx.ensure_leading()?;
    let seeded = api
        .patch(name, &params, &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Apply {
            kind: ChildKind::Deployment,
            name: name.to_owned(),
            source,
        })?;
    let key = ChildKey::new(ChildKind::Deployment, namespace, name);
    ctx.applied.update_version(&key, Version::of(seeded.meta()));
    Ok(seeded)
}

/// Brings an optional child to `desired`: applied when wanted, deleted when this
/// resource owns it but no longer wants it, someone else's left alone. True if
/// anything was written.
async fn converge<K: Child>(
    ctx: &Context,
    api: &Api<K>,
    namespace: &str,
    name: &str,
    live: Live<K>,
    desired: Option<&K>,
) -> Result<bool, Error> {
    match (live, desired) {
        (live, Some(desired)) => {
            let (_, applied) = apply_if_changed(ctx, api, namespace, name, live, desired).await?;
            Ok(applied)
        }
        (Live::Ours(live), None) => {
            ctx.ensure_leading()?;
            let deleted = delete(api, name, &live).await?;
            ctx.applied.forget(&ChildKey::new(K::KIND, namespace, name));
            Ok(deleted)
        }
        (Live::Foreign | Live::Absent, None) => Ok(false),
    }
}

/// Applies `desired` unless it is what was last applied and the live child is
/// still the version that apply produced. Returns the child and whether it applied.
/// Never applies over someone else's object: a forced apply would take its fields.
async fn apply_if_changed<K: Child>(
    ctx: &Context,
    api: &Api<K>,
    namespace: &str,
    name: &str,
    live: Live<K>,
    desired: &K,
) -> Result<(K, bool), Error> {
    let key = ChildKey::new(K::KIND, namespace, name);
    let wanted = live::digest(desired);
    match live {
        Live::Foreign => {
            return Err(Error::Conflict {
                kind: K::KIND,
                name: name.to_owned(),
            });
        }
        Live::Ours(live)
            if ctx
                .applied
                .is_current(&key, &wanted, &Version::of(live.meta())) =>
        {
            return Ok((live, false));
        }
        Live::Ours(_) | Live::Absent => {}
    }
    ctx.ensure_leading()?;
    let result = apply(api, name, desired).await?;
    ctx.applied.record(key, wanted, Version::of(result.meta()));
    Ok((result, true))
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

/// Deletes this very object (its uid is a precondition, so an object someone
/// re-created under the name meanwhile survives); true if it was deleted.
async fn delete<K: Child>(api: &Api<K>, name: &str, live: &K) -> Result<bool, Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: live.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(source) => Err(Error::Delete {
            kind: K::KIND,
            name: name.to_owned(),
            source,
        }),
    }
}

/// Deletes the children this resource owns; true if any was deleted. Objects of
/// the same names that are someone else's stay.
async fn remove_children(
    ctx: &Context,
    cwh: &CommerceWebhook,
    namespace: &str,
) -> Result<bool, Error> {
    let name = cwh.name_any();
    let live = LiveSet::look(ctx, cwh, namespace).await?;
    let (deployment, service, ingress, autoscaler, budget) = tokio::try_join!(
        converge(
            ctx,
            &live.deployments,
            namespace,
            &name,
            live.deployment,
            None
        ),
        converge(ctx, &live.services, namespace, &name, live.service, None),
        converge(ctx, &live.ingresses, namespace, &name, live.ingress, None),
        converge(
            ctx,
            &live.autoscalers,
            namespace,
            &name,
            live.autoscaler,
            None
        ),
        converge(ctx, &live.budgets, namespace, &name, live.budget, None),
    )?;
    Ok(deployment || service || ingress || autoscaler || budget)
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
    ctx.ensure_leading()?;
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

/// Events are best effort: failing to publish one must not fail the reconcile
/// (and one that is not the leader's anymore is dropped).
async fn publish(ctx: &Context, cwh: &CommerceWebhook, type_: EventType, reason: &str, note: &str) {
    if ctx.ensure_leading().is_err() {
        return;
    }
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
    use crate::fixtures::{ApiServer, failure, path, webhook};

    fn secret_path(name: &str) -> String {
        format!("{}/{name}", path::SECRETS)
    }

    fn get(path: &str) -> String {
        format!("GET {path}")
    }

    /// The reads every reconcile of a valid or disabled resource starts with:
    /// whether each child exists and whose it is.
    fn looks() -> Vec<String> {
        [
            path::DEPLOYMENT,
            path::SERVICE,
            path::INGRESS,
            path::AUTOSCALER,
            path::BUDGET,
        ]
        .into_iter()
        .map(get)
        .collect()
    }

    fn sorted(mut lines: Vec<String>) -> Vec<String> {
        lines.sort();
        lines
    }

    /// A child named `hook`, controlled by the resource with `uid` (none: nobody's).
    fn child(kind: &str, api_version: &str, uid: Option<&str>) -> serde_json::Value {
        let owners = uid.map(|uid| {
            json!([{"apiVersion": "integration.commerce.dev/v1alpha1", "kind": "CommerceWebhook",
                    "name": "hook", "uid": uid, "controller": true}])
        });
        let spec = match kind {
            "Deployment" => json!({"selector": {"matchLabels": {"app": "theirs"}}, "template": {}}),
            _ => json!({"selector": {"app": "theirs"}}),
        };
        json!({"apiVersion": api_version, "kind": kind, "metadata": {
            "name": "hook", "namespace": "shop", "uid": format!("{kind}-uid"),
            "resourceVersion": "5", "ownerReferences": owners,
        }, "spec": spec})
    }

    #[tokio::test]
    async fn a_disabled_webhook_loses_its_children_and_says_so() {
        let cwh = webhook("enabled: false");
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        // The Deployment and Service existed; the Ingress never did.
        server.insert(
            path::DEPLOYMENT,
            child("Deployment", "apps/v1", Some("uid-1")),
        );
        server.insert(path::SERVICE, child("Service", "v1", Some("uid-1")));
        let action = reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        let mut expected = looks();
        expected.extend([
            format!("DELETE {}", path::DEPLOYMENT),
            format!("DELETE {}", path::SERVICE),
            format!("PATCH {}", path::STATUS),
            format!("POST {}", path::EVENTS),
        ]);
        assert_eq!(server.lines(), sorted(expected));
        let delete = server
            .calls()
            .into_iter()
            .find(|c| c.method == Method::DELETE)
            .unwrap();
        assert_eq!(
            delete.body["preconditions"]["uid"],
            json!(if delete.path == path::DEPLOYMENT {
                "Deployment-uid"
            } else {
                "Service-uid"
            }),
            "only this very object is deleted"
        );
        assert_eq!(server.last_status()["conditions"][0]["reason"], "Disabled");
        assert_eq!(server.event_reasons(), ["Disabled"]);
    }

    /// Objects that merely have the resource's name (no controller reference to
    /// it, or one to another resource's uid) are never applied over nor deleted.
    #[tokio::test]
    async fn someone_else_s_objects_are_never_written_or_deleted() {
        let cwh = webhook("{}");
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        let theirs = child("Deployment", "apps/v1", None);
        let other_owner = child("Service", "v1", Some("uid-of-an-older-hook"));
        server.insert(path::DEPLOYMENT, theirs.clone());
        server.insert(path::SERVICE, other_owner.clone());

        let action = reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(MISSING_REFERENCE_RETRY));
        let mut expected = looks();
        expected.extend([
            format!("PATCH {}", path::STATUS),
            format!("POST {}", path::EVENTS),
        ]);
        assert_eq!(server.lines(), sorted(expected), "nothing is written");
        let condition = &server.last_status()["conditions"][0];
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "ChildConflict");
        assert_eq!(
            condition["message"],
            "Deployment hook, Service hook already exist and are not owned by this \
             CommerceWebhook; rename the CommerceWebhook or remove them"
        );
        assert_eq!(server.event_reasons(), ["ChildConflict"]);

        server.forget_calls();
        let disabled = webhook("enabled: false");
        reconcile(Arc::new(disabled), ctx).await.unwrap();
        assert!(
            server
                .lines()
                .iter()
                .all(|line| !line.starts_with("DELETE")),
            "{:?}",
            server.lines()
        );
        assert_eq!(
            server.object::<serde_json::Value>(path::DEPLOYMENT),
            Some(theirs)
        );
        assert_eq!(
            server.object::<serde_json::Value>(path::SERVICE),
            Some(other_owner)
        );
    }

    #[tokio::test]
    async fn a_missing_secret_is_waited_for_and_named() {
        let cwh = webhook("authToken: {name: hook-auth, key: token}");
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        let action = reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(MISSING_REFERENCE_RETRY));
        let mut expected = looks();
        expected.extend([
            format!("GET {}", secret_path("hook-auth")),
            format!("PATCH {}", path::STATUS),
            format!("POST {}", path::EVENTS),
        ]);
        assert_eq!(
            server.lines(),
            sorted(expected),
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
    /// nobody touched since our last apply costs no write at all.
    #[tokio::test]
    async fn a_child_changed_by_someone_else_is_applied_again() {
        let mut cwh = webhook("{}");
        let (ctx, mut writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
        let mut expected = looks();
        expected.extend([
            format!("PATCH {}", path::STATUS),
            format!("PATCH {}", path::SERVICE),
            format!("PATCH {}", path::DEPLOYMENT),
            // The starting replicas of a required hook, outside the apply.
            format!("PATCH {}", path::DEPLOYMENT),
            format!("PATCH {}", path::BUDGET),
            format!("POST {}", path::EVENTS),
        ]);
        assert_eq!(server.lines(), sorted(expected));
        assert_eq!(server.event_reasons(), ["Created"]);
        // The watches see what was applied; the resource now has its status.
        let deployment: Deployment = server.object(path::DEPLOYMENT).unwrap();
        let service: k8s_openapi::api::core::v1::Service = server.object(path::SERVICE).unwrap();
        writers
            .deployments
            .apply_watcher_event(&watcher::Event::Apply(deployment.clone()));
        writers
            .services
            .apply_watcher_event(&watcher::Event::Apply(service));
        cwh.status = Some(serde_json::from_value(server.last_status()).unwrap());
        server.forget_calls();

        reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
        assert_eq!(
            server.lines(),
            sorted(vec![
                get(path::AUTOSCALER),
                get(path::BUDGET),
                get(path::INGRESS)
            ]),
            "a steady state only reads what no watch caches"
        );

        let mut edited = deployment;
        edited.metadata.generation = Some(3);
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

    /// Unset, `replicas` is never applied (so `kubectl scale` or an HPA keep the
    /// count); a required hook starts with 2 pods and a disruption budget.
    #[tokio::test]
    async fn replicas_are_only_seeded_and_required_hooks_get_a_budget() {
        let cwh = webhook("{}");
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        reconcile(Arc::new(cwh), ctx).await.unwrap();
        let writes: Vec<_> = server
            .calls()
            .into_iter()
            .filter(|c| c.path == path::DEPLOYMENT && c.method == Method::PATCH)
            .collect();
        assert!(
            writes[0].body["spec"].get("replicas").is_none(),
            "{}",
            writes[0].body
        );
        assert_eq!(writes[1].body, json!({"spec": {"replicas": 2}}));
        let budget: serde_json::Value = server.object(path::BUDGET).unwrap();
        assert_eq!(budget["spec"]["maxUnavailable"], 1);

        let optional = webhook("commerce: {required: false}\nworkload: {replicas: 3}");
        let (ctx, _writers, server) = ApiServer::start(&optional, Box::new(|_| None));
        reconcile(Arc::new(optional), ctx).await.unwrap();
        let deployment: Deployment = server.object(path::DEPLOYMENT).unwrap();
        assert_eq!(deployment.spec.unwrap().replicas, Some(3), "set: applied");
        assert!(server.object::<serde_json::Value>(path::BUDGET).is_none());
        assert!(
            !server.lines().contains(&format!("PATCH {}", path::BUDGET)),
            "no budget for an optional hook"
        );
    }

    /// Autoscaling creates an HPA and leaves replicas alone; without it again, the
    /// HPA this resource owns is removed.
    #[tokio::test]
    async fn autoscaling_creates_an_hpa_that_goes_with_it() {
        let mut cwh = webhook("workload: {autoscaling: {maxReplicas: 4}}");
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
        let hpa: k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler =
            server.object(path::AUTOSCALER).unwrap();
        assert_eq!(hpa.spec.unwrap().max_replicas, 4);
        let deployment: Deployment = server.object(path::DEPLOYMENT).unwrap();
        assert_eq!(deployment.spec.unwrap().replicas, None, "the HPA's to set");
        assert_eq!(
            server
                .lines()
                .iter()
                .filter(|l| **l == format!("PATCH {}", path::DEPLOYMENT))
                .count(),
            1,
            "no seeded replicas under an HPA"
        );

        cwh.spec.workload.autoscaling = None;
        cwh.metadata.generation = Some(2);
        server.forget_calls();
        reconcile(Arc::new(cwh), ctx).await.unwrap();
        assert!(
            server
                .lines()
                .contains(&format!("DELETE {}", path::AUTOSCALER)),
            "{:?}",
            server.lines()
        );
        assert!(
            server
                .object::<serde_json::Value>(path::AUTOSCALER)
                .is_none()
        );
    }

    /// A replica whose Lease lapsed (a frozen or partitioned leader) must not write
    /// anything, whatever the reconcile would do.
    #[tokio::test]
    async fn a_replica_that_is_not_leading_writes_nothing() {
        let cwh = webhook("{}");
        let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
        let ctx = Arc::try_unwrap(ctx)
            .unwrap_or_else(|_| panic!("one context"))
            .with_leadership(Leadership::elected());
        let error = reconcile(Arc::new(cwh), Arc::new(ctx)).await.unwrap_err();
        assert!(matches!(error, Error::NotLeading), "{error}");
        assert!(server.lines().is_empty(), "{:?}", server.lines());
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
