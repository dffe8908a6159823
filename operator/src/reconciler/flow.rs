//! One reconcile, step by step: a resource being deleted is left to the garbage
//! collector; a disabled one loses its children; an invalid one is reported; one
//! whose references are missing waits for them; a valid one gets its children
//! (see [`apply`](super::apply)) and a status computed from its Deployment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::apply::{self, Change, Outcome};
use super::report::{observe, publish, update_status, warn};
use super::{Context, Error};
use crate::children::ChildKind;
use crate::references;
use crate::resource::CommerceWebhook;
use crate::status::{self, Observation, Reason};

/// A healthy resource is looked at again this often even without events.
pub(super) const RESYNC: Duration = Duration::from_secs(300);
/// A resource waiting for a Secret/ConfigMap is retried this often (creating the
/// object also triggers a reconcile through the watch), and so is one whose child
/// name is taken by someone else's object (which no watch of ours sees go).
pub(super) const MISSING_REFERENCE_RETRY: Duration = Duration::from_secs(60);

pub async fn reconcile(cwh: Arc<CommerceWebhook>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match ctx.ensure_leading() {
        Ok(()) => reconcile_resource(&cwh, &ctx).await,
        Err(error) => Err(error),
    };
    let failure = result.as_ref().err().map(|error| error.kind().label());
    ctx.metrics.observe_reconcile(started.elapsed(), failure);
    if result.is_ok() {
        ctx.backoff.succeeded(&cwh);
    }
    result
}

async fn reconcile_resource(cwh: &CommerceWebhook, ctx: &Context) -> Result<Action, Error> {
    if cwh.metadata.deletion_timestamp.is_some() {
        // Being deleted (in the foreground, its children go first): anything
        // written now would be a child the garbage collector has to delete again,
        // or one re-created after it did. Nothing is written, not even the status.
        return Ok(Action::await_change());
    }
    cwh.namespace().ok_or(Error::NoNamespace)?;

    if !cwh.spec.enabled {
        return disabled(ctx, cwh).await;
    }
    if let Err(error) = cwh.spec.validate() {
        warn(ctx, cwh, Reason::InvalidSpec, error.to_string()).await?;
        // Nothing to retry until the resource changes.
        return Ok(Action::await_change());
    }

    let refs = references::references(cwh);
    let namespace = cwh.namespace().unwrap_or_default();
    let config_hash = match references::config_hash(&ctx.client, &namespace, &refs).await {
        Ok(hash) => hash,
        Err(error) if error.is_missing() => {
            warn(
                ctx,
                cwh,
                Reason::MissingReference,
                format!("waiting for {error}"),
            )
            .await?;
            return Ok(Action::requeue(MISSING_REFERENCE_RETRY));
        }
        Err(error) => return Err(error.into()),
    };

    let desired = ChildKind::ALL
        .into_iter()
        .map(|kind| (kind, kind.desired(cwh, &ctx.defaults, &config_hash)))
        .collect();
    let (deployment, change) = match apply::converge(ctx, cwh, desired).await {
        Ok(Outcome::Converged(deployment, change)) => (*deployment, change),
        Ok(Outcome::Conflicts(children)) => {
            let message = format!(
                "{} already exist and are not owned by this CommerceWebhook; \
                 rename the CommerceWebhook or remove them",
                children.join(", ")
            );
            warn(ctx, cwh, Reason::ChildConflict, message).await?;
            return Ok(Action::requeue(MISSING_REFERENCE_RETRY));
        }
        Err(error) => {
            warn(ctx, cwh, Reason::ApplyFailed, error.to_string()).await?;
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
        ..observe(cwh, reason, message)
    };
    // The event and the status are independent writes: send them together.
    let event = async {
        let note = match change {
            Change::Created => ("Created", "Created the webhook's Deployment and Service"),
            Change::Updated => ("Updated", "Updated the webhook's workload"),
            Change::Unchanged => return,
        };
        publish(ctx, cwh, EventType::Normal, note.0, note.1).await;
    };
    let ((), status) = tokio::join!(event, update_status(ctx, cwh, observation));
    status?;
    Ok(Action::requeue(RESYNC))
}

/// `spec.enabled: false`: the children go (once per generation), the status says so.
async fn disabled(ctx: &Context, cwh: &CommerceWebhook) -> Result<Action, Error> {
    let removed = !disabled_already(cwh) && apply::remove_all(ctx, cwh).await?;
    if removed {
        let note = "Removed the webhook's Deployment, Service and Ingress";
        publish(ctx, cwh, EventType::Normal, "Disabled", note).await;
    }
    let message = "spec.enabled is false: the webhook is not deployed".to_owned();
    update_status(ctx, cwh, observe(cwh, Reason::Disabled, message)).await?;
    Ok(Action::await_change())
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
