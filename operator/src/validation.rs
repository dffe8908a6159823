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

use crate::resource::CommerceWebhookSpec;

/// Variables the operator derives from typed spec fields, with the field that sets
/// each: an input may not set them.
pub const MANAGED: [(&str, &str); 9] = [
    (var::PORT, "the operator"),
    (var::WEBHOOK_PATH, "spec.path"),
    (var::INVENTORY_FILE, "spec.stock.inventory"),
    (var::BACKOFFICE_URL, "spec.stock.backOffice.url"),
    (
        var::BACKOFFICE_TIMEOUT_MS,
        "spec.stock.backOffice.timeoutMs",
    ),
    (var::BACKOFFICE_ON_ERROR, "spec.stock.backOffice.onError"),
    (var::BACKOFFICE_TOKEN, "spec.stock.backOffice.token"),
    (var::COMMERCE_WEBHOOKS_PUBLIC_KEY, "spec.signaturePublicKey"),
    (var::WEBHOOK_AUTH_TOKEN, "spec.authToken"),
];

/// One thing the schema accepts but that cannot be deployed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("input {name} is managed by {owner}; set it there instead of in spec.inputs")]
    ManagedInput { name: String, owner: &'static str },
    #[error("input {0} has both value and valueFrom; give one")]
    AmbiguousInput(String),
    #[error("input {0} is listed twice")]
    DuplicateInput(String),
    #[error("spec.path {path}: {reason}")]
    Path { path: String, reason: String },
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
            if let Some((_, owner)) = MANAGED.iter().find(|(name, _)| *name == input.name) {
                errors.push(SpecError::ManagedInput {
                    name: input.name.clone(),
                    owner,
                });
            }
            if input.value.is_some() && input.value_from.is_some() {
                errors.push(SpecError::AmbiguousInput(input.name.clone()));
            }
            if !seen.insert(input.name.as_str()) {
                errors.push(SpecError::DuplicateInput(input.name.clone()));
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
    fn the_webhook_s_own_paths_are_refused() {
        for path in contract::RESERVED_PATHS {
            let spec = spec(&format!("path: {path}"));
            assert!(spec.validate().is_err(), "{path} must be refused");
        }
        assert!(spec("path: /hooks/stock").validate().is_ok());
    }
}
