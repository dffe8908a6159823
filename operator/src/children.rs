//! The objects a `CommerceWebhook` turns into: a Deployment running
//! `commerce-webhook`, a Service in front of it, and optionally an Ingress.
//!
//! Pure functions of the resource (plus the operator's defaults and the hash of the
//! referenced data), so that what is applied is deterministic: applying the same
//! resource twice changes nothing on the server.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use thiserror::Error;

use crate::resource::{CommerceWebhook, FailurePolicy, KeyRef};

pub const CONTAINER_NAME: &str = "webhook";
pub const CONTAINER_PORT: i32 = 8080;
pub const SERVICE_PORT: i32 = 80;
/// Pod-template annotation holding the hash of referenced Secret/ConfigMap data:
/// when the data changes, the template changes, and the pods roll.
pub const CONFIG_HASH_ANNOTATION: &str = "integration.commerce.dev/config-hash";
const INVENTORY_DIR: &str = "/etc/commerce-webhook/inventory";
const NON_ROOT_UID: i64 = 65532;

/// Variables the operator derives from typed spec fields; an input may not set them.
const MANAGED: [(&str, &str); 9] = [
    ("PORT", "the operator"),
    ("WEBHOOK_PATH", "spec.path"),
    ("INVENTORY_FILE", "spec.stock.inventory"),
    ("BACKOFFICE_URL", "spec.stock.backOffice.url"),
    ("BACKOFFICE_TIMEOUT_MS", "spec.stock.backOffice.timeoutMs"),
    ("BACKOFFICE_ON_ERROR", "spec.stock.backOffice.onError"),
    ("BACKOFFICE_TOKEN", "spec.stock.backOffice.token"),
    ("COMMERCE_WEBHOOKS_PUBLIC_KEY", "spec.signaturePublicKey"),
    ("WEBHOOK_AUTH_TOKEN", "spec.authToken"),
];

/// A spec the schema accepts but that cannot be deployed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("input {name} is managed by {owner}; set it there instead of in spec.inputs")]
    ManagedInput { name: String, owner: &'static str },
    #[error("input {0} has both value and valueFrom; give one")]
    AmbiguousInput(String),
    #[error("input {0} is listed twice")]
    DuplicateInput(String),
}

/// What the operator brings to every resource.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub image: String,
}

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

pub fn labels(cwh: &CommerceWebhook) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "commerce-webhook".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), cwh.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "commerce-webhook-operator".to_owned(),
        ),
    ])
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

/// The webhook's deadline: inside Commerce's hard timeout with room for the network,
/// and never more than 600 ms so a slow back-office is cut well before the shopper notices.
pub fn request_deadline_ms(timeout_ms: u32) -> u32 {
    (timeout_ms.saturating_mul(4) / 5).clamp(1, 600)
}

/// The container environment: what the operator derives from the spec, then the
/// inputs in the order declared. Inputs may override defaults, not managed values.
pub fn env(cwh: &CommerceWebhook) -> Result<Vec<EnvVar>, SpecError> {
    let spec = &cwh.spec;
    let mut seen = std::collections::HashSet::new();
    for input in &spec.inputs {
        if let Some((_, owner)) = MANAGED.iter().find(|(name, _)| *name == input.name) {
            return Err(SpecError::ManagedInput {
                name: input.name.clone(),
                owner,
            });
        }
        if input.value.is_some() && input.value_from.is_some() {
            return Err(SpecError::AmbiguousInput(input.name.clone()));
        }
        if !seen.insert(input.name.as_str()) {
            return Err(SpecError::DuplicateInput(input.name.clone()));
        }
    }

    let mut env = vec![
        literal("PORT", CONTAINER_PORT.to_string()),
        literal("WEBHOOK_PATH", spec.path.clone()),
    ];
    // Defaults that an input of the same name replaces.
    let defaults = [
        ("LOG_FORMAT", Some("json".to_owned())),
        // Kubernetes removes the pod from Service endpoints asynchronously: keep
        // serving (not-ready) for a moment after SIGTERM.
        ("SHUTDOWN_DRAIN_MS", Some("5000".to_owned())),
        (
            "REQUEST_DEADLINE_MS",
            Some(request_deadline_ms(spec.commerce.timeout_ms).to_string()),
        ),
        (
            "FALLBACK_ERROR_MESSAGE",
            spec.commerce.fallback_error_message.clone(),
        ),
    ];
    for (name, value) in defaults {
        let overridden = spec.inputs.iter().any(|i| i.name == name);
        if let Some(value) = value.filter(|_| !overridden) {
            env.push(literal(name, value));
        }
    }
    if let Some(stock) = &spec.stock {
        if let Some(inventory) = &stock.inventory {
            let key = &inventory.config_map_key_ref.key;
            env.push(literal("INVENTORY_FILE", format!("{INVENTORY_DIR}/{key}")));
        }
        if let Some(back_office) = &stock.back_office {
            env.push(literal("BACKOFFICE_URL", back_office.url.clone()));
            env.push(literal(
                "BACKOFFICE_TIMEOUT_MS",
                back_office.timeout_ms.to_string(),
            ));
            let policy = match back_office.on_error {
                FailurePolicy::Deny => "deny",
                FailurePolicy::Allow => "allow",
            };
            env.push(literal("BACKOFFICE_ON_ERROR", policy.to_owned()));
            if let Some(token) = &back_office.token {
                env.push(from_secret("BACKOFFICE_TOKEN", token));
            }
        }
    }
    if let Some(key) = &spec.signature_public_key {
        env.push(from_secret("COMMERCE_WEBHOOKS_PUBLIC_KEY", key));
    }
    if let Some(token) = &spec.auth_token {
        env.push(from_secret("WEBHOOK_AUTH_TOKEN", token));
    }
    for input in &spec.inputs {
        let source = input.value_from.as_ref();
        env.push(EnvVar {
            name: input.name.clone(),
            value: if source.is_none() {
                Some(input.value.clone().unwrap_or_default())
            } else {
                None
            },
            value_from: source.map(|s| EnvVarSource {
                secret_key_ref: s.secret_key_ref.as_ref().map(secret_selector),
                config_map_key_ref: s.config_map_key_ref.as_ref().map(|r| ConfigMapKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    Ok(env)
}

fn literal(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    }
}

fn secret_selector(r: &KeyRef) -> SecretKeySelector {
    SecretKeySelector {
        name: r.name.clone(),
        key: r.key.clone(),
        optional: None,
    }
}

fn from_secret(name: &str, r: &KeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(secret_selector(r)),
            ..EnvVarSource::default()
        }),
    }
}

fn default_resources() -> ResourceRequirements {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(quantities("50m", "32Mi")),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("128Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

pub fn deployment(
    cwh: &CommerceWebhook,
    defaults: &Defaults,
    config_hash: &str,
) -> Result<Deployment, SpecError> {
    let spec = &cwh.spec;
    let inventory = spec.stock.as_ref().and_then(|s| s.inventory.as_ref());
    let volumes = inventory.map(|inventory| {
        let r = &inventory.config_map_key_ref;
        vec![Volume {
            name: "inventory".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: r.name.clone(),
                items: Some(vec![KeyToPath {
                    key: r.key.clone(),
                    path: r.key.clone(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }]
    });
    let mounts = inventory.map(|_| {
        vec![VolumeMount {
            name: "inventory".to_owned(),
            mount_path: INVENTORY_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]
    });
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(
            spec.workload
                .image
                .clone()
                .unwrap_or_else(|| defaults.image.clone()),
        ),
        env: Some(env(cwh)?),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: CONTAINER_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 2)),
        resources: Some(
            spec.workload
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(NON_ROOT_UID),
            run_as_group: Some(NON_ROOT_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: mounts,
        ..Container::default()
    };
    Ok(Deployment {
        metadata: metadata(cwh),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.workload.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cwh)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cwh)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    // The webhook never talks to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    volumes,
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

pub fn service(cwh: &CommerceWebhook) -> Service {
    Service {
        metadata: metadata(cwh),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(cwh)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                // 1.20's server-side apply needs the protocol spelled out.
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

pub fn ingress(cwh: &CommerceWebhook) -> Option<Ingress> {
    let wanted = cwh.spec.ingress.as_ref()?;
    Some(Ingress {
        metadata: metadata(cwh),
        spec: Some(K8sIngressSpec {
            ingress_class_name: wanted.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(wanted.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(cwh.spec.path.clone()),
                        path_type: "Exact".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: cwh.name_any(),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".to_owned()),
                                    number: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            tls: wanted.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![wanted.host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            default_backend: None,
        }),
        status: None,
    })
}

/// The URL pods in the cluster use.
pub fn cluster_url(cwh: &CommerceWebhook) -> String {
    let namespace = cwh.namespace().unwrap_or_else(|| "default".to_owned());
    format!(
        "http://{}.{}.svc{}",
        cwh.name_any(),
        namespace,
        cwh.spec.path
    )
}

/// The URL Commerce calls through the Ingress, when there is one.
pub fn external_url(cwh: &CommerceWebhook) -> Option<String> {
    let ingress = cwh.spec.ingress.as_ref()?;
    let scheme = if ingress.tls_secret_name.is_some() {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{}{}", ingress.host, cwh.spec.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::CommerceWebhookSpec;

    fn resource(yaml: &str) -> CommerceWebhook {
        let spec: CommerceWebhookSpec = serde_yaml::from_str(yaml).unwrap();
        let mut cwh = CommerceWebhook::new("hook", spec);
        cwh.metadata.namespace = Some("shop".into());
        cwh.metadata.uid = Some("uid-1".into());
        cwh
    }

    fn names(env: &[EnvVar]) -> Vec<&str> {
        env.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn env_derives_managed_values_then_inputs() {
        let cwh = resource(
            r#"
            inputs:
              - {name: LOG_LEVEL, value: debug}
              - {name: ERP_KEY, valueFrom: {secretKeyRef: {name: erp, key: key}}}
              - {name: REQUEST_DEADLINE_MS, value: "300"}
            stock:
              backOffice: {url: "https://erp.example/stock", onError: allow, token: {name: erp, key: token}}
            authToken: {name: hook-auth, key: token}
            commerce: {timeoutMs: 500}
            "#,
        );
        let env = env(&cwh).unwrap();
        assert_eq!(
            names(&env),
            [
                "PORT",
                "WEBHOOK_PATH",
                "LOG_FORMAT",
                "SHUTDOWN_DRAIN_MS",
                "BACKOFFICE_URL",
                "BACKOFFICE_TIMEOUT_MS",
                "BACKOFFICE_ON_ERROR",
                "BACKOFFICE_TOKEN",
                "WEBHOOK_AUTH_TOKEN",
                "LOG_LEVEL",
                "ERP_KEY",
                "REQUEST_DEADLINE_MS"
            ],
            "an input overrides the default deadline instead of duplicating it"
        );
        let token = env.iter().find(|e| e.name == "BACKOFFICE_TOKEN").unwrap();
        assert!(
            token.value.is_none(),
            "secrets are references, never values"
        );
        assert_eq!(
            token
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "erp"
        );
        let policy = env
            .iter()
            .find(|e| e.name == "BACKOFFICE_ON_ERROR")
            .unwrap();
        assert_eq!(policy.value.as_deref(), Some("allow"));
    }

    #[test]
    fn inputs_may_not_set_managed_variables_or_repeat() {
        let managed = resource("inputs: [{name: BACKOFFICE_URL, value: 'http://x'}]");
        assert_eq!(
            env(&managed).unwrap_err().to_string(),
            "input BACKOFFICE_URL is managed by spec.stock.backOffice.url; set it there instead of in spec.inputs"
        );
        let both =
            resource("inputs: [{name: A, value: x, valueFrom: {secretKeyRef: {name: s, key: k}}}]");
        assert_eq!(
            env(&both).unwrap_err(),
            SpecError::AmbiguousInput("A".into())
        );
    }

    #[test]
    fn deadline_stays_inside_commerce_timeout() {
        assert_eq!(request_deadline_ms(2000), 600);
        assert_eq!(request_deadline_ms(500), 400);
        assert_eq!(request_deadline_ms(0), 1);
    }

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

    #[test]
    fn the_deployment_is_hardened_and_owned() {
        let cwh = resource("workload: {replicas: 2}\ningress: {host: shop.example.com}");
        let deployment = deployment(
            &cwh,
            &Defaults {
                image: "img:1".into(),
            },
            "hash",
        )
        .unwrap();
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("img:1"));
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        let owner = &deployment.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CommerceWebhook", Some(true))
        );
        assert_eq!(
            external_url(&cwh).as_deref(),
            Some("http://shop.example.com/webhook/check-stock")
        );
        let ingress = ingress(&cwh).unwrap();
        assert_eq!(
            ingress.spec.unwrap().rules.unwrap()[0].host.as_deref(),
            Some("shop.example.com")
        );
    }
}
