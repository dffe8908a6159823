//! What the webhook answers when it cannot say "in stock" or "out of stock".

use std::fmt::{self, Display, Write};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use thiserror::Error;

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
    pub shortage_message: ShortageMessage,
}

/// The default shopper message for one short SKU. It tells the shopper how many
/// they can buy, and so tells anyone who can call the webhook the exact stock.
pub const DEFAULT_SHORTAGE_MESSAGE: &str =
    "Not enough stock for {sku} (requested {requested}, available {available})";

/// The shopper message for one short SKU, from a template where `{sku}`,
/// `{requested}` and `{available}` are replaced (each optional, so that a merchant
/// can keep stock levels to themselves) and `{{` / `}}` are literal braces. The
/// messages of several short SKUs are joined with `; `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortageMessage(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Sku,
    Requested,
    Available,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{0}}}: use {{sku}}, {{requested}} or {{available}} ({{{{ and }}}} for braces)"
    )]
    Unknown(String),
    #[error("unmatched '{0}': write {{{{ or }}}} for a literal brace")]
    Unmatched(char),
}

impl ShortageMessage {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.as_str().starts_with('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.as_str().starts_with('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = chars.as_str();
                    let name = rest.find('}').map(|end| &rest[..end]);
                    let piece = match name {
                        Some("sku") => Piece::Sku,
                        Some("requested") => Piece::Requested,
                        Some("available") => Piece::Available,
                        Some(other) => return Err(TemplateError::Unknown(other.to_owned())),
                        None => return Err(TemplateError::Unmatched('{')),
                    };
                    chars = rest[name.map_or(0, str::len) + 1..].chars();
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                    pieces.push(piece);
                }
                '}' => return Err(TemplateError::Unmatched('}')),
                c => text.push(c),
            }
        }
        pieces.push(Piece::Text(text));
        pieces.retain(|piece| !matches!(piece, Piece::Text(text) if text.is_empty()));
        Ok(ShortageMessage(pieces))
    }

    /// Appends the message for one short SKU to `out`.
    pub fn render(
        &self,
        out: &mut String,
        sku: impl Display,
        requested: impl Display,
        available: impl Display,
    ) -> fmt::Result {
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Sku => write!(out, "{sku}")?,
                Piece::Requested => write!(out, "{requested}")?,
                Piece::Available => write!(out, "{available}")?,
            }
        }
        Ok(())
    }
}

impl Default for ShortageMessage {
    fn default() -> Self {
        Self::parse(DEFAULT_SHORTAGE_MESSAGE).expect("the default template is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str) -> String {
        let mut out = String::new();
        ShortageMessage::parse(template)
            .unwrap()
            .render(&mut out, "MS-02", 3, 2)
            .unwrap();
        out
    }

    #[test]
    fn the_shortage_template_fills_its_optional_placeholders() {
        assert_eq!(
            render(DEFAULT_SHORTAGE_MESSAGE),
            "Not enough stock for MS-02 (requested 3, available 2)"
        );
        assert_eq!(render("{sku} is sold out"), "MS-02 is sold out");
        assert_eq!(render("Only {{a few}} left"), "Only {a few} left");
        assert_eq!(render("Sold out"), "Sold out");
        assert_eq!(
            ShortageMessage::parse("{stock}"),
            Err(TemplateError::Unknown("stock".into()))
        );
        assert_eq!(
            ShortageMessage::parse("{sku"),
            Err(TemplateError::Unmatched('{'))
        );
        assert_eq!(
            ShortageMessage::parse("a } b"),
            Err(TemplateError::Unmatched('}'))
        );
    }

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
