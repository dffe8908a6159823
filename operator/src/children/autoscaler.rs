//! The HorizontalPodAutoscaler of `spec.workload.autoscaling` (`autoscaling/v1`,
//! which every Kubernetes version serves, 1.20 included).

use k8s_openapi::api::autoscaling::v1::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
};
use kube::ResourceExt;

use super::metadata;
use crate::resource::CommerceWebhook;

/// The HPA scaling the webhook's Deployment, if the resource asks for one.
pub fn autoscaler(cwh: &CommerceWebhook) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = cwh.spec.workload.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: metadata(cwh),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: cwh.name_any(),
            },
            min_replicas: Some(autoscaling.min_replicas(cwh.spec.commerce.required)),
            max_replicas: autoscaling.max_replicas,
            target_cpu_utilization_percentage: Some(autoscaling.target_cpu_utilization_percentage),
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::webhook;

    #[test]
    fn the_autoscaler_targets_the_deployment_with_the_spec_s_bounds() {
        assert!(autoscaler(&webhook("{}")).is_none());
        let hpa = autoscaler(&webhook("workload: {autoscaling: {maxReplicas: 6}}")).unwrap();
        let spec = hpa.spec.unwrap();
        assert_eq!(spec.scale_target_ref.name, "hook");
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!(
            (spec.min_replicas, spec.max_replicas),
            (Some(2), 6),
            "a required hook keeps two pods"
        );
        assert_eq!(spec.target_cpu_utilization_percentage, Some(80));
        assert_eq!(
            hpa.metadata.owner_references.unwrap()[0].controller,
            Some(true)
        );
    }
}
