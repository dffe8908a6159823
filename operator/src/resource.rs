//! The `CommerceWebhook` custom resource (`integration.commerce.dev/v1alpha1`).
//!
//! The schema stays within what Kubernetes 1.20 accepts (no CEL rules, no
//! `propertyNames`/`patternProperties`, no empty-string defaults). What it cannot
//! express (for example that an input does not also set a variable the operator
//! manages) is checked when reconciling (`validation`) and reported as a condition.
//! Types and defaults the webhook defines (the failure policy, the default path and
//! back-office timeout) come from its contract rather than being restated here.

use commerce_webhook::contract;
use commerce_webhook::events::StockEvent;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use commerce_webhook::answers::FailurePolicy;

/// Declares one Adobe Commerce synchronous webhook served from this cluster.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "integration.commerce.dev",
    version = "v1alpha1",
    kind = "CommerceWebhook",
    plural = "commercewebhooks",
    shortname = "cwh",
    category = "commerce",
    namespaced,
    status = "CommerceWebhookStatus",
    printcolumn = r#"{"name":"Enabled","type":"boolean","jsonPath":".spec.enabled"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CommerceWebhookSpec {
    /// Whether the webhook runs. `false` removes its Deployment, Service and Ingress
    /// (like commenting out the `webhook` section of the starter kit's app.config.yaml).
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Which webhook action to serve.
    #[serde(default)]
    pub action: Action,

    /// HTTP path the webhook answers on (and the Ingress routes).
    #[serde(default = "default_path")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9/_.~-]*$"), length(max = 253))]
    pub path: String,

    /// Environment inputs of the action, like `inputs` in the starter kit's
    /// actions.config.yaml (`LOG_LEVEL`, custom parameters), each a literal `value`
    /// or a `valueFrom` Secret/ConfigMap key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub inputs: Vec<Input>,

    /// Where stock levels come from. Empty: the sample inventory built into the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockSource>,

    /// Secret key holding the PEM public key from the Commerce Admin; when set, the
    /// webhook rejects calls without a valid Commerce signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_public_key: Option<KeyRef>,

    /// Secret key holding a token that Commerce must send as
    /// `Authorization: Bearer <token>` (a static header on the hook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<KeyRef>,

    /// How the webhook runs.
    #[serde(default)]
    pub workload: Workload,

    /// Expose the webhook outside the cluster, for Commerce to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// How Commerce should call the hook (used by `commerce-config` and for the
    /// webhook's own deadline and fallback message).
    #[serde(default)]
    pub commerce: CommerceHook,
}

/// The webhook actions this operator can serve.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Action {
    /// Checks stock when a shopper adds a product to the cart or changes a cart line
    /// (the event is `spec.commerce.event`).
    #[default]
    #[serde(rename = "check-stock")]
    CheckStock,
}

/// One environment input of the webhook.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// Environment variable name.
    #[schemars(
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value read from a Secret or ConfigMap key (for tokens and keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<InputSource>,
}

/// Exactly one of `secretKeyRef` / `configMapKeyRef`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct InputSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct KeyRef {
    /// Object name.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
    /// Key inside the object's data.
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: String,
}

/// Exactly one of `inventory` / `backOffice`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct StockSource {
    /// An inventory document (YAML or JSON, SKU: quantity) in a ConfigMap key;
    /// edits are picked up without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventorySource>,
    /// The merchant's back-office, asked over HTTP on every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_office: Option<BackOfficeSource>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventorySource {
    pub config_map_key_ref: KeyRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackOfficeSource {
    /// Stock endpoint, `http://` or `https://`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"), length(max = 2048))]
    pub url: String,
    /// Timeout of one back-office call, in milliseconds.
    #[serde(default = "default_backoffice_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: u32,
    /// What to answer when the back-office fails: `deny` the add-to-cart with the
    /// fallback message, or `allow` it and log a warning.
    #[serde(default)]
    pub on_error: FailurePolicy,
    /// Secret key with a bearer token for the back-office.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<KeyRef>,
    /// PEM CA certificates trusted for the back-office besides the built-in roots
    /// (a private CA), from a Secret or ConfigMap key; mounted as a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<InputSource>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Container image; defaults to the operator's `--webhook-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Pods to run, kept by the operator. Unset: the Deployment starts with 2 pods
    /// for a `commerce.required` hook (1 otherwise) and the operator leaves the
    /// count to whoever scales it (`kubectl scale`, an HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// Scale on CPU with a HorizontalPodAutoscaler instead of a fixed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// CPU/memory requests and limits; defaults suit the webhook's small footprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A HorizontalPodAutoscaler (`autoscaling/v1`) on the webhook's Deployment.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest pods; default 2 for a `commerce.required` hook, 1 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: Option<i32>,
    /// Most pods.
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Average CPU use, in percent of the pods' CPU request, the HPA aims for.
    #[serde(default = "default_cpu_target")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

impl Autoscaling {
    pub fn min_replicas(&self, required: bool) -> i32 {
        self.min_replicas
            .unwrap_or_else(|| Workload::default_replicas(required))
    }
}

impl Workload {
    /// Pods a hook starts with when nobody says: a required hook blocks the
    /// add-to-cart when it fails, so it survives one pod going away.
    pub fn default_replicas(required: bool) -> i32 {
        if required { 2 } else { 1 }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Public host name Commerce calls.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub host: String,
    /// IngressClass name; the cluster default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// TLS Secret for the host; the URL is `https://` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
}

/// The Commerce side of the hook (webhooks.xml / REST subscription).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommerceHook {
    /// The Commerce event that calls the hook. `observer.checkout_cart_product_add_before`
    /// sends the quantity being added (not what the cart already holds) and, for a
    /// configurable product, only the parent's SKU; `observer.sales_quote_item_save_before`
    /// also fires on quantity updates and sends the line's total and the child's SKU.
    #[serde(default)]
    pub event: CommerceEvent,
    /// Hard timeout Commerce waits, in milliseconds. The webhook answers within
    /// 80 % of it (capped at 600 ms) whatever its back-office does.
    #[serde(default = "default_timeout_ms")]
    #[schemars(range(min = 100, max = 60000))]
    pub timeout_ms: u32,
    /// Commerce only logs calls slower than this, in milliseconds.
    #[serde(default = "default_soft_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub soft_timeout_ms: u32,
    /// Whether a failed call blocks the add-to-cart.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Message shown when the webhook cannot give one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub fallback_error_message: Option<String>,
    /// PHP exception class Commerce throws with the webhook's message (the
    /// webhook's `EXCEPTION_TYPE`), e.g.
    /// `Magento\Framework\Exception\LocalizedException`; Commerce's default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^\\?[A-Za-z_][A-Za-z0-9_]*(\\[A-Za-z_][A-Za-z0-9_]*)*$"),
        length(min = 1, max = 255)
    )]
    pub exception_type: Option<String>,
}

impl Default for CommerceHook {
    fn default() -> Self {
        CommerceHook {
            event: CommerceEvent::default(),
            timeout_ms: default_timeout_ms(),
            soft_timeout_ms: default_soft_timeout_ms(),
            required: true,
            fallback_error_message: None,
            exception_type: None,
        }
    }
}

/// The events a stock check can hook (the CRD lists them: anything else is refused).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CommerceEvent {
    #[default]
    #[serde(rename = "observer.checkout_cart_product_add_before")]
    CheckoutCartProductAddBefore,
    #[serde(rename = "observer.sales_quote_item_save_before")]
    SalesQuoteItemSaveBefore,
}

impl From<CommerceEvent> for StockEvent {
    fn from(event: CommerceEvent) -> Self {
        match event {
            CommerceEvent::CheckoutCartProductAddBefore => StockEvent::CheckoutCartProductAddBefore,
            CommerceEvent::SalesQuoteItemSaveBefore => StockEvent::SalesQuoteItemSaveBefore,
        }
    }
}

/// What the operator observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommerceWebhookStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub ready_replicas: i32,
    /// In-cluster URL of the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// URL through the Ingress, what Commerce should call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_path() -> String {
    contract::DEFAULT_WEBHOOK_PATH.to_owned()
}

fn default_cpu_target() -> i32 {
    80
}

fn default_backoffice_timeout_ms() -> u32 {
    contract::DEFAULT_BACKOFFICE_TIMEOUT_MS
}

fn default_timeout_ms() -> u32 {
    2000
}

fn default_soft_timeout_ms() -> u32 {
    500
}

impl CommerceWebhook {
    /// The URL pods in the cluster use.
    pub fn cluster_url(&self) -> String {
        let namespace = self.namespace().unwrap_or_else(|| "default".to_owned());
        format!(
            "http://{}.{}.svc{}",
            self.name_any(),
            namespace,
            self.spec.path
        )
    }

    /// The URL Commerce calls through the Ingress, when there is one.
    pub fn external_url(&self) -> Option<String> {
        let ingress = self.spec.ingress.as_ref()?;
        let scheme = if ingress.tls_secret_name.is_some() {
            "https"
        } else {
            "http"
        };
        Some(format!("{scheme}://{}{}", ingress.host, self.spec.path))
    }
}

/// The CRD as YAML, as `crd` prints it and `crds/commercewebhook.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&CommerceWebhook::crd())
}
