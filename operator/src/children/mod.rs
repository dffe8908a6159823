//! The objects a `CommerceWebhook` turns into: a Deployment running
//! `commerce-webhook`, a Service in front of it, and optionally an Ingress, a
//! HorizontalPodAutoscaler and (for a required hook) a PodDisruptionBudget.
//!
//! Pure functions of a validated resource (plus the operator's defaults and the
//! hash of the referenced data), so that what is applied is deterministic: applying
//! the same resource twice changes nothing on the server. One module per child
//! kind; [`env`](mod@env) is the pod's environment, built from the webhook's contract.

mod autoscaler;
mod deployment;
mod disruption_budget;
pub mod env;
mod ingress;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::resource::CommerceWebhook;

pub use autoscaler::autoscaler;
pub use deployment::deployment;
pub use disruption_budget::{PdbApi, disruption_budget};
pub use ingress::ingress;
pub use service::service;

/// Pod-template annotation holding the hash of referenced Secret/ConfigMap data:
/// when the data changes, the template changes, and the pods roll.
pub const CONFIG_HASH_ANNOTATION: &str = "integration.commerce.dev/config-hash";
/// Name of the container port, which the Service and the probes refer to.
const PORT_NAME: &str = "http";

/// What the operator brings to every resource.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub image: String,
    /// The PodDisruptionBudget version the cluster serves.
    pub pdb: PdbApi,
}

pub fn labels(cwh: &CommerceWebhook) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cwh);
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "commerce-webhook-operator".to_owned(),
    );
    labels
}

fn selector_labels(cwh: &CommerceWebhook) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "commerce-webhook".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), cwh.name_any()),
    ])
}

fn metadata(cwh: &CommerceWebhook) -> ObjectMeta {
    ObjectMeta {
        name: Some(cwh.name_any()),
        namespace: cwh.namespace(),
        labels: Some(labels(cwh)),
        owner_references: cwh
            .controller_owner_ref(&())
            .map(|owner| vec![owner_ref(owner)]),
        ..ObjectMeta::default()
    }
}

/// Owned children block the owner's foreground deletion until they are gone.
fn owner_ref(mut owner: OwnerReference) -> OwnerReference {
    owner.block_owner_deletion = Some(true);
    owner
}
