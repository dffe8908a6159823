//! Reading and validating the check-stock payload Commerce sends.
//!
//! Commerce is PHP: numbers may arrive as strings (`"qty": "2"`) and ids as either.
//! The body is read into [`Envelope`], a document model that keeps exactly what
//! check-stock looks at (borrowed from the body, no `serde_json::Value` tree: that
//! was most of the cost of a call) and a description of anything else, so that every
//! problem can be named precisely (which item, which field, what was sent) and the
//! missing-parameter message matches the starter kit's action exactly.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
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
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
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

/// Parses and validates a raw body into a [`CheckStockRequest`].
pub fn parse_check_stock(body: &[u8]) -> Result<CheckStockRequest, PayloadError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| PayloadError::MalformedJson(e.to_string()))?;
    let (cart_id, items) = match envelope.data {
        Some(Data::Object { cart_id, items }) => (
            cart_id.filter(|node| !node.is_blank()),
            items.filter(|items| !matches!(items, Items::Other(node) if node.is_blank())),
        ),
        _ => (None, None),
    };
    let missing: Vec<&'static str> = REQUIRED
        .iter()
        .zip([cart_id.is_none(), items.is_none()])
        .filter(|(_, missing)| *missing)
        .map(|(name, _)| *name)
        .collect();
    let (Some(cart_id), Some(items)) = (cart_id, items) else {
        return Err(PayloadError::Missing(missing));
    };

    let cart_id = match cart_id {
        Node::Str(s) => s.into_owned(),
        Node::Number(n) => n.to_string(),
        other => return Err(PayloadError::CartId(other.to_string())),
    };
    let items = match items {
        Items::List(list) if !list.is_empty() => list,
        Items::List(_) => return Err(PayloadError::Items(Node::EmptyArray.to_string())),
        Items::Other(node) => return Err(PayloadError::Items(node.to_string())),
    };
    let items = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_item(index, item))
        .collect::<Result<_, _>>()?;
    Ok(CheckStockRequest { cart_id, items })
}

fn parse_item(index: usize, item: Item<'_>) -> Result<RequestedItem, PayloadError> {
    let (item_id, sku, qty) = match item {
        Item::Object { item_id, sku, qty } => (item_id, sku, qty),
        Item::Other(node) => {
            return Err(PayloadError::Item {
                index,
                item: String::new(),
                problem: format!("expected an object, got {node}"),
            });
        }
    };
    let fail = |problem: String| PayloadError::Item {
        index,
        item: item_label(item_id.as_ref()),
        problem,
    };
    let sku = match sku {
        Some(Node::Str(s)) if !s.trim().is_empty() => s.into_owned(),
        None | Some(Node::Null) => return Err(fail("'sku' is missing".into())),
        Some(other) => {
            return Err(fail(format!(
                "'sku' must be a non-empty string, got {other}"
            )));
        }
    };
    let qty = match qty {
        None | Some(Node::Null) => return Err(fail("'qty' is missing".into())),
        Some(value) => positive_number(&value)
            .ok_or_else(|| fail(format!("'qty' must be a positive number, got {value}")))?,
    };
    Ok(RequestedItem { sku, qty })
}

/// A positive finite number, given as a JSON number or a numeric string.
fn positive_number(value: &Node<'_>) -> Option<f64> {
    let n = match value {
        Node::Number(n) => n.as_f64()?,
        Node::Str(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (n.is_finite() && n > 0.0).then_some(n)
}

fn item_label(item_id: Option<&Node<'_>>) -> String {
    match item_id {
        Some(Node::Str(id)) if !id.is_empty() => format!(" (item_id {id})"),
        Some(Node::Number(id)) => format!(" (item_id {id})"),
        _ => String::new(),
    }
}

// --- the document model ----------------------------------------------------------

/// The top level: only `data` matters; any other JSON value has no `data`.
struct Envelope<'a> {
    data: Option<Data<'a>>,
}

enum Data<'a> {
    Object {
        cart_id: Option<Node<'a>>,
        items: Option<Items<'a>>,
    },
    Other,
}

enum Items<'a> {
    List(Vec<Item<'a>>),
    Other(Node<'a>),
}

enum Item<'a> {
    Object {
        item_id: Option<Node<'a>>,
        sku: Option<Node<'a>>,
        qty: Option<Node<'a>>,
    },
    Other(Node<'a>),
}

/// A JSON value as far as messages need it: scalars kept, containers described.
#[derive(Debug, Clone, PartialEq)]
enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    EmptyArray,
    Array,
    Object,
}

impl Node<'_> {
    /// The reference validator treats absent and empty-string values as missing; so
    /// does this one, and `null` too (PHP serialises unset values as `null`).
    fn is_blank(&self) -> bool {
        match self {
            Node::Null => true,
            Node::Str(s) => s.is_empty(),
            _ => false,
        }
    }
}

/// A short, bounded rendering of what was sent, for error messages.
impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 40;
        let text = match self {
            Node::Null => "null".to_owned(),
            Node::Bool(b) => b.to_string(),
            Node::Number(n) => n.to_string(),
            Node::Str(s) => serde_json::Value::String(s.to_string()).to_string(),
            Node::EmptyArray => "an empty array".to_owned(),
            Node::Array => "an array".to_owned(),
            Node::Object => "an object".to_owned(),
        };
        if text.chars().count() > MAX {
            write!(f, "{}…", text.chars().take(MAX).collect::<String>())
        } else {
            f.write_str(&text)
        }
    }
}

/// Visits any JSON value, keeping what `K` wants from objects and arrays.
/// Each `Deserialize` below is a thin wrapper choosing what to keep.
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(v).map_or(Node::Null, Node::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut any = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            any = true;
        }
        Ok(if any { Node::Array } else { Node::EmptyArray })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Node::Object)
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// An object key, borrowed from the body unless it has escapes (serde's own
/// `Cow<str>` always allocates).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// Reads the keys of an object, handing the wanted ones to `keep` (later duplicates
/// win, as in `serde_json::Value`) and skipping the rest.
fn visit_fields<'de, A: MapAccess<'de>>(
    map: &mut A,
    mut keep: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<(), A::Error> {
    while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
        if !keep(&key, map)? {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(())
}

/// `Deserialize` for a document node that keeps what `containers` (its `visit_map`
/// and `visit_seq`) make of objects and arrays, and turns every scalar into
/// `$other(Node)`, so a wrong type can still be described.
macro_rules! deserialize_node {
    ($ty:ident, $other:expr, { $($containers:tt)* }) => {
        impl<'de> Deserialize<'de> for $ty<'de> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("any JSON value")
                    }
                    $($containers)*
                    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> { NodeVisitor.visit_bool(v).map($other) }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> { NodeVisitor.visit_i64(v).map($other) }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> { NodeVisitor.visit_u64(v).map($other) }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> { NodeVisitor.visit_f64(v).map($other) }
                    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> { NodeVisitor.visit_borrowed_str(v).map($other) }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> { NodeVisitor.visit_str(v).map($other) }
                    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { NodeVisitor.visit_unit().map($other) }
                }
                deserializer.deserialize_any(V)
            }
        }
    };
}

deserialize_node!(Envelope, |_| Envelope { data: None }, {
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut data = None;
        visit_fields(&mut map, |key, map| {
            Ok(key == "data" && {
                data = Some(map.next_value()?);
                true
            })
        })?;
        Ok(Envelope { data })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        NodeVisitor.visit_seq(seq).map(|_| Envelope { data: None })
    }
});

deserialize_node!(Data, |_| Data::Other, {
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut cart_id, mut items) = (None, None);
        visit_fields(&mut map, |key, map| {
            match key {
                "cart_id" => cart_id = Some(map.next_value()?),
                "items" => items = Some(map.next_value()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Data::Object { cart_id, items })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        NodeVisitor.visit_seq(seq).map(|_| Data::Other)
    }
});

deserialize_node!(Item, Item::Other, {
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut item_id, mut sku, mut qty) = (None, None, None);
        visit_fields(&mut map, |key, map| {
            match key {
                "item_id" => item_id = Some(map.next_value()?),
                "sku" => sku = Some(map.next_value()?),
                "qty" => qty = Some(map.next_value()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Item::Object { item_id, sku, qty })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        NodeVisitor.visit_seq(seq).map(Item::Other)
    }
});

// `items`: an array of items, or any other value (kept to describe it).
deserialize_node!(Items, Items::Other, {
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        while let Some(item) = seq.next_element()? {
            list.push(item);
        }
        Ok(Items::List(list))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        NodeVisitor.visit_map(map).map(Items::Other)
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(payload: Value) -> Result<CheckStockRequest, PayloadError> {
        parse_check_stock(&serde_json::to_vec(&payload).unwrap())
    }

    fn message(payload: Value) -> String {
        parse(payload).unwrap_err().to_string()
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
        let request = parse(json!({"data": {"cart_id": 42, "items": [
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

#[cfg(test)]
mod document_tests {
    use super::*;

    #[test]
    fn malformed_json_is_reported_with_its_position() {
        assert_eq!(
            parse_check_stock(b"{\"data\": ").unwrap_err().to_string(),
            "malformed JSON body: EOF while parsing a value at line 1 column 9"
        );
        assert!(parse_check_stock(b"").is_err());
    }

    #[test]
    fn escaped_strings_and_duplicate_keys_behave_like_json() {
        let body = br#"{"data":{"cart_id":"c\u0031","items":[{"sku":"A\"B","qty":1,"sku":"Z"}]}}"#;
        let request = parse_check_stock(body).unwrap();
        assert_eq!(request.cart_id, "c1");
        assert_eq!(request.items[0].sku, "Z", "the last duplicate key wins");
    }
}
