//! Reading and validating the check-stock payload Commerce sends.
//!
//! Commerce is PHP: numbers may arrive as strings (`"qty": "2"`) and ids as either.
//! Validation is done on a `serde_json::Value` rather than by derive so that every
//! problem can be named precisely (which item, which field, what was sent) and so
//! that the missing-parameter message matches the starter kit's action exactly.

use serde_json::Value;
use thiserror::Error;

/// The parameters the reference action requires, in the order it reports them.
const REQUIRED: [&str; 2] = ["data.cart_id", "data.items"];

/// A validated check-stock request.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckStockRequest {
    pub cart_id: String,
    pub items: Vec<RequestedItem>,
}

/// One cart line Commerce asks about.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedItem {
    pub sku: String,
    pub qty: f64,
}

/// Why a payload is not a check-stock request; the `Display` text is what the shopper
/// (and the merchant's logs) see, so it names the offending parameter.
#[derive(Debug, Error, PartialEq)]
pub enum PayloadError {
    /// Same wording as the starter kit's validator: `missing parameter(s) 'a,b'`.
    #[error("missing parameter(s) '{}'", .0.join(","))]
    Missing(Vec<&'static str>),
    #[error("invalid parameter 'data.cart_id': expected a string or a number, got {0}")]
    CartId(String),
    #[error("invalid parameter 'data.items': expected a non-empty array of items, got {0}")]
    Items(String),
    #[error("invalid item data.items[{index}]{item}: {problem}")]
    Item {
        index: usize,
        /// ` (item_id 7)` when the item has an id, to find it in the cart.
        item: String,
        problem: String,
    },
}

/// Validates a parsed JSON payload into a [`CheckStockRequest`].
pub fn parse_check_stock(payload: &Value) -> Result<CheckStockRequest, PayloadError> {
    let data = payload.get("data");
    let field = |name: &str| data.and_then(|d| d.get(name)).filter(|v| !is_blank(v));
    let (cart_id, items) = (field("cart_id"), field("items"));
    let missing: Vec<&'static str> = REQUIRED
        .iter()
        .zip([cart_id, items])
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    let (Some(cart_id), Some(items)) = (cart_id, items) else {
        return Err(PayloadError::Missing(missing));
    };

    let cart_id = match cart_id {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(PayloadError::CartId(describe(other))),
    };
    let items = match items {
        Value::Array(list) if !list.is_empty() => list,
        other => return Err(PayloadError::Items(describe(other))),
    };
    let items = items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_item(index, item))
        .collect::<Result<_, _>>()?;
    Ok(CheckStockRequest { cart_id, items })
}

/// The reference validator treats absent and empty-string values as missing; so
/// does this one, and `null` too (PHP serialises unset values as `null`).
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn parse_item(index: usize, item: &Value) -> Result<RequestedItem, PayloadError> {
    let fail = |problem: String| PayloadError::Item {
        index,
        item: item_label(item),
        problem,
    };
    if !item.is_object() {
        return Err(fail(format!("expected an object, got {}", describe(item))));
    }
    let sku = match item.get("sku") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) => return Err(fail("'sku' is missing".into())),
        Some(other) => {
            return Err(fail(format!(
                "'sku' must be a non-empty string, got {}",
                describe(other)
            )));
        }
    };
    let qty = match item.get("qty") {
        None | Some(Value::Null) => return Err(fail("'qty' is missing".into())),
        Some(value) => positive_number(value).ok_or_else(|| {
            fail(format!(
                "'qty' must be a positive number, got {}",
                describe(value)
            ))
        })?,
    };
    Ok(RequestedItem { sku, qty })
}

/// A positive finite number, given as a JSON number or a numeric string.
fn positive_number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (n.is_finite() && n > 0.0).then_some(n)
}

fn item_label(item: &Value) -> String {
    match item.get("item_id") {
        Some(Value::String(id)) if !id.is_empty() => format!(" (item_id {id})"),
        Some(Value::Number(id)) => format!(" (item_id {id})"),
        _ => String::new(),
    }
}

/// A short, bounded rendering of what was sent, for error messages.
fn describe(value: &Value) -> String {
    const MAX: usize = 40;
    let text = match value {
        Value::Array(list) if list.is_empty() => "an empty array".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(payload: Value) -> String {
        parse_check_stock(&payload).unwrap_err().to_string()
    }

    #[test]
    fn reports_missing_parameters_like_the_reference_action() {
        assert_eq!(
            message(json!({})),
            "missing parameter(s) 'data.cart_id,data.items'"
        );
        assert_eq!(
            message(json!({"data": {"items": [1]}})),
            "missing parameter(s) 'data.cart_id'"
        );
        assert_eq!(
            message(json!({"data": {"cart_id": "1"}})),
            "missing parameter(s) 'data.items'"
        );
        assert_eq!(
            message(json!({"data": {"cart_id": "", "items": null}})),
            "missing parameter(s) 'data.cart_id,data.items'"
        );
        assert_eq!(
            message(json!([1, 2])),
            "missing parameter(s) 'data.cart_id,data.items'"
        );
    }

    #[test]
    fn accepts_numbers_sent_as_strings() {
        let request = parse_check_stock(&json!({"data": {"cart_id": 42, "items": [
            {"item_id": 1, "sku": "MS-01", "qty": "2"},
            {"item_id": "2", "sku": "MS-02", "qty": 1.5}
        ]}}))
        .unwrap();
        assert_eq!(request.cart_id, "42");
        assert_eq!(
            request.items,
            vec![
                RequestedItem {
                    sku: "MS-01".into(),
                    qty: 2.0
                },
                RequestedItem {
                    sku: "MS-02".into(),
                    qty: 1.5
                }
            ]
        );
    }

    #[test]
    fn names_the_offending_item_and_field() {
        let items = |items: Value| json!({"data": {"cart_id": "c", "items": items}});
        assert_eq!(
            message(items(
                json!([{"item_id": 1, "sku": "A", "qty": 1}, {"item_id": 7, "sku": "B", "qty": "-1"}])
            )),
            "invalid item data.items[1] (item_id 7): 'qty' must be a positive number, got \"-1\""
        );
        assert_eq!(
            message(items(json!([{"sku": 5, "qty": 1}]))),
            "invalid item data.items[0]: 'sku' must be a non-empty string, got 5"
        );
        assert_eq!(
            message(items(json!([{"qty": 1}]))),
            "invalid item data.items[0]: 'sku' is missing"
        );
        assert_eq!(
            message(items(json!([{"sku": "A"}]))),
            "invalid item data.items[0]: 'qty' is missing"
        );
        assert_eq!(
            message(items(json!([{"sku": "A", "qty": "two"}]))),
            "invalid item data.items[0]: 'qty' must be a positive number, got \"two\""
        );
        assert_eq!(
            message(items(json!(["A"]))),
            "invalid item data.items[0]: expected an object, got \"A\""
        );
    }

    #[test]
    fn rejects_wrong_container_types() {
        assert_eq!(
            message(json!({"data": {"cart_id": "c", "items": []}})),
            "invalid parameter 'data.items': expected a non-empty array of items, got an empty array"
        );
        assert_eq!(
            message(json!({"data": {"cart_id": "c", "items": {"sku": "A"}}})),
            "invalid parameter 'data.items': expected a non-empty array of items, got an object"
        );
        assert_eq!(
            message(json!({"data": {"cart_id": true, "items": [{"sku": "A", "qty": 1}]}})),
            "invalid parameter 'data.cart_id': expected a string or a number, got true"
        );
    }
}
