//! What the operator knows of its children without asking the API server: a cache
//! of the live Deployments and Services (fed by the same watches that trigger
//! reconciles), and what it last applied to each. A reconcile whose desired child
//! is what was last applied, to a child nobody changed since, sends nothing: a burst
//! of events for one resource then costs one apply, not one per event.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::DynamicObject;
use kube::runtime::reflector::{self, Store, store::Writer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The kinds of object a `CommerceWebhook` owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildKind {
    Deployment,
    Service,
    Ingress,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Deployment => "Deployment",
            ChildKind::Service => "Service",
            ChildKind::Ingress => "Ingress",
            ChildKind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            ChildKind::PodDisruptionBudget => "PodDisruptionBudget",
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object type the operator creates for a `CommerceWebhook`.
pub trait Child: Resource + Clone + std::fmt::Debug + Serialize + DeserializeOwned {
    const KIND: ChildKind;
}

impl Child for Deployment {
    const KIND: ChildKind = ChildKind::Deployment;
}

impl Child for Service {
    const KIND: ChildKind = ChildKind::Service;
}

impl Child for Ingress {
    const KIND: ChildKind = ChildKind::Ingress;
}

impl Child for HorizontalPodAutoscaler {
    const KIND: ChildKind = ChildKind::HorizontalPodAutoscaler;
}

/// The one child written untyped: its API version is the cluster's
/// (`children::PdbApi`), so it is a `DynamicObject` of that version.
impl Child for DynamicObject {
    const KIND: ChildKind = ChildKind::PodDisruptionBudget;
}

/// One child object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChildKey {
    pub kind: ChildKind,
    pub namespace: String,
    pub name: String,
}

impl ChildKey {
    pub fn new(kind: ChildKind, namespace: &str, name: &str) -> Self {
        ChildKey {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// The version of a child that says whether someone changed it: its generation
/// where it has one (a Deployment's status updates leave it alone, spec edits bump
/// it), its resourceVersion otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    Generation(i64),
    ResourceVersion(String),
}

impl Version {
    pub fn of(meta: &ObjectMeta) -> Version {
        match meta.generation {
            Some(generation) => Version::Generation(generation),
            None => Version::ResourceVersion(meta.resource_version.clone().unwrap_or_default()),
        }
    }
}

/// Read side of the child caches, held by the reconciler.
pub struct LiveChildren {
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
}

/// Write side, driven by the controller's watches.
pub struct ChildWriters {
    pub deployments: Writer<Deployment>,
    pub services: Writer<Service>,
}

pub fn caches() -> (LiveChildren, ChildWriters) {
    let (deployments, deployment_writer) = reflector::store();
    let (services, service_writer) = reflector::store();
    (
        LiveChildren {
            deployments,
            services,
        },
        ChildWriters {
            deployments: deployment_writer,
            services: service_writer,
        },
    )
}

/// A digest of a desired object.
pub fn digest<T: Serialize>(desired: &T) -> [u8; 32] {
    // Serialising our own k8s-openapi objects cannot fail.
    let bytes = serde_json::to_vec(desired).unwrap_or_default();
    Sha256::digest(bytes).into()
}

/// What was last applied to each child, and the version the apply produced.
#[derive(Default)]
pub struct Applied {
    entries: Mutex<HashMap<ChildKey, ([u8; 32], Version)>>,
}

impl Applied {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ChildKey, ([u8; 32], Version)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True if `desired` was applied last and the live child is still that version.
    pub fn is_current(&self, key: &ChildKey, desired: &[u8; 32], live_version: &Version) -> bool {
        self.entries()
            .get(key)
            .is_some_and(|(digest, version)| digest == desired && version == live_version)
    }

    pub fn record(&self, key: ChildKey, desired: [u8; 32], version: Version) {
        self.entries().insert(key, (desired, version));
    }

    /// The child changed by our own hand after the apply: `version` is still ours.
    pub fn update_version(&self, key: &ChildKey, version: Version) {
        if let Some((_, recorded)) = self.entries().get_mut(key) {
            *recorded = version;
        }
    }

    pub fn forget(&self, key: &ChildKey) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_version_or_desired_state_is_not_current() {
        let applied = Applied::default();
        let key = ChildKey::new(ChildKind::Deployment, "ns", "hook");
        let desired = digest(&"spec v1");
        let (g1, g2) = (Version::Generation(1), Version::Generation(2));
        assert!(
            !applied.is_current(&key, &desired, &g1),
            "nothing applied yet"
        );
        applied.record(key.clone(), desired, g1.clone());
        assert!(applied.is_current(&key, &desired, &g1));
        assert!(
            !applied.is_current(&key, &desired, &g2),
            "edited by someone else"
        );
        assert!(
            !applied.is_current(&key, &digest(&"spec v2"), &g1),
            "the spec changed"
        );
        applied.forget(&key);
        assert!(!applied.is_current(&key, &desired, &g1));
    }

    #[test]
    fn generation_wins_over_resource_version() {
        let with_generation = ObjectMeta {
            generation: Some(3),
            resource_version: Some("99".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(Version::of(&with_generation), Version::Generation(3));
        let without = ObjectMeta {
            resource_version: Some("99".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(Version::of(&without), Version::ResourceVersion("99".into()));
    }
}
