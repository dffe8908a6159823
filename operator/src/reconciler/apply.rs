//! Children: bringing every kind of [`ChildKind::ALL`] to what a resource wants,
//! from the caches alone, and pruning what it no longer wants.
//!
//! Whose a child is, is read from the watch caches (every kind is watched): a
//! settled resource costs no request. Every write can only land on what the cache
//! said was there (issue 17, item 8: an object created under a child's name between
//! the check and the write must not be taken over):
//! * a child the cache does not have is *created* (`POST`), which fails (409) when
//!   anything has the name;
//! * a child the cache says is ours is server-side applied with its `metadata.uid`,
//!   so an object someone re-created under the name meanwhile is refused (422: uid
//!   is immutable; 409 if it is gone);
//! * a child is deleted with its uid as a precondition.
//!
//! A refused write looks at the object (one GET): someone else's is a conflict,
//! reported on the resource; ours (a cache that had not caught up) is written
//! again under its own guard.
//!
//! A create records the fields it set as the operator's `Update`; the first apply
//! over such a child first turns that record into the operator's `Apply` one
//! ([`adopt_created_fields`]), or a field later dropped from the spec would stay
//! owned by the create and never be removed.

use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER};
use crate::children::ChildKind;
use crate::live::{self, ChildKey, Version};
use crate::resource::{CommerceWebhook, Workload};

/// The field manager of the starting replicas (see [`seed_replicas`]): not the
/// operator's own, so that its applies never own `replicas` the spec leaves unset.
pub const REPLICAS_MANAGER: &str = "commerce-webhook-operator-replicas";

/// What the cluster holds under a child's name, as far as the operator knows.
#[derive(Debug)]
pub(super) enum Found {
    Absent,
    /// Carries this resource's controller reference: ours to write and delete.
    Ours(Arc<DynamicObject>),
    /// Someone else's: never written, never deleted.
    Foreign,
}

impl Found {
    fn of(object: Option<Arc<DynamicObject>>, cwh: &CommerceWebhook) -> Found {
        match object {
            None => Found::Absent,
            Some(object) if owned_by(&object.metadata, cwh) => Found::Ours(object),
            Some(_) => Found::Foreign,
        }
    }

    /// The child of `kind` named after `cwh`, as the cache has it.
    pub(super) fn cached(ctx: &Context, kind: ChildKind, cwh: &CommerceWebhook) -> Found {
        let namespace = cwh.namespace().unwrap_or_default();
        Found::of(ctx.live.get(kind, &namespace, &cwh.name_any()), cwh)
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

/// What applying the workload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Created,
    Updated,
    Unchanged,
}

/// The outcome of bringing the children to what the resource wants.
pub(super) enum Outcome {
    /// Every child is as wanted: the Deployment (as far as readiness goes) and
    /// what changed.
    Converged(Box<Deployment>, Change),
    /// These children (`Kind name`) have the resource's name and are someone else's.
    Conflicts(Vec<String>),
}

/// What happened to one child.
enum Step {
    Written {
        object: Box<DynamicObject>,
        created: bool,
    },
    Kept(Arc<DynamicObject>),
    /// Deleted by this reconcile.
    Gone,
    /// Neither there (as ours) nor wanted.
    Absent,
    Conflict,
}

/// Brings every kind to `desired` (by kind; `None`: not wanted). Someone else's
/// object where a child is wanted stops everything before any write when the
/// cache knows it, else is found by the guarded create and reported the same way.
pub(super) async fn converge(
    ctx: &Context,
    cwh: &CommerceWebhook,
    desired: Vec<(ChildKind, Option<DynamicObject>)>,
) -> Result<Outcome, Error> {
    let name = cwh.name_any();
    let found: Vec<Found> = desired
        .iter()
        .map(|(kind, _)| Found::cached(ctx, *kind, cwh))
        .collect();
    let known: Vec<String> = desired
        .iter()
        .zip(&found)
        .filter(|((_, want), found)| want.is_some() && matches!(found, Found::Foreign))
        .map(|((kind, _), _)| format!("{kind} {name}"))
        .collect();
    if !known.is_empty() {
        return Ok(Outcome::Conflicts(known));
    }
    let kinds: Vec<ChildKind> = desired.iter().map(|(kind, _)| *kind).collect();
    let steps = join_all(
        desired
            .into_iter()
            .zip(found)
            .map(|((kind, want), found)| converge_one(ctx, cwh, kind, found, want)),
    )
    .await;
    let mut conflicts = Vec::new();
    let mut workload = None;
    for (kind, step) in kinds.into_iter().zip(steps) {
        match step? {
            Step::Conflict => conflicts.push(format!("{kind} {name}")),
            Step::Written { object, created } if kind == ChildKind::Deployment => {
                workload = Some((live::readiness(&object), Some(created)));
            }
            Step::Kept(object) if kind == ChildKind::Deployment => {
                workload = Some((live::readiness(&object), None));
            }
            Step::Written { .. } | Step::Kept(_) | Step::Gone | Step::Absent => {}
        }
    }
    if !conflicts.is_empty() {
        return Ok(Outcome::Conflicts(conflicts));
    }
    let Some((deployment, written)) = workload else {
        unreachable!("a valid resource always wants its Deployment");
    };
    let (deployment, change) = match written {
        None => (deployment, Change::Unchanged),
        Some(created) => {
            let change = workload_change(&deployment, cwh);
            let deployment = if created {
                seed_replicas(ctx, cwh, deployment).await?
            } else {
                deployment
            };
            (deployment, change)
        }
    };
    Ok(Outcome::Converged(Box::new(deployment), change))
}

/// Deletes the children this resource owns (as the caches know them); true if
/// any was deleted. Objects of the same names that are someone else's stay.
pub(super) async fn remove_all(ctx: &Context, cwh: &CommerceWebhook) -> Result<bool, Error> {
    let steps = join_all(
        ChildKind::ALL
            .into_iter()
            .map(|kind| converge_one(ctx, cwh, kind, Found::cached(ctx, kind, cwh), None)),
    )
    .await;
    let mut removed = false;
    for step in steps {
        removed |= matches!(step?, Step::Gone);
    }
    Ok(removed)
}

fn api(ctx: &Context, kind: ChildKind, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        namespace,
        &kind.api_resource(&ctx.defaults.pdb),
    )
}

/// Brings one child to `desired`: applied when wanted (unless it is what was last
/// applied and nobody changed it since), deleted when ours and no longer wanted.
async fn converge_one(
    ctx: &Context,
    cwh: &CommerceWebhook,
    kind: ChildKind,
    found: Found,
    desired: Option<DynamicObject>,
) -> Result<Step, Error> {
    let namespace = cwh.namespace().ok_or(Error::NoNamespace)?;
    let name = cwh.name_any();
    let api = api(ctx, kind, &namespace);
    let key = ChildKey::new(kind, &namespace, &name);
    let Some(desired) = desired else {
        return match found {
            Found::Ours(live) => {
                ctx.ensure_leading()?;
                let deleted = delete(&api, kind, &name, &live).await?;
                ctx.applied.forget(&key);
                Ok(if deleted { Step::Gone } else { Step::Absent })
            }
            Found::Absent | Found::Foreign => Ok(Step::Absent),
        };
    };
    let wanted = live::digest(&desired);
    let mut found = found;
    // The cache's answer, then (once) the API server's if the guard refused it.
    for attempt in 0..2 {
        let result = match &found {
            Found::Foreign => return Ok(Step::Conflict),
            Found::Ours(live)
                if ctx
                    .applied
                    .is_current(&key, &wanted, &Version::of(&live.metadata)) =>
            {
                return Ok(Step::Kept(live.clone()));
            }
            Found::Ours(live) => {
                ctx.ensure_leading()?;
                adopt_created_fields(&api, &name, live).await;
                apply(
                    &api,
                    &name,
                    &desired,
                    live.metadata.uid.clone().unwrap_or_default(),
                )
                .await
            }
            Found::Absent => {
                ctx.ensure_leading()?;
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PostParams::default()
                };
                api.create(&params, &desired).await
            }
        };
        match result {
            Ok(object) => {
                ctx.applied
                    .record(key, wanted, Version::of(&object.metadata));
                let created = matches!(found, Found::Absent);
                return Ok(Step::Written {
                    object: Box::new(object),
                    created,
                });
            }
            Err(error) if is_refused_guard(&error) && attempt == 0 => {
                let object = api.get_opt(&name).await.map_err(|source| Error::Read {
                    kind,
                    name: name.clone(),
                    source,
                })?;
                found = Found::of(object.map(Arc::new), cwh);
            }
            Err(source) => {
                return Err(Error::Apply { kind, name, source });
            }
        }
    }
    unreachable!("the loop returns on its second attempt")
}

/// True if the API server refused a guarded write because the object under the
/// name is not the one the guard names: a conflict (409: something exists where a
/// create was meant, or nothing where an update was), or an invalid uid (422: the
/// object was replaced).
fn is_refused_guard(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 409
                || (status.code == 422
                    && status.details.as_ref().is_some_and(|details| {
                        details.causes.iter().any(|c| c.field == "metadata.uid")
                    }))
        }
        _ => false,
    }
}

/// Server-side applies `desired` over the object with `uid` (and only it).
async fn apply(
    api: &Api<DynamicObject>,
    name: &str,
    desired: &DynamicObject,
    uid: String,
) -> Result<DynamicObject, kube::Error> {
    let mut object = desired.clone();
    object.metadata.uid = Some(uid);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(&object)).await
}

/// The index of the operator's `Update` record of fields in `meta` (a create's),
/// if it has one.
pub(super) fn created_fields(meta: &ObjectMeta) -> Option<usize> {
    meta.managed_fields.iter().flatten().position(|entry| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Update")
    })
}

/// Turns the operator's `Update` record (its create's) into its `Apply` record, so
/// the apply that follows owns, and can later drop, every field the create set.
/// Read fresh (the caches keep no field sets) and written with the uid and
/// resourceVersion read; best effort: if it fails, the apply still lands, and the
/// next one tries again.
async fn adopt_created_fields(api: &Api<DynamicObject>, name: &str, live: &DynamicObject) {
    if created_fields(&live.metadata).is_none() {
        return;
    }
    let Ok(Some(current)) = api.get_opt(name).await else {
        return;
    };
    if current.metadata.uid != live.metadata.uid {
        return;
    }
    let Some(index) = created_fields(&current.metadata) else {
        return;
    };
    let mut entries = current.metadata.managed_fields.clone().unwrap_or_default();
    let applied_already = entries.iter().any(|entry| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Apply")
    });
    if applied_already {
        // Two records of one manager: keep the Apply one (a field only the create
        // set stays, unowned, rather than being removed).
        entries.remove(index);
    } else {
        entries[index].operation = Some("Apply".to_owned());
    }
    let patch = json!({"metadata": {
        "uid": current.metadata.uid,
        "resourceVersion": current.metadata.resource_version,
        "managedFields": entries,
    }});
    if let Err(error) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::debug!(%error, name, "could not adopt the fields a create set");
    }
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

/// A new Deployment whose replicas nobody set starts with the default for its hook
/// (two pods for a required one). Written as a plain patch, not in the apply: the
/// operator never owns a `replicas` the spec does not set, so a later
/// `kubectl scale` or HPA keeps the count. Guarded by the uid the create returned,
/// and written under [`REPLICAS_MANAGER`], so the operator's own record of fields
/// (turned into its apply's) never holds `replicas`.
async fn seed_replicas(
    ctx: &Context,
    cwh: &CommerceWebhook,
    deployment: Deployment,
) -> Result<Deployment, Error> {
    let workload = &cwh.spec.workload;
    let initial = Workload::default_replicas(cwh.spec.commerce.required);
    let current = deployment.spec.as_ref().and_then(|spec| spec.replicas);
    if workload.replicas.is_some() || workload.autoscaling.is_some() || current == Some(initial) {
        return Ok(deployment);
    }
    let namespace = cwh.namespace().unwrap_or_default();
    let name = cwh.name_any();
    let params = PatchParams {
        field_manager: Some(REPLICAS_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let patch = json!({
        "metadata": {"uid": deployment.metadata.uid},
        "spec": {"replicas": initial},
    });
    ctx.ensure_leading()?;
    let seeded = api(ctx, ChildKind::Deployment, &namespace)
        .patch(&name, &params, &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Apply {
            kind: ChildKind::Deployment,
            name: name.clone(),
            source,
        })?;
    let key = ChildKey::new(ChildKind::Deployment, &namespace, &name);
    ctx.applied
        .update_version(&key, Version::of(&seeded.metadata));
    Ok(live::readiness(&seeded))
}

/// Deletes this very object (its uid is a precondition, so an object someone
/// re-created under the name meanwhile survives); true if it was deleted.
async fn delete(
    api: &Api<DynamicObject>,
    kind: ChildKind,
    name: &str,
    live: &DynamicObject,
) -> Result<bool, Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: live.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(source) => Err(Error::Delete {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}
