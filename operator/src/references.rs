//! What a resource references, and reading it: every Secret/ConfigMap key must
//! exist before a pod is deployed (a missing one is a clear condition, not a pod
//! failing to start), and the referenced data is hashed into the pod template so
//! that a change rolls the pods. Values are only hashed, never logged or copied.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
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

/// SHA-256 (hex, 32 characters) over each environment reference and its current
/// value; the mounted inventory is only checked to exist.
pub async fn config_hash(
    client: &Client,
    namespace: &str,
    refs: &[Reference],
) -> Result<String, ReferenceError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut hasher = Sha256::new();
    for reference in refs {
        let value = match reference {
            Reference::Secret(name, key) => {
                let secret = fetch(&secrets, reference, "Secret", name).await?;
                secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get(key))
                    .map(|bytes| bytes.0.clone())
                    .or_else(|| {
                        secret
                            .string_data
                            .as_ref()
                            .and_then(|d| d.get(key))
                            .map(|s| s.clone().into_bytes())
                    })
                    .ok_or_else(|| key_missing("Secret", name, key))?
            }
            Reference::ConfigMap(name, key) | Reference::Inventory(name, key) => {
                let config_map = fetch(&config_maps, reference, "ConfigMap", name).await?;
                config_map
                    .data
                    .as_ref()
                    .and_then(|data| data.get(key))
                    .map(|s| s.clone().into_bytes())
                    .or_else(|| {
                        config_map
                            .binary_data
                            .as_ref()
                            .and_then(|d| d.get(key))
                            .map(|b| b.0.clone())
                    })
                    .ok_or_else(|| key_missing("ConfigMap", name, key))?
            }
        };
        if matches!(reference, Reference::Inventory(..)) {
            continue;
        }
        let label = reference.to_string();
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(&value);
    }
    let digest = hasher.finalize();
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
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
}
