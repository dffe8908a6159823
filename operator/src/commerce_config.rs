//! The Commerce side of a hook: what a merchant pastes into Commerce so that it
//! calls the webhook a `CommerceWebhook` runs (`webhooks.xml` on PaaS, the REST
//! subscription on SaaS), and the set-up steps around it (token, signature key).
//!
//! What is printed must work when pasted: the hook selects exactly the fields of the
//! chosen event that the webhook reads (`StockEvent::fields`, one list for both), the
//! URL is one Commerce can reach or the output says it is not, and secrets are never
//! printed, only placeholders and the command that reads them.

use std::io;
use std::path::{Path, PathBuf};

use commerce_webhook::events::StockEvent;
use kube::ResourceExt;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use serde::Deserialize as _;
use serde_json::json;
use thiserror::Error;

use crate::resource::CommerceWebhook;

/// The environment variable Commerce resolves in the PaaS header (`{env:...}`).
const TOKEN_ENV: &str = "COMMERCE_WEBHOOK_AUTH_TOKEN";

/// Where a module's hook declarations live on Commerce PaaS.
pub const WEBHOOKS_XML_PATH: &str = "app/code/<Vendor>/<Module>/etc/webhooks.xml";

/// Separates the printed sections; each section's first line says what it is.
pub const SECTION: &str = "# --- ";

#[derive(Debug, Error)]
pub enum CommerceConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: not YAML: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{path}: CommerceWebhook {name:?}: {source}")]
    Resource {
        path: PathBuf,
        name: String,
        source: serde_yaml::Error,
    },
    #[error("{path}: no CommerceWebhook{} in the file", .name.as_ref().map(|n| format!(" named {n:?}")).unwrap_or_default())]
    NotFound { path: PathBuf, name: Option<String> },
    #[error("{path}: several CommerceWebhooks ({names}): name the one to print")]
    Ambiguous { path: PathBuf, names: String },
    #[error("writing webhooks.xml: {0}")]
    Xml(#[from] io::Error),
}

/// Where the resource was read from, which decides how far its URL can be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read from the cluster: its status carries the URLs the operator published.
    Cluster,
    /// A manifest read offline (CI, GitOps): the URL is derived from the spec alone.
    Manifest(PathBuf),
}

/// Where Commerce should send its calls, and whether it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    pub url: String,
    /// False for an in-cluster URL, which a Commerce outside the cluster cannot reach.
    pub reachable: bool,
    pub hook_name: String,
    pub event: StockEvent,
    pub origin: Origin,
}

impl HookConfig {
    /// The URL Commerce should call: the Ingress URL (published in the status, else
    /// derived from `spec.ingress`), else the in-cluster one, flagged unreachable.
    pub fn for_resource(cwh: &CommerceWebhook, origin: Origin) -> Self {
        let status = cwh.status.as_ref();
        let external = status
            .and_then(|s| s.external_url.clone())
            .or_else(|| cwh.external_url());
        let (url, reachable) = match external {
            Some(url) => (url, true),
            None => (
                status
                    .and_then(|s| s.url.clone())
                    .unwrap_or_else(|| cwh.cluster_url()),
                false,
            ),
        };
        HookConfig {
            url,
            reachable,
            hook_name: cwh.name_any().replace('-', "_"),
            event: cwh.spec.commerce.event.into(),
            origin,
        }
    }
}

/// Reads the CommerceWebhook `name` (or the only one) from a YAML manifest, which may
/// hold several documents (a ConfigMap, Secrets, ...).
pub fn from_manifest(
    path: &Path,
    name: Option<&str>,
) -> Result<CommerceWebhook, CommerceConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| CommerceConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut found = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).map_err(|source| {
            CommerceConfigError::Yaml {
                path: path.to_owned(),
                source,
            }
        })?;
        if value.get("kind").and_then(serde_yaml::Value::as_str) != Some("CommerceWebhook") {
            continue;
        }
        let document_name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_some_and(|name| name != document_name) {
            continue;
        }
        let cwh = serde_yaml::from_value::<CommerceWebhook>(value).map_err(|source| {
            CommerceConfigError::Resource {
                path: path.to_owned(),
                name: document_name,
                source,
            }
        })?;
        found.push(cwh);
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CommerceConfigError::NotFound {
            path: path.to_owned(),
            name: name.map(str::to_owned),
        }),
        _ => Err(CommerceConfigError::Ambiguous {
            path: path.to_owned(),
            names: found
                .iter()
                .map(|c| c.name_any())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Everything `commerce-config` prints: a header saying which event and URL, then
/// one section per step, each starting with [`SECTION`].
pub fn render(cwh: &CommerceWebhook, hook: &HookConfig) -> Result<String, CommerceConfigError> {
    let namespace = cwh.namespace().unwrap_or_else(|| "default".to_owned());
    let mut out = format!(
        "# CommerceWebhook {namespace}/{}: event {}\n",
        cwh.name_any(),
        hook.event.method()
    );
    out += &format!("# Hook URL: {}\n", hook.url);
    if let Origin::Manifest(path) = &hook.origin {
        out += &format!(
            "#   assumed from {} alone (offline: the cluster was not asked; its status may publish another URL)\n",
            path.display()
        );
    }
    if !hook.reachable {
        out += "#   WARNING: this is an in-cluster URL, which Commerce cannot reach from outside the\n\
                #   cluster: set spec.ingress (host, tlsSecretName) and print this again, or replace\n\
                #   the URL with the one your own ingress or load balancer exposes.\n";
    }
    let exposure = crate::status::exposure(&cwh.spec);
    if !exposure.is_secured() {
        out += &comment(&format!("WARNING: {}.", exposure.message()));
    }
    if hook.event == StockEvent::CheckoutCartProductAddBefore {
        out += "#   NOTE: this event sends the quantity being added, not the cart's total, and a\n\
                #   configurable product's parent SKU (let through unchecked); set\n\
                #   spec.commerce.event: observer.sales_quote_item_save_before to check both.\n";
    }
    out += &format!(
        "\n{SECTION}PaaS: save as {WEBHOOKS_XML_PATH} (a module depending on Magento_AdobeCommerceWebhooks), then run bin/magento setup:upgrade\n"
    );
    out += &webhooks_xml(cwh, hook)?;
    out += &format!(
        "\n{SECTION}SaaS: body of POST /V1/webhooks/subscribe (Commerce REST API, admin token)\n"
    );
    let rest = rest_subscription(cwh, hook);
    out += &serde_json::to_string_pretty(&rest).unwrap_or_else(|_| rest.to_string());
    out += "\n";
    if let Some(token) = &cwh.spec.auth_token {
        out += &format!(
            "\n{SECTION}Authorization: the hook sends the token of Secret {namespace}/{name} key {key}\n\
             # PaaS: set {TOKEN_ENV} in the environment of Commerce (the header reads {{env:{TOKEN_ENV}}}):\n\
             #   export {TOKEN_ENV}=\"$(kubectl get secret -n {namespace} {name} -o jsonpath='{{.data.{key}}}' | base64 -d)\"\n\
             # SaaS: replace <token> in the REST body's Authorization header with that value.\n",
            name = token.name,
            key = token.key,
        );
    }
    if let Some(key) = &cwh.spec.signature_public_key {
        out += &format!(
            "\n{SECTION}Signature: the webhook refuses calls without a valid Commerce signature\n\
             # 1. Commerce Admin: Stores > Settings > Configuration > Adobe Services > Webhooks >\n\
             #    Digital Signature Configuration: Enabled = Yes, then Regenerate Key Pair.\n\
             # 2. Copy the public key shown there (-----BEGIN PUBLIC KEY-----...) into commerce-webhooks.pem.\n\
             # 3. kubectl create secret generic -n {namespace} {name} --from-file={key}=commerce-webhooks.pem \\\n\
             #      --dry-run=client -o yaml | kubectl apply -f -\n\
             # Regenerating the key pair in Commerce invalidates the old key: repeat steps 2-3.\n",
            name = key.name,
            key = key.key,
        );
    }
    Ok(out)
}

/// `text` as comment lines under the header, wrapped at about 90 columns.
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#  ");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 90 && line.len() > 3 {
            out += &line;
            out.push('\n');
            line = String::from("#  ");
        }
        line.push(' ');
        line += word;
    }
    out += &line;
    out.push('\n');
    out
}

/// The `webhooks.xml` of a module (PaaS), written with an XML writer so that every
/// value is escaped whatever the spec holds.
pub fn webhooks_xml(
    cwh: &CommerceWebhook,
    hook: &HookConfig,
) -> Result<String, CommerceConfigError> {
    let commerce = &cwh.spec.commerce;
    let timeout = commerce.timeout_ms.to_string();
    let soft_timeout = commerce.soft_timeout_ms.to_string();
    let required = commerce.required.to_string();
    let authorization = format!("Bearer {{env:{TOKEN_ENV}}}");
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 4);
    writer.write_event(Event::Decl(BytesDecl::new("1.0", None, None)))?;
    writer
        .create_element("config")
        .with_attribute(("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"))
        .with_attribute((
            "xsi:noNamespaceSchemaLocation",
            "urn:magento:module:Magento_AdobeCommerceWebhooks:etc/webhooks.xsd",
        ))
        .write_inner_content(|w| {
            w.create_element("method")
                .with_attribute(("name", hook.event.method()))
                .with_attribute(("type", "before"))
                .write_inner_content(|w| {
                    w.create_element("hooks").write_inner_content(|w| {
                        w.create_element("batch")
                            .with_attribute(("name", hook.hook_name.as_str()))
                            .write_inner_content(|w| {
                                let mut element = w
                                    .create_element("hook")
                                    .with_attribute(("name", hook.hook_name.as_str()))
                                    .with_attribute(("url", hook.url.as_str()))
                                    .with_attribute(("method", "POST"))
                                    .with_attribute(("timeout", timeout.as_str()))
                                    .with_attribute(("softTimeout", soft_timeout.as_str()))
                                    .with_attribute(("required", required.as_str()));
                                if let Some(message) = &commerce.fallback_error_message {
                                    element = element
                                        .with_attribute(("fallbackErrorMessage", message.as_str()));
                                }
                                element.write_inner_content(|w| {
                                    if cwh.spec.auth_token.is_some() {
                                        w.create_element("headers").write_inner_content(|w| {
                                            w.create_element("header")
                                                .with_attribute(("name", "Authorization"))
                                                .write_text_content(BytesText::new(
                                                    &authorization,
                                                ))?;
                                            Ok(())
                                        })?;
                                    }
                                    w.create_element("fields").write_inner_content(|w| {
                                        for field in hook.event.fields() {
                                            w.create_element("field")
                                                .with_attribute(("name", field.name))
                                                .with_attribute(("source", field.source))
                                                .write_empty()?;
                                        }
                                        Ok(())
                                    })?;
                                    Ok(())
                                })?;
                                Ok(())
                            })?;
                        Ok(())
                    })?;
                    Ok(())
                })?;
            Ok(())
        })?;
    let mut xml = String::from_utf8_lossy(&writer.into_inner()).into_owned();
    xml.push('\n');
    Ok(xml)
}

/// The body of `POST /V1/webhooks/subscribe` (Commerce REST API, SaaS and PaaS).
pub fn rest_subscription(cwh: &CommerceWebhook, hook: &HookConfig) -> serde_json::Value {
    let commerce = &cwh.spec.commerce;
    let fields: Vec<_> = hook
        .event
        .fields()
        .iter()
        .map(|field| json!({"name": field.name, "source": field.source}))
        .collect();
    let mut webhook = json!({
        "webhook_method": hook.event.method(),
        "webhook_type": "before",
        "batch_name": hook.hook_name,
        "hook_name": hook.hook_name,
        "url": hook.url,
        "method": "POST",
        "timeout": commerce.timeout_ms,
        "soft_timeout": commerce.soft_timeout_ms,
        "required": commerce.required,
        "fields": fields,
    });
    if let Some(message) = &commerce.fallback_error_message {
        webhook["fallback_error_message"] = json!(message);
    }
    if cwh.spec.auth_token.is_some() {
        webhook["headers"] = json!([{"name": "Authorization", "value": "Bearer <token>"}]);
    }
    json!({ "webhook": webhook })
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
    fn xml_carries_url_timeouts_required_fallback_fields_and_auth_placeholder() {
        let mut cwh = resource(
            "commerce: {timeoutMs: 3000, softTimeoutMs: 800, required: false, fallbackErrorMessage: 'Out of \"stock\" & <more>'}\ningress: {host: shop.example.com, tlsSecretName: tls}",
        );
        cwh.spec.auth_token = Some(KeyRef {
            name: "s".into(),
            key: "k".into(),
        });
        let hook = HookConfig::for_resource(&cwh, Origin::Cluster);
        assert_eq!(hook.url, "https://shop.example.com/webhook/check-stock");
        assert!(hook.reachable);
        let xml = webhooks_xml(&cwh, &hook).unwrap();
        for expected in [
            r#"<method name="observer.checkout_cart_product_add_before" type="before">"#,
            r#"url="https://shop.example.com/webhook/check-stock" method="POST" timeout="3000" softTimeout="800" required="false""#,
            r#"fallbackErrorMessage="Out of &quot;stock&quot; &amp; &lt;more&gt;""#,
            r#"<header name="Authorization">Bearer {env:COMMERCE_WEBHOOK_AUTH_TOKEN}</header>"#,
            r#"<field name="product.sku" source="data.product.sku"/>"#,
            r#"<field name="info.qty" source="data.info.qty"/>"#,
        ] {
            assert!(xml.contains(expected), "missing {expected} in\n{xml}");
        }
        assert!(!xml.contains("data.cart_id"), "{xml}");
        let rest = rest_subscription(&cwh, &hook);
        assert_eq!(rest["webhook"]["timeout"], 3000);
        assert_eq!(rest["webhook"]["required"], false);
        assert_eq!(rest["webhook"]["hook_name"], "check_stock");
        assert_eq!(rest["webhook"]["headers"][0]["value"], "Bearer <token>");
    }

    /// The starter kit's defaults (no auth, `available N`) are printed with a
    /// warning; a token through a plain-http Ingress too; a signed hook is not.
    #[test]
    fn an_open_or_clear_text_hook_is_printed_with_a_warning() {
        let render_of = |yaml: &str| {
            let cwh = resource(yaml);
            render(&cwh, &HookConfig::for_resource(&cwh, Origin::Cluster)).unwrap()
        };
        let open = render_of("ingress: {host: shop.example.com, tlsSecretName: tls}");
        let header: String = open
            .lines()
            .take_while(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        for expected in [
            "WARNING: neither spec.signaturePublicKey nor spec.authToken",
            "exact stock",
        ] {
            assert!(header.contains(expected), "missing {expected} in\n{header}");
        }
        let clear = render_of("authToken: {name: t, key: k}\ningress: {host: shop.example.com}");
        assert!(
            clear.contains(
                "WARNING: spec.authToken is sent as a bearer header through an Ingress without TLS"
            ),
            "{clear}"
        );
        let signed =
            render_of("signaturePublicKey: {name: c, key: pem}\ningress: {host: shop.example.com}");
        assert!(!signed.contains("WARNING"), "{signed}");
        assert!(header.lines().all(|line| line.len() <= 100), "{header}");
    }

    /// quick-xml before 0.41 has RUSTSEC-2026-0194 (quadratic duplicate-attribute
    /// check) and RUSTSEC-2026-0195 (unbounded namespace declarations): the
    /// workspace's lock file holds no such version.
    #[test]
    fn no_quick_xml_with_known_advisories_is_locked() {
        let lock = include_str!("../../Cargo.lock");
        let versions: Vec<(u64, u64)> = lock
            .split("[[package]]")
            .filter(|package| package.contains("name = \"quick-xml\""))
            .filter_map(|package| {
                let version = package.split("version = \"").nth(1)?.split('"').next()?;
                let mut parts = version.split('.').map(|part| part.parse::<u64>().ok());
                Some((parts.next()??, parts.next()??))
            })
            .collect();
        assert!(!versions.is_empty(), "quick-xml is not in Cargo.lock");
        for version in versions {
            assert!(
                version >= (0, 41),
                "quick-xml {version:?} has known advisories"
            );
        }
    }

    #[test]
    fn the_chosen_event_decides_method_and_fields() {
        let cwh = resource("commerce: {event: observer.sales_quote_item_save_before}");
        let hook = HookConfig::for_resource(&cwh, Origin::Cluster);
        let rest = rest_subscription(&cwh, &hook);
        assert_eq!(
            rest["webhook"]["webhook_method"],
            "observer.sales_quote_item_save_before"
        );
        assert_eq!(
            rest["webhook"]["fields"],
            json!([
                {"name": "item.sku", "source": "data.item.sku"},
                {"name": "item.qty", "source": "data.item.qty"},
                {"name": "item.quote_id", "source": "data.item.quote_id"},
            ])
        );
        let output = render(&cwh, &hook).unwrap();
        assert!(!output.contains("NOTE: this event sends the quantity being added"));
    }

    #[test]
    fn without_ingress_it_says_commerce_cannot_reach_the_url() {
        let cwh = resource("{}");
        let hook = HookConfig::for_resource(&cwh, Origin::Manifest("check-stock.yaml".into()));
        assert_eq!(hook.url, "http://check-stock.shop.svc/webhook/check-stock");
        assert!(!hook.reachable);
        let output = render(&cwh, &hook).unwrap();
        for expected in [
            "# Hook URL: http://check-stock.shop.svc/webhook/check-stock",
            "assumed from check-stock.yaml alone (offline",
            "Commerce cannot reach",
        ] {
            assert!(output.contains(expected), "missing {expected} in\n{output}");
        }
        assert!(!output.contains("<headers>") && !output.contains("Signature"));
    }

    #[test]
    fn token_and_signature_steps_name_their_secrets() {
        let cwh = resource(
            "authToken: {name: hook-token, key: token}\nsignaturePublicKey: {name: commerce-key, key: pem}",
        );
        let output = render(&cwh, &HookConfig::for_resource(&cwh, Origin::Cluster)).unwrap();
        for expected in [
            "kubectl get secret -n shop hook-token -o jsonpath='{.data.token}'",
            "Regenerate Key Pair",
            "kubectl create secret generic -n shop commerce-key --from-file=pem=commerce-webhooks.pem",
        ] {
            assert!(output.contains(expected), "missing {expected} in\n{output}");
        }
    }

    #[test]
    fn the_crd_accepts_the_two_events_and_nothing_else() {
        let crd = crate::resource::crd_yaml().unwrap();
        assert!(crd.contains(
            "enum:\n                    - observer.checkout_cart_product_add_before\n                    - observer.sales_quote_item_save_before\n"
        ), "{crd}");
        let other = serde_yaml::from_str::<CommerceWebhookSpec>(
            "commerce: {event: observer.sales_order_place_before}",
        );
        assert!(other.is_err());
        assert_eq!(
            resource("{}").spec.commerce.event,
            crate::resource::CommerceEvent::CheckoutCartProductAddBefore
        );
    }

    #[test]
    fn manifests_are_read_offline_and_must_name_one_resource() {
        let dir = std::env::temp_dir().join(format!("commerce-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("two.yaml");
        let document = |name: &str| {
            format!(
                "apiVersion: integration.commerce.dev/v1alpha1\nkind: CommerceWebhook\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{}}\n"
            )
        };
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{}---\n{}",
                document("a"),
                document("b")
            ),
        )
        .unwrap();
        assert_eq!(from_manifest(&path, Some("b")).unwrap().name_any(), "b");
        assert!(matches!(
            from_manifest(&path, None),
            Err(CommerceConfigError::Ambiguous { .. })
        ));
        assert!(matches!(
            from_manifest(&path, Some("c")),
            Err(CommerceConfigError::NotFound { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
