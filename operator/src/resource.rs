//! The `CommerceWebhook` custom resource (`integration.commerce.dev/v1alpha1`).
//!
//! The schema stays within what Kubernetes 1.20 accepts (no CEL rules, no
//! `propertyNames`/`patternProperties`, no empty-string defaults). What it cannot
//! express (for example that an input does not also set a variable the operator
//! manages) is checked when reconciling (`validation`) and reported as a condition.
//! Types and defaults the webhook defines (the failure policy, the default path and
//! back-office timeout) come from its contract rather than being restated here.

use commerce_webhook::contract::{self, var};
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
    #[schemars(
        length(max = bounds::MAX_INPUTS),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
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

    /// The webhook's own limits against overload and abuse; each unset one keeps
    /// the webhook's default.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
}

/// One tunable limit of the webhook: the spec field, the variable it sets, and the
/// values the CRD accepts (a range the webhook's own parser accepts too, which a
/// test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The field under `spec.limits`, as the CRD spells it.
    pub field: &'static str,
    /// Its path in the resource, `spec.limits.<field>`.
    pub path: &'static str,
    /// The webhook variable it sets (`commerce_webhook::contract::var`).
    pub var: &'static str,
    pub min: u32,
    pub max: u32,
}

/// Declares `spec.limits`: one line per limit (its doc comment, field, variable and
/// bounds) gives the typed, bounded CRD field, its entry in [`Limits::ALL`] (which
/// `validation` reserves and `children::env` writes), and nothing else to keep in step.
macro_rules! limits {
    ($( $(#[doc = $doc:literal])* $field:ident ($camel:literal) => $var:expr, $min:literal ..= $max:literal; )*) => {
        /// The webhook's connection, request and payload limits (`spec.limits`).
        #[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct Limits {
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                #[schemars(range(min = $min, max = $max))]
                pub $field: Option<u32>,
            )*
        }

        impl Limits {
            /// Every limit, in the order of the fields.
            pub const ALL: &'static [Limit] = &[
                $( Limit {
                    field: $camel,
                    path: concat!("spec.limits.", $camel),
                    var: $var,
                    min: $min,
                    max: $max,
                }, )*
            ];

            /// The limits that are set, each with its variable.
            pub fn set(&self) -> Vec<(&'static Limit, u32)> {
                let values = [$( self.$field ),*];
                Self::ALL
                    .iter()
                    .zip(values)
                    .filter_map(|(limit, value)| value.map(|value| (limit, value)))
                    .collect()
            }
        }
    };
}

limits! {
    /// Most connections open at once; one more is closed on arrival (webhook default 1024).
    max_connections ("maxConnections") => var::MAX_CONNECTIONS, 1 ..= 65536;
    /// Most calls answered at once; one more is refused at once with an exception (default 128).
    max_in_flight ("maxInFlight") => var::MAX_IN_FLIGHT, 1 ..= 65536;
    /// How long a kept-alive connection may wait for its next request head, in milliseconds (default 10000).
    header_timeout_ms ("headerTimeoutMs") => var::HEADER_TIMEOUT_MS, 1 ..= 600000;
    /// How long a new connection may take to send its first request head, in milliseconds (default 2000).
    first_header_timeout_ms ("firstHeaderTimeoutMs") => var::FIRST_HEADER_TIMEOUT_MS, 1 ..= 600000;
    /// How long a request body may take to arrive once its head is read, in milliseconds (default 500).
    body_timeout_ms ("bodyTimeoutMs") => var::BODY_TIMEOUT_MS, 1 ..= 600000;
    /// Most request bodies being read at once, apart from the calls being answered (default 256).
    max_bodies_reading ("maxBodiesReading") => var::MAX_BODIES_READING, 1 ..= 65536;
    /// Largest request body accepted, in bytes (default 262144).
    max_body_bytes ("maxBodyBytes") => var::MAX_BODY_BYTES, 1 ..= 16777216;
    /// Most cart lines checked in one call; a larger cart is refused (default 1000).
    max_cart_lines ("maxCartLines") => var::MAX_CART_LINES, 1 ..= 5000;
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.set().is_empty()
    }
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
    /// Literal value (keys, certificates and other long values come from a
    /// Secret or ConfigMap through `valueFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_INPUT_VALUE))]
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
    #[schemars(length(min = 1, max = bounds::MAX_IMAGE))]
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
    #[schemars(schema_with = "bounds::resources")]
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
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub class_name: Option<String>,
    /// TLS Secret for the host; the URL is `https://` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
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
    /// The shopper's message for each short SKU (the webhook's `SHORTAGE_MESSAGE`):
    /// `{sku}`, `{requested}` and `{available}` are optional placeholders, `{{`/`}}`
    /// literal braces. Empty: the starter kit's message, which shows the exact stock
    /// (`available N`) to anyone who may call the webhook; leave `{available}` out to
    /// keep stock levels private.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub shortage_message: Option<String>,
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
            shortage_message: None,
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
    #[schemars(schema_with = "bounds::conditions")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub ready_replicas: i32,
    /// In-cluster URL of the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_URL))]
    pub url: Option<String>,
    /// URL through the Ingress, what Commerce should call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = bounds::MAX_URL))]
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

/// The bounds of every list and string the CRD accepts, so that no resource can
/// make the API server store, or the operator cache, more than a few hundred
/// kilobytes (the schema keeps to what Kubernetes 1.20 accepts: `maxItems`,
/// `maxLength`, `maxProperties`, `enum`; no CEL).
pub mod bounds {
    use schemars::{Schema, SchemaGenerator, json_schema};

    /// Entries in `spec.inputs`.
    pub const MAX_INPUTS: u32 = 32;
    /// Length of an input's literal `value`.
    pub const MAX_INPUT_VALUE: u32 = 4096;
    /// Length of `spec.workload.image` (registry, repository, tag and digest).
    pub const MAX_IMAGE: u32 = 512;
    /// Length of the URLs in the status.
    pub const MAX_URL: u32 = 1024;
    /// Resource names in `requests` or `limits`.
    pub const MAX_RESOURCE_NAMES: u32 = 8;
    /// Length of one resource quantity, e.g. `512Mi`.
    pub const MAX_QUANTITY: u32 = 64;
    /// Conditions in the status (the operator writes two).
    pub const MAX_CONDITIONS: u32 = 8;
    /// Length of a condition's message, as `metav1.Condition` allows.
    pub const MAX_CONDITION_MESSAGE: usize = 32768;

    /// `requests` and `limits` of the container (what Kubernetes 1.20 knows of
    /// `ResourceRequirements`), each a bounded map of bounded quantities.
    pub fn resources(_: &mut SchemaGenerator) -> Schema {
        let quantities = |description: &str| {
            serde_json::json!({
                "description": description,
                "type": "object",
                "maxProperties": MAX_RESOURCE_NAMES,
                "additionalProperties": {
                    "x-kubernetes-int-or-string": true,
                    "maxLength": MAX_QUANTITY,
                    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
                },
            })
        };
        json_schema!({
            "description": "CPU/memory requests and limits; defaults suit the webhook's small footprint.",
            "type": "object",
            "nullable": true,
            "properties": {
                "limits": quantities("The most CPU and memory the container may use, e.g. {memory: 128Mi}."),
                "requests": quantities("The CPU and memory the container is scheduled with, e.g. {cpu: 50m}."),
            },
        })
    }

    /// The status conditions (`metav1.Condition`, with the bounds the Kubernetes
    /// API gives it).
    pub fn conditions(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "array",
            "maxItems": MAX_CONDITIONS,
            "default": [],
            "items": {
                "type": "object",
                "required": ["lastTransitionTime", "message", "reason", "status", "type"],
                "properties": {
                    "type": {"type": "string", "maxLength": 316},
                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                    "reason": {"type": "string", "maxLength": 1024},
                    "message": {"type": "string", "maxLength": MAX_CONDITION_MESSAGE},
                    "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                    "lastTransitionTime": {"type": "string", "format": "date-time", "maxLength": 64},
                },
            },
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        })
    }
}

/// The CRD as YAML, as `crd` prints it and `crds/commercewebhook.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&CommerceWebhook::crd())
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::Value;

    use super::*;

    /// The keywords of a Kubernetes 1.20 structural schema (`JSONSchemaProps`
    /// without the ones structural schemas forbid); anything else, CEL's
    /// `x-kubernetes-validations` included, would be refused or ignored by 1.20.
    const KEYWORDS_1_20: [&str; 33] = [
        "description",
        "type",
        "format",
        "title",
        "default",
        "nullable",
        "example",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "multipleOf",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "properties",
        "additionalProperties",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
    ];

    /// Every way `node` (at `path`) could hold an unbounded amount of data, or a
    /// keyword 1.20 does not know.
    fn unbounded(path: &str, node: &Value, problems: &mut Vec<String>) {
        let Some(object) = node.as_object() else {
            return;
        };
        for key in object.keys() {
            if !KEYWORDS_1_20.contains(&key.as_str()) {
                problems.push(format!(
                    "{path}: keyword {key} is not one of Kubernetes 1.20's"
                ));
            }
        }
        let has = |key: &str| object.contains_key(key);
        match object.get("type").and_then(Value::as_str) {
            Some("array") if !has("maxItems") => {
                problems.push(format!("{path}: array without maxItems"))
            }
            Some("string") if !has("maxLength") && !has("enum") => {
                problems.push(format!("{path}: string without maxLength or enum"))
            }
            _ => {}
        }
        if has("x-kubernetes-int-or-string") && !has("maxLength") {
            problems.push(format!("{path}: int-or-string without maxLength"));
        }
        if object
            .get("additionalProperties")
            .is_some_and(Value::is_object)
            && !has("maxProperties")
        {
            problems.push(format!("{path}: map without maxProperties"));
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                unbounded(&format!("{path}.{name}"), property, problems);
            }
        }
        for key in ["items", "additionalProperties", "not"] {
            if let Some(child) = object.get(key) {
                unbounded(&format!("{path}[{key}]"), child, problems);
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for (i, child) in object
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                unbounded(&format!("{path}.{key}[{i}]"), child, problems);
            }
        }
    }

    /// Every list, string and map a user (or the operator) can write is bounded,
    /// with keywords Kubernetes 1.20 accepts. `apiVersion` and `kind` are left to
    /// the API server, which only accepts this CRD's own.
    #[test]
    fn every_list_string_and_map_in_the_schema_is_bounded() {
        let crd = serde_json::to_value(CommerceWebhook::crd()).unwrap();
        let versions = crd["spec"]["versions"].as_array().unwrap();
        assert!(!versions.is_empty());
        let mut problems = Vec::new();
        for version in versions {
            let root = &version["schema"]["openAPIV3Schema"];
            for (name, property) in root["properties"].as_object().unwrap() {
                if name != "apiVersion" && name != "kind" {
                    unbounded(name, property, &mut problems);
                }
            }
        }
        assert!(
            problems.is_empty(),
            "unbounded in the CRD schema:\n{}",
            problems.join("\n")
        );
    }

    /// The walk finds what it looks for (so an empty list above means something).
    #[test]
    fn the_schema_walk_finds_an_unbounded_field() {
        let mut problems = Vec::new();
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "list": {"type": "array", "items": {"type": "string", "maxLength": 3}},
                "text": {"type": "string"},
                "map": {"type": "object", "additionalProperties": {"type": "string", "enum": ["a"]}},
                "rule": {"type": "string", "maxLength": 1, "x-kubernetes-validations": []},
            },
        });
        unbounded("spec", &schema, &mut problems);
        problems.sort();
        assert_eq!(
            problems,
            [
                "spec.list: array without maxItems",
                "spec.map: map without maxProperties",
                "spec.rule: keyword x-kubernetes-validations is not one of Kubernetes 1.20's",
                "spec.text: string without maxLength or enum",
            ]
        );
    }

    /// The worst case a bounded resource can hold: the size a CR of maximal
    /// inputs reaches, far below the 1.4 MB of an unbounded one.
    #[test]
    fn a_maximal_spec_stays_small() {
        let inputs: Vec<_> = (0..bounds::MAX_INPUTS)
            .map(|i| {
                serde_json::json!({
                    "name": format!("{:A<253}", format!("V{i}_")),
                    "value": "x".repeat(bounds::MAX_INPUT_VALUE as usize),
                })
            })
            .collect();
        let size = serde_json::to_vec(&serde_json::json!({ "inputs": inputs }))
            .unwrap()
            .len();
        assert!(size < 200 * 1024, "{size} bytes");
    }
}
