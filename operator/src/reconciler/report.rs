//! What a reconcile tells: the resource's status (one `Ready` condition, computed
//! in [`crate::status`]) and Events. Both are writes of their own, made only when
//! they say something new.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error};
use crate::resource::{CommerceWebhook, CommerceWebhookStatus};
use crate::status::{self, Observation, Reason};

/// An observation of `cwh` at its generation, before replicas and URLs are known.
pub(super) fn observe(cwh: &CommerceWebhook, reason: Reason, message: String) -> Observation {
    Observation {
        generation: cwh.metadata.generation,
        reason,
        message,
        ready_replicas: 0,
        url: None,
        external_url: None,
        exposure: status::exposure(&cwh.spec),
    }
}

/// Reports a problem: the status, and a Warning Event named after the reason the
/// first time it is reported (the status did not say so already).
pub(super) async fn warn(
    ctx: &Context,
    cwh: &CommerceWebhook,
    reason: Reason,
    message: String,
) -> Result<(), Error> {
    if update_status(ctx, cwh, observe(cwh, reason, message.clone())).await? {
        publish(ctx, cwh, EventType::Warning, reason.as_str(), &message).await;
    }
    Ok(())
}

/// Writes the status if it changed; true if it was written.
pub(super) async fn update_status(
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
pub(super) async fn publish(
    ctx: &Context,
    cwh: &CommerceWebhook,
    type_: EventType,
    reason: &str,
    note: &str,
) {
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
