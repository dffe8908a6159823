//! What a resource references, and reading it: every Secret/ConfigMap key must
//! exist before a pod is deployed (a missing one is a clear condition, not a pod
//! failing to start), and the referenced objects' versions are hashed into the pod
//! template so that a change rolls the pods. Values are never hashed, logged or
//! copied: only whether a key exists is read of them.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::resource::{CommerceWebhook, KeyRef};

/// Where one piece of referenced data lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    /// A Secret key read as an environment variable.
    Secret(String, String),
    /// A ConfigMap key read as an environment variable.
    ConfigMap(String, String),
    /// The inventory ConfigMap key, mounted as a file: the webhook re-reads it on
    /// change, so it must exist but does not roll the pods.
    Inventory(String, String),
}

impl Reference {
    pub fn name(&self) -> &str {
        match self {
            Reference::Secret(name, _)
            | Reference::ConfigMap(name, _)
            | Reference::Inventory(name, _) => name,
        }
    }

    /// The kind of the referenced object, as the API spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Reference::Secret(..) => "Secret",
            Reference::ConfigMap(..) | Reference::Inventory(..) => "ConfigMap",
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Secret(name, key) => write!(f, "Secret {name} (key {key})"),
            Reference::ConfigMap(name, key) | Reference::Inventory(name, key) => {
                write!(f, "ConfigMap {name} (key {key})")
            }
        }
    }
}

/// Every Secret/ConfigMap key the resource's pods would read, sorted and deduplicated.
pub fn references(cwh: &CommerceWebhook) -> Vec<Reference> {
    let spec = &cwh.spec;
    let secret = |r: &KeyRef| Reference::Secret(r.name.clone(), r.key.clone());
    let mut refs: Vec<Reference> = Vec::new();
    if let Some(stock) = &spec.stock {
        if let Some(inventory) = &stock.inventory {
            let r = &inventory.config_map_key_ref;
            refs.push(Reference::Inventory(r.name.clone(), r.key.clone()));
        }
        if let Some(token) = stock.back_office.as_ref().and_then(|b| b.token.as_ref()) {
            refs.push(secret(token));
        }
        if let Some(ca) = stock
            .back_office
            .as_ref()
            .and_then(|b| b.ca_bundle.as_ref())
        {
            refs.extend(ca.secret_key_ref.iter().map(secret));
            refs.extend(
                ca.config_map_key_ref
                    .iter()
                    .map(|r| Reference::ConfigMap(r.name.clone(), r.key.clone())),
            );
        }
    }
    refs.extend(spec.signature_public_key.iter().map(secret));
    refs.extend(spec.auth_token.iter().map(secret));
    for source in spec.inputs.iter().filter_map(|i| i.value_from.as_ref()) {
        refs.extend(source.secret_key_ref.iter().map(secret));
        refs.extend(
            source
                .config_map_key_ref
                .iter()
                .map(|r| Reference::ConfigMap(r.name.clone(), r.key.clone())),
        );
    }
    refs.sort();
    refs.dedup();
    refs
}

#[derive(Debug, Error)]
pub enum ReferenceError {
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} has no key {key}")]
    KeyMissing {
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("reading {0}: {1}")]
    Api(String, #[source] kube::Error),
}

impl ReferenceError {
    /// The object the resource is waiting for, if it is one that can appear later.
    pub fn is_missing(&self) -> bool {
        !matches!(self, ReferenceError::Api(..))
    }
}

/// The version of every object the pods read through their environment, hashed
/// for the pod template (hex, 32 characters): when a referenced Secret or ConfigMap
/// changes, its resourceVersion does, and the pods roll.
///
/// Only the objects' identities go in (uid and resourceVersion, which anyone who
/// may list them sees anyway), never their data: the annotation is readable by
/// anyone with `view` on the Deployment, and a hash of a value would let a weak
/// token be guessed offline. The mounted inventory only has to exist (the webhook
/// re-reads it without a restart).
pub async fn config_hash(
    client: &Client,
    namespace: &str,
    refs: &[Reference],
) -> Result<String, ReferenceError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    // Each object is read once, so that one reconcile sees one version of it even
    // when two of its keys are referenced and it changes in between.
    let mut objects: BTreeMap<(&'static str, &str), (ObjectMeta, BTreeSet<String>)> =
        BTreeMap::new();
    let mut versions = Vec::with_capacity(refs.len());
    for reference in refs {
        let (Reference::Secret(name, key)
        | Reference::ConfigMap(name, key)
        | Reference::Inventory(name, key)) = reference;
        let slot = (reference.kind(), name.as_str());
        if let Entry::Vacant(vacant) = objects.entry(slot) {
            // Only the keys' names are kept of the data.
            let read = match reference {
                Reference::Secret(..) => {
                    let secret = fetch(&secrets, reference, "Secret", name).await?;
                    let keys = secret.data.iter().flat_map(|d| d.keys());
                    let keys = keys.chain(secret.string_data.iter().flat_map(|d| d.keys()));
                    (secret.metadata.clone(), keys.cloned().collect())
                }
                Reference::ConfigMap(..) | Reference::Inventory(..) => {
                    let config_map = fetch(&config_maps, reference, "ConfigMap", name).await?;
                    let keys = config_map.data.iter().flat_map(|d| d.keys());
                    let keys = keys.chain(config_map.binary_data.iter().flat_map(|d| d.keys()));
                    (config_map.metadata.clone(), keys.cloned().collect())
                }
            };
            vacant.insert(read);
        }
        let (meta, keys) = &objects[&slot];
        if !keys.contains(key) {
            return Err(key_missing(reference.kind(), name, key));
        }
        versions.push((reference, meta.clone()));
    }
    Ok(fingerprint(
        versions.iter().map(|(reference, meta)| (*reference, meta)),
    ))
}

/// The pod-template annotation for the referenced objects as read: SHA-256 over
/// each environment reference's kind, name, uid and resourceVersion, one entry per
/// object (two keys of one Secret are one version), in a stable order.
pub fn fingerprint<'a>(
    objects: impl IntoIterator<Item = (&'a Reference, &'a ObjectMeta)>,
) -> String {
    let versions: BTreeSet<(&str, &str, &str, &str)> = objects
        .into_iter()
        .filter(|(reference, _)| !matches!(reference, Reference::Inventory(..)))
        .map(|(reference, meta)| {
            (
                reference.kind(),
                reference.name(),
                meta.uid.as_deref().unwrap_or_default(),
                meta.resource_version.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let mut hasher = Sha256::new();
    for (kind, name, uid, version) in versions {
        for part in [kind, name, uid, version] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The referenced object, or why it cannot be had.
async fn fetch<K>(
    api: &Api<K>,
    reference: &Reference,
    kind: &'static str,
    name: &str,
) -> Result<K, ReferenceError>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.get_opt(name)
        .await
        .map_err(|e| ReferenceError::Api(reference.to_string(), e))?
        .ok_or_else(|| ReferenceError::NotFound {
            kind,
            name: name.to_owned(),
        })
}

fn key_missing(kind: &'static str, name: &str, key: &str) -> ReferenceError {
    ReferenceError::KeyMissing {
        kind,
        name: name.to_owned(),
        key: key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::webhook as resource;

    #[test]
    fn references_cover_every_secret_and_config_map() {
        let cwh = resource(
            r#"
            inputs: [{name: A, valueFrom: {configMapKeyRef: {name: cm, key: a}}}]
            stock: {inventory: {configMapKeyRef: {name: inv, key: stock.yaml}}}
            signaturePublicKey: {name: commerce, key: public.pem}
            "#,
        );
        assert_eq!(
            references(&cwh),
            vec![
                Reference::Secret("commerce".into(), "public.pem".into()),
                Reference::ConfigMap("cm".into(), "a".into()),
                Reference::Inventory("inv".into(), "stock.yaml".into()),
            ]
        );
    }

    fn meta(uid: &str, version: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            resource_version: Some(version.into()),
            ..ObjectMeta::default()
        }
    }

    /// What the annotation was before: SHA-256 over each reference and its value.
    fn value_hash(label: &str, value: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(value);
        let digest = hasher.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The annotation changes with the Secret's version and with a Secret replaced
    /// under the same name, and never with anything but identities: it is the same
    /// whatever the value, so nothing about the value can be learnt from it.
    #[test]
    fn the_annotation_follows_versions_not_values() {
        let token = Reference::Secret("hook".into(), "token".into());
        let inventory = Reference::Inventory("inv".into(), "stock.yaml".into());
        let v1 = fingerprint([(&token, &meta("uid-a", "100"))]);
        let v2 = fingerprint([(&token, &meta("uid-a", "101"))]);
        assert_ne!(v1, v2, "a new resourceVersion rolls the pods");
        assert_eq!(v1.len(), 32);
        let recreated = fingerprint([(&token, &meta("uid-b", "100"))]);
        assert_ne!(
            v1, recreated,
            "a Secret deleted and created again rolls them too"
        );
        assert_eq!(
            v1,
            fingerprint([(&token, &meta("uid-a", "100"))]),
            "the same versions give the same annotation (no roll on resync)"
        );
        assert_eq!(
            v1,
            fingerprint([
                (&token, &meta("uid-a", "100")),
                (&inventory, &meta("uid-i", "7")),
            ]),
            "the inventory is re-read by the webhook, never rolled for"
        );
        let other_key = Reference::Secret("hook".into(), "other".into());
        let config_map = Reference::ConfigMap("cm".into(), "a".into());
        assert_eq!(
            fingerprint([
                (&config_map, &meta("uid-c", "5")),
                (&token, &meta("uid-a", "100")),
                (&other_key, &meta("uid-a", "100")),
            ]),
            fingerprint([
                (&token, &meta("uid-a", "100")),
                (&config_map, &meta("uid-c", "5")),
            ]),
            "one entry per object, in a stable order"
        );
        // The value never goes in: the old annotation (a hash of the value, which a
        // weak token could be brute-forced from) is not what is published.
        for value in [&b"hunter2"[..], b"rotated-token", b""] {
            let label = token.to_string();
            let old = value_hash(&label, value);
            assert_ne!(v1, old);
            let bare = Sha256::digest(value);
            let bare: String = bare[..16].iter().map(|b| format!("{b:02x}")).collect();
            assert_ne!(v1, bare);
        }
    }

    /// The API answers every GET with `secret`.
    async fn annotation_for(
        secret: serde_json::Value,
        refs: &[Reference],
    ) -> Result<String, ReferenceError> {
        annotation_for_each(move |_| secret.clone(), refs).await
    }

    /// The API answers the n-th GET (from 1) with `answer(n)`.
    async fn annotation_for_each(
        answer: impl Fn(usize) -> serde_json::Value + Send + 'static,
        refs: &[Reference],
    ) -> Result<String, ReferenceError> {
        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let server = tokio::spawn(async move {
            let mut count = 0;
            while let Some((_, respond)) = handle.next_request().await {
                count += 1;
                let response = http::Response::builder()
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(
                        answer(count).to_string().into_bytes(),
                    ))
                    .unwrap();
                respond.send_response(response);
            }
        });
        let result = config_hash(&Client::new(service, "default"), "shop", refs).await;
        server.abort();
        result
    }

    fn secret(value: &str, version: &str) -> serde_json::Value {
        use base64::Engine as _;
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook", "namespace": "shop", "uid": "uid-a", "resourceVersion": version},
            "data": {"token": base64::engine::general_purpose::STANDARD.encode(value)},
        })
    }

    /// Read through the API: a new value under a new resourceVersion rolls the
    /// pods; the value alone does not move the annotation, and the annotation is not
    /// the former hash of the value.
    #[tokio::test]
    async fn the_annotation_read_from_the_api_does_not_derive_from_the_value() {
        let refs = references(&resource("authToken: {name: hook, key: token}"));
        let weak = annotation_for(secret("hunter2", "100"), &refs)
            .await
            .unwrap();
        let other = annotation_for(secret("correct horse", "100"), &refs)
            .await
            .unwrap();
        assert_eq!(weak, other, "the annotation carries nothing of the value");
        let rotated = annotation_for(secret("correct horse", "101"), &refs)
            .await
            .unwrap();
        assert_ne!(weak, rotated, "a changed Secret rolls the pods");
        assert_ne!(weak, value_hash(&refs[0].to_string(), b"hunter2"));
        let missing = annotation_for(
            secret("x", "1"),
            &[Reference::Secret("hook".into(), "nope".into())],
        )
        .await
        .unwrap_err();
        assert_eq!(missing.to_string(), "Secret hook has no key nope");
    }

    /// Two keys of one Secret that changes between two reads: the Secret is read
    /// once, so the annotation is that of one version, not a mix that a later
    /// reconcile would change again (one roll too many).
    #[tokio::test]
    async fn one_object_is_read_once_per_reconcile() {
        let refs = references(&resource(
            "authToken: {name: hook, key: token}\ninputs: [{name: A, valueFrom: {secretKeyRef: {name: hook, key: token}}}, {name: B, valueFrom: {secretKeyRef: {name: hook, key: other}}}]",
        ));
        assert_eq!(refs.len(), 2);
        let changing = |n: usize| {
            let mut secret = secret("v", &(100 + n).to_string());
            secret["data"]["other"] = "eA==".into();
            secret
        };
        let read = annotation_for_each(changing, &refs).await.unwrap();
        let token = Reference::Secret("hook".into(), "token".into());
        assert_eq!(read, fingerprint([(&token, &meta("uid-a", "101"))]));
    }
}
