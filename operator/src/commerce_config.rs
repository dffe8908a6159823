//! The Commerce side of a hook: what a merchant pastes into Commerce so that it
//! calls the webhook a `CommerceWebhook` runs (`webhooks.xml` on PaaS, the REST
//! subscription on SaaS). The auth token is never printed, only a placeholder.

use kube::ResourceExt;
use serde_json::json;

use crate::resource::CommerceWebhook;

/// The header value placeholder Commerce resolves from its environment.
const TOKEN_PLACEHOLDER: &str = "{env:COMMERCE_WEBHOOK_AUTH_TOKEN}";

/// Fields check-stock reads, as `(name, source)`: Commerce sends `source` under `name`.
const FIELDS: [(&str, &str); 2] = [
    ("data.cart_id", "data.cart_id"),
    ("data.items", "data.items"),
];

pub struct HookConfig {
    pub url: String,
    pub hook_name: String,
}

impl HookConfig {
    /// The URL Commerce should call: the Ingress URL, else the in-cluster one.
    pub fn for_resource(cwh: &CommerceWebhook) -> Self {
        let status = cwh.status.as_ref();
        let url = status
            .and_then(|s| s.external_url.clone())
            .or_else(|| cwh.external_url())
            .or_else(|| status.and_then(|s| s.url.clone()))
            .unwrap_or_else(|| cwh.cluster_url());
        HookConfig {
            url,
            hook_name: cwh.name_any().replace('-', "_"),
        }
    }
}

pub fn webhooks_xml(cwh: &CommerceWebhook, hook: &HookConfig) -> String {
    let spec = &cwh.spec;
    let commerce = &spec.commerce;
    let fallback = commerce
        .fallback_error_message
        .as_deref()
        .map(|m| format!(" fallbackErrorMessage=\"{}\"", xml_escape(m)))
        .unwrap_or_default();
    let headers = if spec.auth_token.is_some() {
        format!(
            "                <headers>\n                    <header name=\"Authorization\">Bearer {TOKEN_PLACEHOLDER}</header>\n                </headers>\n"
        )
    } else {
        String::new()
    };
    let fields: String = FIELDS
        .iter()
        .map(|(name, source)| {
            format!("                    <field name=\"{name}\" source=\"{source}\"/>\n")
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?>
<config xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xsi:noNamespaceSchemaLocation="urn:magento:module:Magento_AdobeCommerceWebhooks:etc/webhooks.xsd">
    <method name="{event}" type="before">
        <hooks>
            <batch name="{name}">
            <hook name="{name}" url="{url}" method="POST" timeout="{timeout}" softTimeout="{soft}" required="{required}"{fallback}>
{headers}                <fields>
{fields}                </fields>
            </hook>
            </batch>
        </hooks>
    </method>
</config>
"#,
        event = spec.action.commerce_event(),
        name = hook.hook_name,
        url = xml_escape(&hook.url),
        timeout = commerce.timeout_ms,
        soft = commerce.soft_timeout_ms,
        required = commerce.required,
    )
}

/// The body of `POST /V1/webhooks/subscribe` (Commerce REST API).
pub fn rest_subscription(cwh: &CommerceWebhook, hook: &HookConfig) -> serde_json::Value {
    let spec = &cwh.spec;
    let commerce = &spec.commerce;
    let mut webhook = json!({
        "webhook_method": spec.action.commerce_event(),
        "webhook_type": "before",
        "batch_name": hook.hook_name,
        "hook_name": hook.hook_name,
        "url": hook.url,
        "method": "POST",
        "timeout": commerce.timeout_ms,
        "soft_timeout": commerce.soft_timeout_ms,
        "required": commerce.required,
        "fields": FIELDS.iter().map(|(name, source)| json!({"name": name, "source": source})).collect::<Vec<_>>(),
    });
    if let Some(message) = &commerce.fallback_error_message {
        webhook["fallback_error_message"] = json!(message);
    }
    if spec.auth_token.is_some() {
        webhook["headers"] =
            json!([{"name": "Authorization", "value": format!("Bearer {TOKEN_PLACEHOLDER}")}]);
    }
    json!({ "webhook": webhook })
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{CommerceWebhookSpec, KeyRef};

    fn resource(yaml: &str) -> CommerceWebhook {
        let spec: CommerceWebhookSpec = serde_yaml::from_str(yaml).unwrap();
        let mut cwh = CommerceWebhook::new("check-stock", spec);
        cwh.metadata.namespace = Some("shop".into());
        cwh
    }

    #[test]
    fn xml_carries_url_timeouts_required_fallback_and_auth_placeholder() {
        let mut cwh = resource(
            "commerce: {timeoutMs: 3000, softTimeoutMs: 800, required: false, fallbackErrorMessage: 'Out of \"stock\" & more'}\ningress: {host: shop.example.com, tlsSecretName: tls}",
        );
        cwh.spec.auth_token = Some(KeyRef {
            name: "s".into(),
            key: "k".into(),
        });
        let hook = HookConfig::for_resource(&cwh);
        assert_eq!(hook.url, "https://shop.example.com/webhook/check-stock");
        let xml = webhooks_xml(&cwh, &hook);
        for expected in [
            r#"<method name="observer.checkout_cart_product_add_before" type="before">"#,
            r#"url="https://shop.example.com/webhook/check-stock" method="POST" timeout="3000" softTimeout="800" required="false""#,
            r#"fallbackErrorMessage="Out of &quot;stock&quot; &amp; more""#,
            r#"<header name="Authorization">Bearer {env:COMMERCE_WEBHOOK_AUTH_TOKEN}</header>"#,
            r#"<field name="data.cart_id" source="data.cart_id"/>"#,
        ] {
            assert!(xml.contains(expected), "missing {expected} in\n{xml}");
        }
        let rest = rest_subscription(&cwh, &hook);
        assert_eq!(rest["webhook"]["timeout"], 3000);
        assert_eq!(rest["webhook"]["required"], false);
        assert_eq!(rest["webhook"]["hook_name"], "check_stock");
    }

    #[test]
    fn without_ingress_or_token_it_uses_the_cluster_url_and_no_header() {
        let cwh = resource("{}");
        let hook = HookConfig::for_resource(&cwh);
        assert_eq!(hook.url, "http://check-stock.shop.svc/webhook/check-stock");
        assert!(!webhooks_xml(&cwh, &hook).contains("<headers>"));
        assert!(
            rest_subscription(&cwh, &hook)["webhook"]
                .get("headers")
                .is_none()
        );
    }
}
