//! The Deployment that runs the webhook: hardened pod, probes on the webhook's own
//! health paths, the inventory mounted when there is one.

use std::collections::BTreeMap;

use commerce_webhook::contract::{HEALTH_PATH, READY_PATH};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::env::{BACKOFFICE_CA_DIR, CONTAINER_PORT, INVENTORY_DIR, ca_bundle_key, env};
use super::{CONFIG_HASH_ANNOTATION, Defaults, PORT_NAME, labels, metadata, selector_labels};
use crate::resource::CommerceWebhook;

pub const CONTAINER_NAME: &str = "webhook";
const NON_ROOT_UID: i64 = 65532;

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
            port: IntOrString::String(PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The Deployment of a validated resource; `config_hash` goes into the pod
/// template so that a change of referenced data rolls the pods.
pub fn deployment(cwh: &CommerceWebhook, defaults: &Defaults, config_hash: &str) -> Deployment {
    let spec = &cwh.spec;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let one_key = |key: &str| {
        Some(vec![KeyToPath {
            key: key.to_owned(),
            path: key.to_owned(),
            mode: None,
        }])
    };
    let mut mount = |name: &str, dir: &str| {
        mounts.push(VolumeMount {
            name: name.to_owned(),
            mount_path: dir.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    };
    if let Some(inventory) = spec.stock.as_ref().and_then(|s| s.inventory.as_ref()) {
        let r = &inventory.config_map_key_ref;
        volumes.push(Volume {
            name: "inventory".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: r.name.clone(),
                items: one_key(&r.key),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mount("inventory", INVENTORY_DIR);
    }
    let ca_bundle = spec
        .stock
        .as_ref()
        .and_then(|s| s.back_office.as_ref())
        .and_then(|b| b.ca_bundle.as_ref());
    if let Some(source) = ca_bundle.filter(|source| ca_bundle_key(source).is_some()) {
        volumes.push(Volume {
            name: "backoffice-ca".to_owned(),
            secret: source.secret_key_ref.as_ref().map(|r| SecretVolumeSource {
                secret_name: Some(r.name.clone()),
                items: one_key(&r.key),
                ..SecretVolumeSource::default()
            }),
            config_map: source
                .config_map_key_ref
                .as_ref()
                .map(|r| ConfigMapVolumeSource {
                    name: r.name.clone(),
                    items: one_key(&r.key),
                    ..ConfigMapVolumeSource::default()
                }),
            ..Volume::default()
        });
        mount("backoffice-ca", BACKOFFICE_CA_DIR);
    }
    let volumes = (!volumes.is_empty()).then_some(volumes);
    let mounts = (!mounts.is_empty()).then_some(mounts);
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(
            spec.workload
                .image
                .clone()
                .unwrap_or_else(|| defaults.image.clone()),
        ),
        env: Some(env(cwh)),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: i32::from(CONTAINER_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe(HEALTH_PATH, 10)),
        readiness_probe: Some(probe(READY_PATH, 2)),
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
    Deployment {
        metadata: metadata(cwh),
        spec: Some(DeploymentSpec {
            // Unset: not in the apply, so an HPA or `kubectl scale` owns the count.
            replicas: spec.workload.replicas,
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::webhook as resource;

    fn defaults() -> Defaults {
        Defaults {
            image: "img:1".into(),
            pdb: crate::children::PdbApi::v1(),
        }
    }

    #[test]
    fn the_deployment_is_hardened_and_owned() {
        let cwh = resource("workload: {replicas: 2}\ningress: {host: shop.example.com}");
        let deployment = deployment(&cwh, &defaults(), "hash");
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
    }

    /// Applying `replicas` makes the operator its owner, so it would revert every
    /// `kubectl scale` and fight an HPA: unset, it is not applied at all.
    #[test]
    fn unset_replicas_are_not_applied() {
        let defaults = defaults();
        for yaml in ["{}", "workload: {autoscaling: {maxReplicas: 5}}"] {
            let applied = deployment(&resource(yaml), &defaults, "hash");
            assert_eq!(applied.spec.as_ref().unwrap().replicas, None, "{yaml}");
            let json = serde_json::to_value(&applied).unwrap();
            assert!(json["spec"].get("replicas").is_none(), "{json}");
        }
    }

    #[test]
    fn the_back_office_ca_bundle_is_mounted_where_the_env_points() {
        let cwh = resource(
            "stock: {backOffice: {url: 'https://erp.example/stock', caBundle: {configMapKeyRef: {name: pki, key: ca.pem}}}}",
        );
        let deployment = deployment(&cwh, &defaults(), "hash");
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        let volume = &pod.volumes.unwrap()[0];
        let config_map = volume.config_map.as_ref().unwrap();
        assert_eq!(config_map.name, "pki");
        assert_eq!(config_map.items.as_ref().unwrap()[0].key, "ca.pem");
        let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.name, volume.name);
        let file = pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|var| var.name == "BACKOFFICE_CA_FILE")
            .and_then(|var| var.value.clone());
        assert_eq!(file, Some(format!("{}/ca.pem", mount.mount_path)));
    }
}
