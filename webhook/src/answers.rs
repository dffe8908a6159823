//! What the webhook answers when it cannot say "in stock" or "out of stock".

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// What to answer when the stock source fails or the deadline passes. Part of the
/// contract: the operator's `spec.stock.backOffice.onError` is this type.
//
// Variant help is given with `value(help)` rather than doc comments: doc comments
// would also change the CRD schema the operator derives from this type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    #[default]
    #[value(help = "Block the add-to-cart with the fallback message (safe for scarce stock)")]
    Deny,
    #[value(help = "Let the add-to-cart through and log a warning (safe for revenue)")]
    Allow,
}

impl FailurePolicy {
    /// The value as the webhook's variable spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Deny => "deny",
            FailurePolicy::Allow => "allow",
        }
    }
}

/// What the answers say, shared by every request.
#[derive(Debug, Clone)]
pub struct Answers {
    pub on_error: FailurePolicy,
    pub fallback_message: String,
    pub exception_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spelling_is_the_parser_s() {
        for policy in FailurePolicy::value_variants() {
            let name = policy.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(name.as_deref(), Some(policy.as_str()));
            assert_eq!(
                FailurePolicy::from_str(policy.as_str(), false).as_ref(),
                Ok(policy)
            );
        }
    }
}
