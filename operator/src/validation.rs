//! What the CRD schema cannot say about a spec, checked once per reconcile.
//!
//! [`CommerceWebhookSpec::validate`] reports every problem at once, so a user fixes
//! a resource in one edit rather than one condition message at a time. The rules
//! come from the webhook's contract: the variables the operator derives from typed
//! fields, and the paths the webhook keeps for itself.

use std::collections::HashSet;
use std::fmt;

use commerce_webhook::contract::{self, var};
use thiserror::Error;

use commerce_webhook::answers::{ShortageMessage, TemplateError};

use crate::resource::{CommerceWebhookSpec, Limits};

/// Where each variable the webhook reads is set instead of in `spec.inputs`.
/// An input that set one would override what the operator derived from the spec
/// (or its security: a token from any Secret, another port, an exception type
/// echoed to every caller), so every variable of `var::ALL` is reserved except
/// `LOG_LEVEL`; one missing here is still reserved, for "the operator".
const RESERVED: [(&str, &str); 18] = [
    (var::PORT, "the operator"),
    (var::BIND_ADDRESS, "the operator"),
    (var::WEBHOOK_PATH, "spec.path"),
    (var::LOG_FORMAT, "the operator"),
    (var::INVENTORY_FILE, "spec.stock.inventory"),
    (var::INVENTORY_RELOAD_MS, "the operator"),
    (var::BACKOFFICE_URL, "spec.stock.backOffice.url"),
    (var::BACKOFFICE_TOKEN, "spec.stock.backOffice.token"),
    (
        var::BACKOFFICE_TIMEOUT_MS,
        "spec.stock.backOffice.timeoutMs",
    ),
    (var::BACKOFFICE_ON_ERROR, "spec.stock.backOffice.onError"),
    (
        var::FALLBACK_ERROR_MESSAGE,
        "spec.commerce.fallbackErrorMessage",
    ),
    (var::EXCEPTION_TYPE, "spec.commerce.exceptionType"),
    (var::SHORTAGE_MESSAGE, "spec.commerce.shortageMessage"),
    (var::REQUEST_DEADLINE_MS, "spec.commerce.timeoutMs"),
    (var::COMMERCE_WEBHOOKS_PUBLIC_KEY, "spec.signaturePublicKey"),
    (var::WEBHOOK_AUTH_TOKEN, "spec.authToken"),
    (var::SHUTDOWN_DRAIN_MS, "the operator"),
    (var::SHUTDOWN_TIMEOUT_MS, "the operator"),
];

/// The one webhook variable an input may set: it only changes how much is logged.
const ALLOWED: &str = var::LOG_LEVEL;

/// The spec field (or "the operator") that sets `name`, if the webhook reads it.
fn reserved_for(name: &str) -> Option<&'static str> {
    if name == ALLOWED || !var::ALL.contains(&name) {
        return None;
    }
    let owner = RESERVED
        .iter()
        .copied()
        .chain(Limits::ALL.iter().map(|limit| (limit.var, limit.path)))
        .find(|(var, _)| *var == name);
    Some(owner.map_or("the operator", |(_, owner)| owner))
}

/// What setting `name` would hand to whoever writes the input (or the Secret it
/// comes from), for variables the process reads outside the webhook's own
/// settings: the dynamic loader and libc (`LD_PRELOAD` runs any code), the proxy
/// variables (every back-office call, token included, through someone else's
/// host), name resolution and trusted CAs. Compared in upper case: libraries
/// read `https_proxy` too.
fn unsafe_family(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("LD_") || upper.starts_with("MALLOC_") || upper == "GLIBC_TUNABLES" {
        Some("how the process is loaded")
    } else if upper.ends_with("_PROXY") {
        Some("where outgoing calls go (the webhook does not use a proxy)")
    } else if ["HOSTALIASES", "RES_OPTIONS", "LOCALDOMAIN"].contains(&upper.as_str()) {
        Some("how host names resolve")
    } else if ["SSL_CERT_FILE", "SSL_CERT_DIR"].contains(&upper.as_str()) {
        Some("which certificate authorities are trusted")
    } else if upper == "PATH" {
        Some("which programs run")
    } else {
        None
    }
}

/// One thing the schema accepts but that cannot be deployed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("input {name} is managed by {owner}; set it there instead of in spec.inputs")]
    ManagedInput { name: String, owner: &'static str },
    #[error(
        "input {name} is refused: it would change {effect}; no spec field sets it, \
         use another name for a custom parameter"
    )]
    UnsafeInput { name: String, effect: &'static str },
    #[error("input {0} has both value and valueFrom; give one")]
    AmbiguousInput(String),
    #[error("input {0} is listed twice")]
    DuplicateInput(String),
    #[error("spec.path {path}: {reason}")]
    Path { path: String, reason: String },
    #[error(
        "spec.workload.replicas and spec.workload.autoscaling are exclusive: the HPA sets the replicas"
    )]
    ReplicasAndAutoscaling,
    #[error("spec.workload.autoscaling.minReplicas {min} is above maxReplicas {max}")]
    AutoscalingRange { min: i32, max: i32 },
    #[error("spec.commerce.shortageMessage: {0}")]
    ShortageMessage(TemplateError),
    #[error("{path} {value} is outside {min}..={max}")]
    LimitOutOfRange {
        path: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
}

/// Every problem of a spec, in the order of its fields.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidSpec(pub Vec<SpecError>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidSpec {}

impl CommerceWebhookSpec {
    /// Checks what the schema cannot; `Ok` means the children can be built.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        let mut errors = Vec::new();
        if let Err(reason) = contract::check_webhook_path(&self.path) {
            errors.push(SpecError::Path {
                path: self.path.clone(),
                reason,
            });
        }
        let mut seen = HashSet::new();
        for input in &self.inputs {
            if let Some(owner) = reserved_for(&input.name) {
                errors.push(SpecError::ManagedInput {
                    name: input.name.clone(),
                    owner,
                });
            } else if let Some(effect) = unsafe_family(&input.name) {
                errors.push(SpecError::UnsafeInput {
                    name: input.name.clone(),
                    effect,
                });
            }
            if input.value.is_some() && input.value_from.is_some() {
                errors.push(SpecError::AmbiguousInput(input.name.clone()));
            }
            if !seen.insert(input.name.as_str()) {
                errors.push(SpecError::DuplicateInput(input.name.clone()));
            }
        }
        if let Some(autoscaling) = &self.workload.autoscaling {
            if self.workload.replicas.is_some() {
                errors.push(SpecError::ReplicasAndAutoscaling);
            }
            let min = autoscaling.min_replicas(self.commerce.required);
            if min > autoscaling.max_replicas {
                errors.push(SpecError::AutoscalingRange {
                    min,
                    max: autoscaling.max_replicas,
                });
            }
        }
        if let Some(Err(error)) = self
            .commerce
            .shortage_message
            .as_deref()
            .map(ShortageMessage::parse)
        {
            errors.push(SpecError::ShortageMessage(error));
        }
        // The CRD refuses these already; a resource read from a manifest offline
        // (`commerce-config -f`) has not been through it.
        for (limit, value) in self.limits.set() {
            if !(limit.min..=limit.max).contains(&value) {
                errors.push(SpecError::LimitOutOfRange {
                    path: limit.path,
                    value,
                    min: limit.min,
                    max: limit.max,
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> CommerceWebhookSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn inputs_may_not_set_managed_variables_or_repeat() {
        let managed = spec("inputs: [{name: BACKOFFICE_URL, value: 'http://x'}]");
        assert_eq!(
            managed.validate().unwrap_err().to_string(),
            "input BACKOFFICE_URL is managed by spec.stock.backOffice.url; set it there instead of in spec.inputs"
        );
        let both =
            spec("inputs: [{name: A, value: x, valueFrom: {secretKeyRef: {name: s, key: k}}}]");
        assert_eq!(
            both.validate().unwrap_err(),
            InvalidSpec(vec![SpecError::AmbiguousInput("A".into())])
        );
        assert!(
            spec("inputs: [{name: LOG_LEVEL, value: debug}]")
                .validate()
                .is_ok()
        );
    }

    /// Every variable the webhook reads is reserved, LOG_LEVEL aside: a variable
    /// added to the contract is refused as an input without a change here.
    #[test]
    fn every_webhook_variable_but_log_level_is_reserved() {
        for name in var::ALL {
            let result = spec(&format!("inputs: [{{name: {name}, value: x}}]")).validate();
            if name == var::LOG_LEVEL {
                assert!(result.is_ok(), "{name}");
            } else {
                assert!(
                    matches!(&result, Err(InvalidSpec(e)) if matches!(&e[..], [SpecError::ManagedInput { .. }])),
                    "{name}: {result:?}"
                );
            }
        }
        for (name, _) in RESERVED {
            assert!(var::ALL.contains(&name), "{name} is not the webhook's");
        }
        assert_eq!(
            spec("inputs: [{name: EXCEPTION_TYPE, valueFrom: {secretKeyRef: {name: s, key: k}}}]")
                .validate()
                .unwrap_err()
                .to_string(),
            "input EXCEPTION_TYPE is managed by spec.commerce.exceptionType; \
             set it there instead of in spec.inputs"
        );
    }

    #[test]
    fn loader_proxy_resolver_and_trust_variables_are_refused() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "GLIBC_TUNABLES",
            "MALLOC_ARENA_MAX",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "https_proxy",
            "NO_PROXY",
            "ALL_PROXY",
            "HOSTALIASES",
            "SSL_CERT_FILE",
            "PATH",
        ] {
            let result = spec(&format!("inputs: [{{name: {name}, value: x}}]")).validate();
            assert!(
                matches!(&result, Err(InvalidSpec(e)) if matches!(&e[..], [SpecError::UnsafeInput { .. }])),
                "{name}: {result:?}"
            );
        }
        assert_eq!(
            spec("inputs: [{name: HTTPS_PROXY, value: 'http://evil:3128'}]")
                .validate()
                .unwrap_err()
                .to_string(),
            "input HTTPS_PROXY is refused: it would change where outgoing calls go \
             (the webhook does not use a proxy); no spec field sets it, use another name \
             for a custom parameter"
        );
        for custom in ["HERE_YOUR_PARAM", "ERP_REGION", "PROXY_MODE", "CLOUD_PATH"] {
            let yaml = format!("inputs: [{{name: {custom}, value: x}}]");
            assert!(spec(&yaml).validate().is_ok(), "{custom}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let bad = spec(
            r#"
            path: /metrics
            inputs:
              - {name: PORT, value: "1"}
              - {name: A, value: x}
              - {name: A, value: y, valueFrom: {configMapKeyRef: {name: c, key: k}}}
            "#,
        );
        assert_eq!(
            bad.validate().unwrap_err(),
            InvalidSpec(vec![
                SpecError::Path {
                    path: "/metrics".into(),
                    reason: "/metrics is reserved for the service itself".into()
                },
                SpecError::ManagedInput {
                    name: "PORT".into(),
                    owner: "the operator"
                },
                SpecError::AmbiguousInput("A".into()),
                SpecError::DuplicateInput("A".into()),
            ])
        );
    }

    #[test]
    fn autoscaling_excludes_replicas_and_needs_a_range() {
        assert_eq!(
            spec("workload: {replicas: 2, autoscaling: {maxReplicas: 4}}").validate(),
            Err(InvalidSpec(vec![SpecError::ReplicasAndAutoscaling]))
        );
        assert_eq!(
            spec("workload: {autoscaling: {maxReplicas: 1}}").validate(),
            Err(InvalidSpec(vec![SpecError::AutoscalingRange {
                min: 2,
                max: 1
            }])),
            "a required hook's minimum defaults to 2"
        );
        assert!(
            spec("workload: {autoscaling: {maxReplicas: 1}}\ncommerce: {required: false}")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn limits_and_the_shortage_message_are_fields_not_inputs() {
        for limit in Limits::ALL {
            let result = spec(&format!("inputs: [{{name: {}, value: '1'}}]", limit.var))
                .validate()
                .unwrap_err()
                .to_string();
            assert_eq!(
                result,
                format!(
                    "input {} is managed by {}; set it there instead of in spec.inputs",
                    limit.var, limit.path
                )
            );
        }
        let template = spec("commerce: {shortageMessage: 'only {stock} left'}").validate();
        assert!(
            matches!(&template, Err(InvalidSpec(e)) if matches!(&e[..], [SpecError::ShortageMessage(TemplateError::Unknown(name))] if name == "stock")),
            "{template:?}"
        );
        assert!(
            spec("commerce: {shortageMessage: 'Not enough {sku}'}")
                .validate()
                .is_ok()
        );
        assert_eq!(
            spec("limits: {maxCartLines: 5001, maxInFlight: 0}").validate(),
            Err(InvalidSpec(vec![
                SpecError::LimitOutOfRange {
                    path: "spec.limits.maxInFlight",
                    value: 0,
                    min: 1,
                    max: 65536
                },
                SpecError::LimitOutOfRange {
                    path: "spec.limits.maxCartLines",
                    value: 5001,
                    min: 1,
                    max: 5000
                },
            ]))
        );
    }

    #[test]
    fn the_webhook_s_own_paths_are_refused() {
        for path in contract::RESERVED_PATHS {
            let spec = spec(&format!("path: {path}"));
            assert!(spec.validate().is_err(), "{path} must be refused");
        }
        assert!(spec("path: /hooks/stock").validate().is_ok());
    }
}
