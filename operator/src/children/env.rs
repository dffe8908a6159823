//! The webhook container's environment, written in the webhook's own terms: every
//! name, type and default comes from `commerce_webhook::contract`, and a test feeds
//! the result to the webhook's parser.
//!
//! Order: what the operator derives from the spec, then the inputs as declared.
//! An input never sets a variable the webhook reads other than `LOG_LEVEL`
//! (`validation` refuses those before this runs).

use commerce_webhook::contract::{self, LogFormat, var};
use k8s_openapi::api::core::v1::{ConfigMapKeySelector, EnvVar, EnvVarSource, SecretKeySelector};

use crate::resource::{CommerceWebhook, InputSource, KeyRef};

/// The port the webhook listens on in its pod.
pub const CONTAINER_PORT: u16 = contract::DEFAULT_PORT;
/// Where the inventory ConfigMap key is mounted.
pub(super) const INVENTORY_DIR: &str = "/etc/commerce-webhook/inventory";
/// Where the back-office CA bundle key is mounted.
pub(super) const BACKOFFICE_CA_DIR: &str = "/etc/commerce-webhook/backoffice-ca";
/// Kubernetes removes the pod from Service endpoints asynchronously: keep serving
/// (not-ready) this long after SIGTERM.
const SHUTDOWN_DRAIN_MS: u32 = 5000;
/// The webhook's own deadline is never longer than this, so a slow back-office is
/// cut well before the shopper notices.
const MAX_REQUEST_DEADLINE_MS: u32 = 600;

/// The webhook's deadline: inside Commerce's hard timeout with room for the network,
/// and never more than `MAX_REQUEST_DEADLINE_MS`.
pub fn request_deadline_ms(timeout_ms: u32) -> u32 {
    (timeout_ms.saturating_mul(4) / 5).clamp(1, MAX_REQUEST_DEADLINE_MS)
}

/// The container environment of a validated resource.
pub fn env(cwh: &CommerceWebhook) -> Vec<EnvVar> {
    let spec = &cwh.spec;
    let mut env = vec![
        literal(var::PORT, CONTAINER_PORT.to_string()),
        literal(var::WEBHOOK_PATH, spec.path.clone()),
    ];
    let optional = [
        (var::LOG_FORMAT, Some(LogFormat::Json.as_str().to_owned())),
        (var::SHUTDOWN_DRAIN_MS, Some(SHUTDOWN_DRAIN_MS.to_string())),
        (
            var::REQUEST_DEADLINE_MS,
            Some(request_deadline_ms(spec.commerce.timeout_ms).to_string()),
        ),
        (
            var::FALLBACK_ERROR_MESSAGE,
            spec.commerce.fallback_error_message.clone(),
        ),
        (var::EXCEPTION_TYPE, spec.commerce.exception_type.clone()),
        (
            var::SHORTAGE_MESSAGE,
            spec.commerce.shortage_message.clone(),
        ),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            env.push(literal(name, value));
        }
    }
    for (limit, value) in spec.limits.set() {
        env.push(literal(limit.var, value.to_string()));
    }
    if let Some(stock) = &spec.stock {
        if let Some(inventory) = &stock.inventory {
            let key = &inventory.config_map_key_ref.key;
            env.push(literal(
                var::INVENTORY_FILE,
                format!("{INVENTORY_DIR}/{key}"),
            ));
        }
        if let Some(back_office) = &stock.back_office {
            env.push(literal(var::BACKOFFICE_URL, back_office.url.clone()));
            if let Some(key) = back_office.ca_bundle.as_ref().and_then(ca_bundle_key) {
                env.push(literal(
                    var::BACKOFFICE_CA_FILE,
                    format!("{BACKOFFICE_CA_DIR}/{key}"),
                ));
            }
            env.push(literal(
                var::BACKOFFICE_TIMEOUT_MS,
                back_office.timeout_ms.to_string(),
            ));
            env.push(literal(
                var::BACKOFFICE_ON_ERROR,
                back_office.on_error.as_str().to_owned(),
            ));
            if let Some(token) = &back_office.token {
                env.push(from_secret(var::BACKOFFICE_TOKEN, token));
            }
        }
    }
    if let Some(key) = &spec.signature_public_key {
        env.push(from_secret(var::COMMERCE_WEBHOOKS_PUBLIC_KEY, key));
    }
    if let Some(token) = &spec.auth_token {
        env.push(from_secret(var::WEBHOOK_AUTH_TOKEN, token));
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
    env
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

/// The key of the CA bundle's Secret or ConfigMap (the schema allows only one).
pub(super) fn ca_bundle_key(source: &InputSource) -> Option<&str> {
    source
        .secret_key_ref
        .as_ref()
        .or(source.config_map_key_ref.as_ref())
        .map(|r| r.key.as_str())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use commerce_webhook::contract::{Args, ExposeSecret, FailurePolicy, SecretString};

    use super::*;
    use crate::fixtures::webhook as resource;
    use crate::resource::Limits;

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
            stock:
              backOffice: {url: "https://erp.example/stock", onError: allow, token: {name: erp, key: token}}
            authToken: {name: hook-auth, key: token}
            commerce: {timeoutMs: 500}
            "#,
        );
        let env = env(&cwh);
        assert_eq!(
            names(&env),
            [
                "PORT",
                "WEBHOOK_PATH",
                "LOG_FORMAT",
                "SHUTDOWN_DRAIN_MS",
                "REQUEST_DEADLINE_MS",
                "BACKOFFICE_URL",
                "BACKOFFICE_TIMEOUT_MS",
                "BACKOFFICE_ON_ERROR",
                "BACKOFFICE_TOKEN",
                "WEBHOOK_AUTH_TOKEN",
                "LOG_LEVEL",
                "ERP_KEY",
            ]
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
    fn deadline_stays_inside_commerce_timeout() {
        assert_eq!(request_deadline_ms(2000), 600);
        assert_eq!(request_deadline_ms(500), 400);
        assert_eq!(request_deadline_ms(0), 1);
    }

    /// A CommerceWebhook with only `spec.limits.<field>: value`.
    fn with_limit(field: &str, value: i64) -> crate::resource::CommerceWebhook {
        resource(&format!("limits: {{{field}: {value}}}"))
    }

    /// Each limit, at both ends of the range the CRD accepts, reaches the pod as its
    /// variable and is accepted by the webhook's own parser; one below the CRD's
    /// minimum is refused by the webhook too, so the two ranges start together.
    /// A limit added to `spec.limits` is covered here without a change.
    #[test]
    fn every_limit_flows_to_a_variable_the_webhook_accepts_within_its_bounds() {
        assert!(!Limits::ALL.is_empty());
        for limit in Limits::ALL {
            assert!(
                var::ALL.contains(&limit.var),
                "{} is not the webhook's",
                limit.var
            );
            for value in [limit.min, limit.max] {
                let env = env(&with_limit(limit.field, i64::from(value)));
                let vars = resolve(&env);
                assert_eq!(
                    vars.get(limit.var).map(String::as_str),
                    Some(value.to_string().as_str()),
                    "{} -> {}",
                    limit.path,
                    limit.var
                );
                if let Err(error) = Args::try_from_env(vars) {
                    panic!("the webhook refuses {}={value}: {error}", limit.var);
                }
            }
            let below = i64::from(limit.min) - 1;
            let refused = Args::try_from_env([(limit.var, below.to_string())]);
            assert!(
                refused.is_err(),
                "the webhook accepts {}={below}, below the CRD's minimum of {}",
                limit.var,
                limit.min
            );
        }
        let unset = resolve(&env(&resource("{}")));
        for limit in Limits::ALL {
            assert!(
                !unset.contains_key(limit.var),
                "{} set by default",
                limit.var
            );
        }
        assert!(!unset.contains_key(var::SHORTAGE_MESSAGE));
    }

    #[test]
    fn limits_and_the_shortage_message_configure_the_webhook() {
        let cwh = resource(
            r#"
            limits: {maxConnections: 300, maxInFlight: 40, headerTimeoutMs: 2500, maxBodyBytes: 65536, maxCartLines: 200}
            commerce: {shortageMessage: "Only a few {sku} left"}
            "#,
        );
        cwh.spec.validate().unwrap();
        let args = Args::try_from_env(resolve(&env(&cwh))).unwrap();
        assert_eq!(
            (
                args.max_connections,
                args.max_in_flight,
                args.header_timeout_ms,
                args.max_body_bytes,
                args.max_cart_lines
            ),
            (300, 40, 2500, 65536, 200)
        );
        assert_eq!(args.shortage_message, "Only a few {sku} left");
    }

    /// The CRD's `spec.limits` is the table: the same field names and bounds.
    #[test]
    fn the_crd_schema_carries_each_limit_s_bounds() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::resource::CommerceWebhook::crd()).unwrap();
        let limits = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["limits"]["properties"];
        let mut fields: Vec<&String> = limits.as_object().unwrap().keys().collect();
        fields.sort();
        let mut listed: Vec<&str> = Limits::ALL.iter().map(|l| l.field).collect();
        listed.sort();
        assert_eq!(fields, listed);
        for limit in Limits::ALL {
            let bound = |key: &str| limits[limit.field][key].as_f64();
            assert_eq!(
                bound("minimum"),
                Some(f64::from(limit.min)),
                "{}",
                limit.field
            );
            assert_eq!(
                bound("maximum"),
                Some(f64::from(limit.max)),
                "{}",
                limit.field
            );
        }
    }

    /// What the kubelet would hand the container: each variable's value, with
    /// Secret and ConfigMap references resolved to `<name>/<key>`.
    fn resolve(env: &[EnvVar]) -> BTreeMap<String, String> {
        env.iter()
            .map(|var| {
                let value = match (&var.value, &var.value_from) {
                    (Some(value), _) => value.clone(),
                    (None, Some(source)) => {
                        let (name, key) = match (&source.secret_key_ref, &source.config_map_key_ref)
                        {
                            (Some(s), _) => (&s.name, &s.key),
                            (None, Some(c)) => (&c.name, &c.key),
                            (None, None) => panic!("{} has an empty source", var.name),
                        };
                        format!("{name}/{key}")
                    }
                    (None, None) => String::new(),
                };
                (var.name.clone(), value)
            })
            .collect()
    }

    /// The contract test: the environment the operator writes for a fully
    /// specified resource, parsed by the webhook's own parser, carries every value.
    /// Renaming a variable or changing a type on either side fails here.
    #[test]
    fn the_webhook_parses_every_value_the_operator_writes() {
        let cwh = resource(
            r#"
            path: /hooks/stock
            inputs:
              - {name: LOG_LEVEL, value: debug}
              - {name: ERP_REGION, valueFrom: {configMapKeyRef: {name: erp, key: region}}}
            stock:
              backOffice:
                url: "https://erp.example/stock"
                timeoutMs: 250
                onError: allow
                token: {name: erp, key: token}
                caBundle: {secretKeyRef: {name: erp, key: ca.pem}}
            signaturePublicKey: {name: commerce, key: public.pem}
            authToken: {name: hook, key: token}
            commerce:
              timeoutMs: 500
              fallbackErrorMessage: "Try again later"
              exceptionType: 'Magento\GraphQlInputException'
            "#,
        );
        cwh.spec.validate().unwrap();
        let env = env(&cwh);
        for var in &env {
            assert!(
                var::ALL.contains(&var.name.as_str()) || var.name == "ERP_REGION",
                "the operator writes {}, which the webhook does not read",
                var.name
            );
        }
        let args = Args::try_from_env(resolve(&env)).unwrap();
        assert_eq!(args.port, CONTAINER_PORT);
        assert_eq!(args.webhook_path, "/hooks/stock");
        assert_eq!(args.log_level, "debug");
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.shutdown_drain_ms, u64::from(SHUTDOWN_DRAIN_MS));
        assert_eq!(args.request_deadline_ms, 400);
        assert_eq!(args.fallback_error_message, "Try again later");
        assert_eq!(
            args.exception_type.as_deref(),
            Some("Magento\\GraphQlInputException")
        );
        assert_eq!(
            args.backoffice_url.as_ref().map(|u| u.as_str()),
            Some("https://erp.example/stock")
        );
        assert_eq!(args.backoffice_timeout_ms, 250);
        assert_eq!(
            args.backoffice_ca_file.as_deref(),
            Some(std::path::Path::new(
                "/etc/commerce-webhook/backoffice-ca/ca.pem"
            ))
        );
        assert_eq!(args.backoffice_on_error, FailurePolicy::Allow);
        let secret = |s: Option<&SecretString>| s.map(|s| s.expose_secret().to_owned());
        assert_eq!(
            secret(args.backoffice_token.as_ref()).as_deref(),
            Some("erp/token")
        );
        assert_eq!(
            secret(args.commerce_webhooks_public_key.as_ref()).as_deref(),
            Some("commerce/public.pem")
        );
        assert_eq!(
            secret(args.webhook_auth_token.as_ref()).as_deref(),
            Some("hook/token")
        );
        assert_eq!(args.inventory_file, None);

        let inventory =
            resource("stock: {inventory: {configMapKeyRef: {name: inv, key: stock.yaml}}}");
        let args = Args::try_from_env(resolve(&super::env(&inventory))).unwrap();
        assert_eq!(
            args.inventory_file.as_deref(),
            Some(std::path::Path::new(
                "/etc/commerce-webhook/inventory/stock.yaml"
            ))
        );
        assert_eq!(args.webhook_path, contract::DEFAULT_WEBHOOK_PATH);
        assert_eq!(args.backoffice_on_error, FailurePolicy::Deny);
        assert_eq!(args.log_level, "info", "the webhook's default applies");
    }
}
