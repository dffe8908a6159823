//! The PodDisruptionBudget of a required hook: Commerce blocks the add-to-cart
//! when the hook fails, so a node drain may take one of its pods at a time, never
//! all of them.
//!
//! `policy/v1` exists from Kubernetes 1.21 and `policy/v1beta1` until 1.24, with
//! the same fields: the budget is built with the `policy/v1` type and written as
//! whichever version the cluster serves ([`PdbApi`], found once at start-up).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject};
use kube::{Client, ResourceExt, discovery};

use super::{metadata, selector_labels};
use crate::resource::CommerceWebhook;

/// The PodDisruptionBudget API the cluster serves.
#[derive(Debug, Clone)]
pub struct PdbApi(pub ApiResource);

impl PdbApi {
    /// `policy/v1`, what current clusters serve.
    pub fn v1() -> PdbApi {
        PdbApi(ApiResource::erase::<PodDisruptionBudget>(&()))
    }

    /// `policy/v1beta1`, all Kubernetes 1.20 serves.
    pub fn v1beta1() -> PdbApi {
        let mut resource = ApiResource::erase::<PodDisruptionBudget>(&());
        resource.version = "v1beta1".to_owned();
        resource.api_version = "policy/v1beta1".to_owned();
        PdbApi(resource)
    }

    /// The version the API server recommends for PodDisruptionBudgets.
    pub async fn discover(client: &Client) -> Result<PdbApi, kube::Error> {
        let group = discovery::group(client, "policy").await?;
        Ok(group
            .recommended_kind("PodDisruptionBudget")
            .map_or_else(PdbApi::v1, |(resource, _)| PdbApi(resource)))
    }
}

/// The budget of a required hook (none for an optional one), in `api`'s version.
pub fn disruption_budget(cwh: &CommerceWebhook, api: &PdbApi) -> Option<DynamicObject> {
    if !cwh.spec.commerce.required {
        return None;
    }
    let budget = PodDisruptionBudget {
        metadata: metadata(cwh),
        spec: Some(PodDisruptionBudgetSpec {
            // Not minAvailable: with a single pod that would block every drain.
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cwh)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    };
    let mut object = DynamicObject::new(&cwh.name_any(), &api.0);
    object.metadata = budget.metadata;
    object.data = serde_json::json!({ "spec": budget.spec });
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::webhook;

    #[test]
    fn a_required_hook_has_a_budget_in_the_served_version() {
        assert!(
            disruption_budget(&webhook("commerce: {required: false}"), &PdbApi::v1()).is_none()
        );
        let budget = disruption_budget(&webhook("{}"), &PdbApi::v1beta1()).unwrap();
        let json = serde_json::to_value(&budget).unwrap();
        assert_eq!(json["apiVersion"], "policy/v1beta1");
        assert_eq!(json["kind"], "PodDisruptionBudget");
        assert_eq!(json["spec"]["maxUnavailable"], 1);
        assert_eq!(
            json["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
            "hook"
        );
        assert_eq!(json["metadata"]["ownerReferences"][0]["controller"], true);
    }
}
