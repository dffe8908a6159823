//! What the operator knows of its children without asking the API server: a cache
//! of the live Deployments and Services (fed by the same watches that trigger
//! reconciles), and what it last applied to each. A reconcile whose desired child
//! is what was last applied, to a child nobody changed since, sends nothing: a burst
//! of events for one resource then costs one apply, not one per event.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, Store, store::Writer};
use serde::Serialize;
use sha2::{Digest, Sha256};

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

/// The version of a child that says whether someone changed it: its generation
/// where it has one (a Deployment's status updates leave it alone, spec edits bump
/// it), its resourceVersion otherwise.
pub fn version(meta: &ObjectMeta) -> String {
    match meta.generation {
        Some(generation) => format!("g{generation}"),
        None => format!("r{}", meta.resource_version.as_deref().unwrap_or_default()),
    }
}

/// A digest of a desired object.
pub fn digest<T: Serialize>(desired: &T) -> [u8; 32] {
    // Serialising our own k8s-openapi objects cannot fail.
    let bytes = serde_json::to_vec(desired).unwrap_or_default();
    Sha256::digest(bytes).into()
}

type ChildKey = (&'static str, String, String);

/// What was last applied to each child, and the version the apply produced.
#[derive(Default)]
pub struct Applied {
    entries: Mutex<HashMap<ChildKey, ([u8; 32], String)>>,
}

impl Applied {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ChildKey, ([u8; 32], String)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True if `desired` was applied last and the live child is still that version.
    pub fn is_current(&self, key: &ChildKey, desired: &[u8; 32], live_version: &str) -> bool {
        self.entries()
            .get(key)
            .is_some_and(|(digest, version)| digest == desired && version == live_version)
    }

    pub fn record(&self, key: ChildKey, desired: [u8; 32], version: String) {
        self.entries().insert(key, (desired, version));
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
        let key = ("Deployment", "ns".to_owned(), "hook".to_owned());
        let desired = digest(&"spec v1");
        assert!(
            !applied.is_current(&key, &desired, "g1"),
            "nothing applied yet"
        );
        applied.record(key.clone(), desired, "g1".into());
        assert!(applied.is_current(&key, &desired, "g1"));
        assert!(
            !applied.is_current(&key, &desired, "g2"),
            "edited by someone else"
        );
        assert!(
            !applied.is_current(&key, &digest(&"spec v2"), "g1"),
            "the spec changed"
        );
        applied.forget(&key);
        assert!(!applied.is_current(&key, &desired, "g1"));
    }

    #[test]
    fn generation_wins_over_resource_version() {
        let with_generation = ObjectMeta {
            generation: Some(3),
            resource_version: Some("99".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(version(&with_generation), "g3");
        let without = ObjectMeta {
            resource_version: Some("99".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(version(&without), "r99");
    }
}
