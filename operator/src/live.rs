//! What the operator knows of its children without asking the API server: a cache
//! of every child kind (fed by the same watches that trigger reconciles, keeping
//! what [`ChildKind::content`] says), and what it last applied to each. A reconcile
//! whose desired child is what was last applied, to a child nobody changed since,
//! sends nothing: a burst of events for one resource then costs one apply, not one
//! per event, and a resync of a settled resource costs no request at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::children::{ChildKind, Content, PdbApi};

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

/// Read side of the child caches, held by the reconciler: one store per kind,
/// each holding what that kind's watch keeps.
pub struct LiveChildren {
    stores: BTreeMap<ChildKind, (ApiResource, Store<DynamicObject>)>,
}

/// Write side, driven by the controller's watches (one writer per kind).
pub type ChildWriters = BTreeMap<ChildKind, Writer<DynamicObject>>;

/// A store and a writer for every kind in [`ChildKind::ALL`].
pub fn caches(pdb: &PdbApi) -> (LiveChildren, ChildWriters) {
    let mut stores = BTreeMap::new();
    let mut writers = BTreeMap::new();
    for kind in ChildKind::ALL {
        let api = kind.api_resource(pdb);
        let writer = Writer::new(api.clone());
        stores.insert(kind, (api, writer.as_reader()));
        writers.insert(kind, writer);
    }
    (LiveChildren { stores }, writers)
}

impl LiveChildren {
    /// The cached child of `kind` named `name` in `namespace`, if the watch has seen
    /// one (with our label: an object without it is in no cache).
    pub fn get(&self, kind: ChildKind, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        let (api, store) = self.stores.get(&kind)?;
        store.get(&ObjectRef::new_with(name, api.clone()).within(namespace))
    }
}

/// What a watch of `kind` keeps of one object: for [`Content::Metadata`], nothing
/// but the metadata (the watch asked for no more); for [`Content::Readiness`],
/// `spec.replicas` and `status`. The field sets of managed fields are dropped
/// everywhere (they are most of an object's size); who manages fields, and how,
/// stays (the reconciler looks for a record its create left).
pub fn keep(content: Content, mut object: DynamicObject) -> DynamicObject {
    for entry in object.metadata.managed_fields.iter_mut().flatten() {
        entry.fields_v1 = None;
    }
    object.data = match content {
        Content::Metadata => serde_json::Value::Null,
        Content::Readiness => {
            let mut kept = serde_json::json!({});
            if let Some(replicas) = object.data.pointer("/spec/replicas") {
                kept["spec"] = serde_json::json!({ "replicas": replicas });
            }
            if let Some(status) = object.data.get("status") {
                kept["status"] = status.clone();
            }
            kept
        }
    };
    object
}

/// A metadata-only watch's object as the untyped object the stores hold.
pub fn from_metadata(meta: PartialObjectMeta<DynamicObject>) -> DynamicObject {
    DynamicObject {
        types: meta.types,
        metadata: meta.metadata,
        data: serde_json::Value::Null,
    }
}

/// The Deployment as far as its readiness goes, from what a watch kept or an apply
/// answered: metadata, `spec.replicas` and `status`.
pub fn readiness(object: &DynamicObject) -> Deployment {
    let status: Option<DeploymentStatus> = object
        .data
        .get("status")
        .and_then(|status| serde_json::from_value(status.clone()).ok());
    let replicas = object
        .data
        .pointer("/spec/replicas")
        .and_then(serde_json::Value::as_i64)
        .and_then(|replicas| i32::try_from(replicas).ok());
    Deployment {
        metadata: object.metadata.clone(),
        spec: Some(DeploymentSpec {
            replicas,
            ..DeploymentSpec::default()
        }),
        status,
    }
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
