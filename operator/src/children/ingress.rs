//! The Ingress that exposes the webhook to Commerce, when `spec.ingress` asks.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use kube::ResourceExt;

use super::{PORT_NAME, metadata};
use crate::resource::CommerceWebhook;

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
                                    name: Some(PORT_NAME.to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::webhook as resource;

    #[test]
    fn the_ingress_routes_the_host_and_path() {
        let cwh = resource("ingress: {host: shop.example.com}");
        assert_eq!(
            cwh.external_url().as_deref(),
            Some("http://shop.example.com/webhook/check-stock")
        );
        let ingress = ingress(&cwh).unwrap();
        assert_eq!(
            ingress.spec.unwrap().rules.unwrap()[0].host.as_deref(),
            Some("shop.example.com")
        );
        assert!(super::ingress(&resource("{}")).is_none());
    }
}
