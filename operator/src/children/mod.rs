//! The objects a `CommerceWebhook` turns into: a Deployment running
//! `commerce-webhook`, a Service in front of it, and optionally an Ingress, a
//! HorizontalPodAutoscaler and (for a required hook) a PodDisruptionBudget.
//!
//! Pure functions of a validated resource (plus the operator's defaults and the
//! hash of the referenced data), so that what is applied is deterministic: applying
//! the same resource twice changes nothing on the server. One module per child
//! kind; [`env`](mod@env) is the pod's environment, built from the webhook's contract.
//!
//! [`ChildKind`] is the one list of those kinds: each is declared once (its API,
//! how it is built, what of it is watched, the RBAC verbs it needs), and the
//! reconciler, the caches, the controller's watches and the chart's RBAC test all
//! iterate over [`ChildKind::ALL`].

mod autoscaler;
mod deployment;
mod disruption_budget;
pub mod env;
mod ingress;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::resource::CommerceWebhook;

pub use autoscaler::autoscaler;
pub use deployment::deployment;
pub use disruption_budget::{PdbApi, disruption_budget};
pub use ingress::ingress;
pub use service::service;

/// Pod-template annotation holding a fingerprint of the referenced Secrets and
/// ConfigMaps (their uids and resourceVersions, never their data, which `view`
/// users could otherwise guess offline): when one changes, the pods roll.
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

/// The kinds of object a `CommerceWebhook` owns: the one list every other list of
/// children is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    Deployment,
    Service,
    Ingress,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
}

/// What the operator's watch of a kind keeps of each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Metadata only (a `PartialObjectMetadata` watch): enough to tell whose the
    /// object is and whether it changed since the operator applied it.
    Metadata,
    /// Metadata, `spec.replicas` and `status`: what the resource's readiness is
    /// computed from without a read.
    Readiness,
}

/// The verbs the operator needs on every child kind: `list`/`watch` for the
/// cache, `create`/`patch` for server-side apply (which creates), `get` to look at
/// an object a guarded apply found in the way, `delete` to prune.
pub const CHILD_VERBS: [&str; 6] = ["get", "list", "watch", "create", "patch", "delete"];

impl ChildKind {
    pub const ALL: [ChildKind; 5] = [
        ChildKind::Deployment,
        ChildKind::Service,
        ChildKind::Ingress,
        ChildKind::HorizontalPodAutoscaler,
        ChildKind::PodDisruptionBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Deployment => "Deployment",
            ChildKind::Service => "Service",
            ChildKind::Ingress => "Ingress",
            ChildKind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            ChildKind::PodDisruptionBudget => "PodDisruptionBudget",
        }
    }

    /// The API the kind is written and watched through. Only the budget's version
    /// depends on the cluster (found once at start-up, in `defaults.pdb`).
    pub fn api_resource(self, pdb: &PdbApi) -> ApiResource {
        match self {
            ChildKind::Deployment => ApiResource::erase::<Deployment>(&()),
            ChildKind::Service => ApiResource::erase::<Service>(&()),
            ChildKind::Ingress => ApiResource::erase::<Ingress>(&()),
            ChildKind::HorizontalPodAutoscaler => {
                ApiResource::erase::<HorizontalPodAutoscaler>(&())
            }
            ChildKind::PodDisruptionBudget => pdb.0.clone(),
        }
    }

    /// What the watch keeps: only the Deployment's readiness is read from its content.
    pub fn content(self) -> Content {
        match self {
            ChildKind::Deployment => Content::Readiness,
            _ => Content::Metadata,
        }
    }

    /// The child of this kind a valid, enabled resource wants (`None`: it wants
    /// none, and one it owns is deleted). `config_hash` goes into the pod template.
    pub fn desired(
        self,
        cwh: &CommerceWebhook,
        defaults: &Defaults,
        config_hash: &str,
    ) -> Option<DynamicObject> {
        match self {
            ChildKind::Deployment => Some(erase(&deployment(cwh, defaults, config_hash), self)),
            ChildKind::Service => Some(erase(&service(cwh), self)),
            ChildKind::Ingress => ingress(cwh).map(|object| erase(&object, self)),
            ChildKind::HorizontalPodAutoscaler => {
                autoscaler(cwh).map(|object| erase(&object, self))
            }
            ChildKind::PodDisruptionBudget => disruption_budget(cwh, &defaults.pdb),
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed child as the untyped object every kind is written as.
fn erase<K: Serialize>(object: &K, kind: ChildKind) -> DynamicObject {
    // Our own k8s-openapi objects always serialise to an object with metadata.
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .unwrap_or_else(|error| panic!("{kind} does not convert to a DynamicObject: {error}"))
}

#[cfg(test)]
mod kind_tests {
    /// The chart's RBAC grants exactly [`CHILD_VERBS`] on every kind of
    /// [`ChildKind::ALL`] (in either PodDisruptionBudget version's group), and has
    /// no rule for a child kind the list does not have.
    #[test]
    fn the_chart_s_rbac_grants_what_every_child_kind_needs() {
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/commerce-webhook-operator/templates/rbac.yaml"
        ))
        .expect("rbac.yaml");
        // The first document with its template lines left out is plain YAML.
        let first = template.split("\n---").next().unwrap_or_default();
        let plain: String = first
            .lines()
            .filter(|line| !line.contains("{{"))
            .map(|line| format!("{line}\n"))
            .collect();
        let role: serde_yaml::Value = serde_yaml::from_str(&plain).expect("the role parses");
        let rules = role["rules"].as_sequence().expect("rules");
        let strings = |value: &serde_yaml::Value| -> Vec<String> {
            value
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let pdb = PdbApi::v1();
        let mut child_rules = 0;
        for kind in ChildKind::ALL {
            let api = kind.api_resource(&pdb);
            let rule = rules
                .iter()
                .find(|rule| {
                    strings(&rule["apiGroups"]) == [api.group.clone()]
                        && strings(&rule["resources"]) == [api.plural.clone()]
                })
                .unwrap_or_else(|| panic!("no rule for {kind} ({}/{})", api.group, api.plural));
            assert_eq!(strings(&rule["verbs"]), CHILD_VERBS, "{kind}");
            child_rules += 1;
        }
        let deleting = rules
            .iter()
            .filter(|rule| strings(&rule["verbs"]).contains(&"delete".to_owned()))
            .count();
        assert_eq!(
            deleting, child_rules,
            "every rule that deletes is a child kind's"
        );
    }

    use super::*;
    use crate::fixtures::webhook;

    /// Every kind builds an object of its own API, named after the resource and
    /// controlled by it (so the watch of that API sees it, and the owner triggers).
    #[test]
    fn every_kind_builds_an_object_of_its_api() {
        let cwh =
            webhook("workload: {autoscaling: {maxReplicas: 3}}\ningress: {host: shop.example}");
        let defaults = Defaults {
            image: "img".into(),
            pdb: PdbApi::v1beta1(),
        };
        for kind in ChildKind::ALL {
            let object = kind
                .desired(&cwh, &defaults, "hash")
                .unwrap_or_else(|| panic!("{kind} wanted"));
            let api = kind.api_resource(&defaults.pdb);
            let types = object.types.as_ref().expect("types");
            assert_eq!(types.api_version, api.api_version, "{kind}");
            assert_eq!(types.kind, kind.as_str());
            assert_eq!(api.kind, kind.as_str());
            assert_eq!(object.metadata.name.as_deref(), Some("hook"));
            let owner = &object.metadata.owner_references.as_ref().expect("owner")[0];
            assert_eq!(
                (owner.uid.as_str(), owner.controller),
                ("uid-1", Some(true))
            );
        }
    }
}
