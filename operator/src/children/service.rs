//! The Service in front of the webhook's pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{PORT_NAME, metadata, selector_labels};
use crate::resource::CommerceWebhook;

/// The port the Service listens on; the Ingress and in-cluster callers use it.
pub const SERVICE_PORT: i32 = 80;

pub fn service(cwh: &CommerceWebhook) -> Service {
    Service {
        metadata: metadata(cwh),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(cwh)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_owned()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String(PORT_NAME.to_owned())),
                // 1.20's server-side apply needs the protocol spelled out.
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
