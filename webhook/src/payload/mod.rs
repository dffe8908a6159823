//! Reading and validating the check-stock payloads Commerce sends.
//!
//! A real Commerce does not send one fixed shape: it serialises the arguments of the
//! event it intercepts, and a hook's `fields` may select and rename paths of it (see
//! the README's "Connect a real Commerce"). This module understands:
//! - `observer.checkout_cart_product_add_before`: one product being added, SKU at
//!   `data.product.sku`, requested quantity at `data.info.qty` (absent means 1);
//! - `observer.sales_quote_item_save_before`: one cart line being saved, SKU at
//!   `data.item.sku`, the line's total quantity at `data.item.qty`, the cart at
//!   `data.item.quote_id`;
//! - both in their default form (the whole event under `data`) and field-selected
//!   (the same paths without the `data.` prefix, as Adobe's examples rename them);
//! - the starter kit's `{"data":{"cart_id","items":[..]}}`, with its exact messages.
//!
//! Commerce is PHP: numbers arrive as strings (`"2"`, `"1.0000"`), empty values as
//! `""`, `null` or `[]`, and a product carries hundreds of attributes. The document
//! model (`model.rs`, read by serde_json) keeps only the few fields read, each as a
//! `Node` until validated here, so that a wrong value can be named in the message
//! (which field, what was sent). Only valid JSON is read (RFC 8259, UTF-8), and a
//! member repeated in any object is refused: Commerce's PHP would read the last one.

#[cfg(test)]
mod differential;
mod model;

use std::borrow::Cow;
use std::fmt;

use thiserror::Error;

use model::{Data, Event, Info, List, Node, Product, QuoteItem, Shape, StarterItem};

/// The most cart lines a payload is read with: a longer list is only counted, so
/// that a body of many tiny lines cannot make the reader hold many times its size.
pub use model::MAX_ITEMS as MAX_CART_LINES;

/// Quantities: exact decimals, so that `0.1 + 0.2` is `0.3` and `2^53 + 1` stays
/// itself (an `f64` gets both wrong, and a cart then shows a shortage that is not).
pub use rust_decimal::Decimal;

/// The parameters the reference action requires, in the order it reports them.
const REQUIRED: [&str; 2] = ["data.cart_id", "data.items"];

/// Product types whose own SKU is not what is stocked: the shopper's choice (a
/// configurable's child, a bundle's options, a group's members) is not in
/// `observer.checkout_cart_product_add_before`, so that event cannot check them.
const COMPOSITE_TYPES: [&str; 3] = ["configurable", "bundle", "grouped"];

/// A validated check-stock request. Its strings are borrowed from the body unless
/// they had escapes: a call then allocates nothing per cart line for them.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckStockRequest<'a> {
    /// The cart, when the payload names one (`observer.checkout_cart_product_add_before`
    /// does not).
    pub cart_id: Option<Cow<'a, str>>,
    /// What to check; empty only when `unchecked` says why.
    pub items: Vec<RequestedItem<'a>>,
    /// A product the payload cannot check (see `COMPOSITE_TYPES`). It is let
    /// through: refusing it would block every such product, whatever the stock.
    pub unchecked: Option<UncheckedProduct>,
}

/// One cart line Commerce asks about.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedItem<'a> {
    pub sku: Cow<'a, str>,
    pub qty: Decimal,
}

/// A composite product added through `observer.checkout_cart_product_add_before`.
#[derive(Debug, Clone, PartialEq)]
pub struct UncheckedProduct {
    pub sku: String,
    pub product_type: String,
}

/// Why a payload is not a check-stock request; the `Display` text is what the shopper
/// (and the merchant's logs) see, so it names the offending parameter.
#[derive(Debug, Error, PartialEq)]
pub enum PayloadError {
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// No known shape: names every shape understood, and the event when one was sent.
    #[error(
        "unrecognised check-stock payload{}: expected product.sku (and optionally info.qty) \
         of observer.checkout_cart_product_add_before, item.sku and item.qty of \
         observer.sales_quote_item_save_before (each under 'data' or at the top level), \
         or the starter kit's data.cart_id and data.items",
        .0.as_ref().map(|event| format!(" for event {event}")).unwrap_or_default()
    )]
    UnknownShape(Option<String>),
    /// Same wording as the starter kit's validator: `missing parameter(s) 'a,b'`.
    #[error("missing parameter(s) '{}'", .0.join(","))]
    Missing(Vec<String>),
    /// A value of the wrong kind, at its full path as sent.
    #[error("invalid parameter '{path}': expected {expected}, got {got}")]
    Invalid {
        path: String,
        expected: &'static str,
        got: String,
    },
    #[error("invalid parameter 'data.cart_id': expected a string or a number, got {0}")]
    CartId(String),
    #[error("invalid parameter 'data.items': expected a non-empty array of items, got {0}")]
    Items(String),
    /// More than [`MAX_CART_LINES`] lines: only counted.
    #[error("the cart has {0} lines; at most {MAX_CART_LINES} are read")]
    TooManyItems(usize),
    #[error("invalid item data.items[{index}]{item}: {problem}")]
    Item {
        index: usize,
        /// ` (item_id 7)` when the item has an id, to find it in the cart.
        item: String,
        problem: String,
    },
}

/// Parses and validates a raw body into a [`CheckStockRequest`].
pub fn parse_check_stock(body: &[u8]) -> Result<CheckStockRequest<'_>, PayloadError> {
    let body = model::read_body(body).map_err(|error| PayloadError::MalformedJson(error.0))?;
    let Shape::Object(mut body) = body else {
        return Err(PayloadError::UnknownShape(None));
    };
    match body.data.take() {
        // The starter kit's fields, or nothing at all: its messages.
        Some(Shape::Object(data))
            if data.cart_id.is_some() || data.items.is_some() || data.members == 0 =>
        {
            return starter_kit(data);
        }
        // The default form: the whole event under `data`.
        Some(Shape::Object(mut data)) => {
            if let Some(request) = event("data.", data.event()) {
                return request;
            }
        }
        // PHP's empty array for an empty `data`.
        Some(Shape::Other(Node::EmptyArray)) => return starter_kit(Data::default()),
        _ => {}
    }
    // A field-selected form, renamed like Adobe's examples: no `data` wrapper.
    event("", body.event()).unwrap_or_else(|| {
        let event_name = match body.event_name {
            Some(Node::Str(name)) => Some(Echo(&name).to_string()),
            _ => None,
        };
        Err(PayloadError::UnknownShape(event_name))
    })
}

/// The request of whichever event these objects belong to, if any. `prefix` is where
/// they were found, so that messages give the path as sent.
fn event<'a>(
    prefix: &str,
    event: Event<'a>,
) -> Option<Result<CheckStockRequest<'a>, PayloadError>> {
    match (event.product, event.info, event.item) {
        (_, _, Some(item)) => Some(quote_item(prefix, item)),
        (None, None, None) => None,
        (product, info, None) => Some(product_add(prefix, product, info)),
    }
}

/// `observer.checkout_cart_product_add_before`: `product.sku`, `info.qty`.
fn product_add<'a>(
    prefix: &str,
    product: Option<Shape<'a, Product<'a>>>,
    info: Option<Shape<'a, Info<'a>>>,
) -> Result<CheckStockRequest<'a>, PayloadError> {
    let path = |field: &str| format!("{prefix}{field}");
    let product = object(product, || path("product"))?.unwrap_or_default();
    let info = object(info, || path("info"))?.unwrap_or_default();
    let sku = required_sku(product.sku, || path("product.sku"))?;
    let qty = match info.qty.filter(|qty| !qty.is_blank()) {
        // Commerce adds one when the request names no quantity.
        None => Decimal::ONE,
        Some(qty) => positive(qty, || path("info.qty"))?,
    };
    let product_type = match product.type_id {
        Some(Node::Str(kind)) => kind,
        _ => Cow::Borrowed(""),
    };
    if COMPOSITE_TYPES.contains(&&*product_type) {
        return Ok(CheckStockRequest {
            cart_id: None,
            items: Vec::new(),
            unchecked: Some(UncheckedProduct {
                sku: sku.into_owned(),
                product_type: product_type.into_owned(),
            }),
        });
    }
    Ok(CheckStockRequest {
        cart_id: None,
        items: vec![RequestedItem { sku, qty }],
        unchecked: None,
    })
}

/// `observer.sales_quote_item_save_before`: `item.sku`, `item.qty`, `item.quote_id`.
fn quote_item<'a>(
    prefix: &str,
    item: Shape<'a, QuoteItem<'a>>,
) -> Result<CheckStockRequest<'a>, PayloadError> {
    let path = |field: &str| format!("{prefix}{field}");
    let item = object(Some(item), || path("item"))?.unwrap_or_default();
    let sku = item.sku.filter(|sku| !sku.is_empty());
    let qty = item.qty.filter(|qty| !qty.is_empty());
    let (sku, qty) = match (sku, qty) {
        (Some(sku), Some(qty)) => (sku, qty),
        (sku, qty) => {
            let missing = [(sku.is_none(), "item.sku"), (qty.is_none(), "item.qty")];
            return Err(PayloadError::Missing(
                missing
                    .into_iter()
                    .filter(|(missing, _)| *missing)
                    .map(|(_, field)| path(field))
                    .collect(),
            ));
        }
    };
    let sku = sku_string(sku, || path("item.sku"))?;
    let qty = positive(qty, || path("item.qty"))?;
    let cart_id = match item.quote_id {
        None => None,
        Some(id) if id.is_empty() => None,
        Some(Node::Str(id)) => Some(id),
        Some(Node::Number(id)) => Some(Cow::Owned(id.to_string())),
        Some(other) => {
            return Err(invalid(
                path("item.quote_id"),
                "a string or a number",
                &other,
            ));
        }
    };
    Ok(CheckStockRequest {
        cart_id,
        items: vec![RequestedItem { sku, qty }],
        unchecked: None,
    })
}

/// The starter kit's `{"data":{"cart_id","items":[{"item_id","sku","qty"}]}}`,
/// validated with the reference action's messages.
fn starter_kit(data: Data<'_>) -> Result<CheckStockRequest<'_>, PayloadError> {
    let cart_id = data.cart_id.filter(|node| !node.is_blank());
    let items = data
        .items
        .filter(|items| !matches!(items, List::Other(node) if node.is_blank()));
    let (cart_id, items) = match (cart_id, items) {
        (Some(cart_id), Some(items)) => (cart_id, items),
        (cart_id, items) => {
            let missing = REQUIRED
                .iter()
                .zip([cart_id.is_none(), items.is_none()])
                .filter(|(_, missing)| *missing)
                .map(|(name, _)| (*name).to_owned())
                .collect();
            return Err(PayloadError::Missing(missing));
        }
    };
    let cart_id = match cart_id {
        Node::Str(s) => s,
        Node::Number(n) => Cow::Owned(n.to_string()),
        other => return Err(PayloadError::CartId(other.to_string())),
    };
    let items = match items {
        List::TooLong(lines) => return Err(PayloadError::TooManyItems(lines)),
        List::Items(list) if !list.is_empty() => list,
        List::Items(_) => return Err(PayloadError::Items(Node::EmptyArray.to_string())),
        List::Other(node) => return Err(PayloadError::Items(node.to_string())),
    };
    // A loop rather than `collect::<Result<_, _>>()`, which reuses the list's
    // buffer and then reallocates it to the smaller items.
    let mut checked = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        checked.push(starter_item(index, item)?);
    }
    Ok(CheckStockRequest {
        cart_id: Some(cart_id),
        items: checked,
        unchecked: None,
    })
}

fn starter_item<'a>(
    index: usize,
    item: Shape<'a, StarterItem<'a>>,
) -> Result<RequestedItem<'a>, PayloadError> {
    let item = match item {
        Shape::Object(item) => item,
        Shape::Other(node) => {
            return Err(PayloadError::Item {
                index,
                item: String::new(),
                problem: format!("expected an object, got {node}"),
            });
        }
    };
    let fail = |problem: String| PayloadError::Item {
        index,
        item: item_label(item.item_id.as_ref()),
        problem,
    };
    let sku = match item.sku {
        Some(Node::Str(s)) if !s.trim().is_empty() => s,
        None => return Err(fail("'sku' is missing".into())),
        Some(other) => {
            return Err(fail(format!(
                "'sku' must be a non-empty string, got {other}"
            )));
        }
    };
    let qty = match item.qty {
        None => return Err(fail("'qty' is missing".into())),
        Some(value) => positive_number(&value)
            .ok_or_else(|| fail(format!("'qty' must be a positive number, got {value}")))?,
    };
    Ok(RequestedItem { sku, qty })
}

/// The object at a path, if any: `null`, `""` and `[]` (PHP's empty array) are
/// absent; any other non-object is named in the error.
fn object<T>(
    value: Option<Shape<'_, T>>,
    path: impl FnOnce() -> String,
) -> Result<Option<T>, PayloadError> {
    match value {
        None => Ok(None),
        Some(Shape::Object(object)) => Ok(Some(object)),
        Some(Shape::Other(node)) if node.is_empty() => Ok(None),
        Some(Shape::Other(node)) => Err(invalid(path(), "an object", &node)),
    }
}

/// A SKU, which must be present and a non-empty string.
fn required_sku<'a>(
    value: Option<Node<'a>>,
    path: impl FnOnce() -> String,
) -> Result<Cow<'a, str>, PayloadError> {
    match value.filter(|sku| !sku.is_empty()) {
        Some(sku) => sku_string(sku, path),
        None => Err(PayloadError::Missing(vec![path()])),
    }
}

fn sku_string<'a>(
    value: Node<'a>,
    path: impl FnOnce() -> String,
) -> Result<Cow<'a, str>, PayloadError> {
    match value {
        Node::Str(sku) if !sku.trim().is_empty() => Ok(sku),
        other => Err(invalid(path(), "a non-empty string", &other)),
    }
}

fn positive(value: Node<'_>, path: impl FnOnce() -> String) -> Result<Decimal, PayloadError> {
    positive_number(&value).ok_or_else(|| invalid(path(), "a positive number", &value))
}

fn invalid(path: String, expected: &'static str, got: &Node<'_>) -> PayloadError {
    PayloadError::Invalid {
        path,
        expected,
        got: got.to_string(),
    }
}

/// A positive number, given as a JSON number or a numeric string (`"1.0000"`, how
/// Commerce sends its `decimal(12,4)` columns), read exactly: a string from its
/// digits, an integer as itself, and a JSON fraction from the shortest text that
/// reads back as the same `f64` (what was written, for up to 15 significant digits).
/// Normalised, so that `"2.0000"` is shown as `2`.
fn positive_number(value: &Node<'_>) -> Option<Decimal> {
    let n = match value {
        Node::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Decimal::from(u),
            (None, Some(i), _) => Decimal::from(i),
            (None, None, Some(f)) => Decimal::from_str_exact(&f.to_string()).ok()?,
            (None, None, None) => return None,
        },
        Node::Str(s) => Decimal::from_str_exact(s.trim()).ok()?,
        _ => return None,
    };
    (n > Decimal::ZERO).then(|| n.normalize())
}

fn item_label(item_id: Option<&Node<'_>>) -> String {
    match item_id {
        Some(Node::Str(id)) if !id.is_empty() => format!(" (item_id {})", Echo(id)),
        Some(Node::Number(id)) => format!(" (item_id {id})"),
        _ => String::new(),
    }
}

/// The most characters of a value sent by the caller that are repeated in an
/// answer or a log line (Commerce's own SKUs are at most 64).
pub const ECHO_MAX_CHARS: usize = 64;

/// A value sent by the caller, as it may be repeated to the shopper and in logs:
/// at most [`ECHO_MAX_CHARS`] characters (then `…`), with control characters,
/// invisible and bidirectional formatting characters, quotes and backslashes
/// escaped, so that it can neither forge log lines nor hide or reorder text.
#[derive(Debug, Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for (index, c) in self.0.chars().enumerate() {
            if index == ECHO_MAX_CHARS {
                return f.write_char('…');
            }
            let hidden = matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
            if c.is_control() || hidden || c == '"' || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The body is leaked: the request borrows from it, and tests are short.
    fn parse(payload: Value) -> Result<CheckStockRequest<'static>, PayloadError> {
        parse_check_stock(serde_json::to_vec(&payload).unwrap().leak())
    }

    fn message(payload: Value) -> String {
        parse(payload).unwrap_err().to_string()
    }

    fn one(sku: &str, qty: f64) -> Vec<RequestedItem<'_>> {
        vec![RequestedItem {
            sku: sku.into(),
            qty: Decimal::try_from(qty).unwrap().normalize(),
        }]
    }

    /// Leaked, as in `parse`.
    fn fixture(name: &str) -> &'static [u8] {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .leak()
    }

    #[test]
    fn reports_missing_parameters_like_the_reference_action() {
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
    }

    #[test]
    fn an_unknown_shape_names_every_shape_understood() {
        let expected = "unrecognised check-stock payload: expected product.sku (and optionally info.qty) of observer.checkout_cart_product_add_before, item.sku and item.qty of observer.sales_quote_item_save_before (each under 'data' or at the top level), or the starter kit's data.cart_id and data.items";
        for payload in [
            json!({}),
            json!([1, 2]),
            json!("data"),
            // What the old printed hook made Commerce send: both sources missing.
            json!({"data": {"cart_id": null, "items": null}}),
        ] {
            assert_eq!(message(payload.clone()), expected, "{payload}");
        }
        assert!(
            message(json!({"eventName": "sales_order_place_before", "data": {"order": {}}}))
                .starts_with(
                    "unrecognised check-stock payload for event sales_order_place_before: expected"
                )
        );
    }

    #[test]
    fn an_empty_data_gets_the_starter_kits_message() {
        for empty in [json!({"data": {}}), json!({"data": []})] {
            assert_eq!(
                message(empty),
                "missing parameter(s) 'data.cart_id,data.items'"
            );
        }
    }

    #[test]
    fn accepts_numbers_sent_as_strings() {
        let request = parse(json!({"data": {"cart_id": 42, "items": [
            {"item_id": 1, "sku": "MS-01", "qty": "2"},
            {"item_id": "2", "sku": "MS-02", "qty": 1.5}
        ]}}))
        .unwrap();
        assert_eq!(request.cart_id.as_deref(), Some("42"));
        assert_eq!(
            request.items,
            vec![
                RequestedItem {
                    sku: "MS-01".into(),
                    qty: Decimal::TWO
                },
                RequestedItem {
                    sku: "MS-02".into(),
                    qty: Decimal::new(15, 1)
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

    #[test]
    fn add_to_cart_default_payload_reads_sku_and_string_qty() {
        let request = parse_check_stock(fixture("add-to-cart-simple.json")).unwrap();
        assert_eq!(
            request,
            CheckStockRequest {
                cart_id: None,
                items: one("MS-01", 2.0),
                unchecked: None
            }
        );
    }

    #[test]
    fn add_to_cart_without_qty_asks_for_one() {
        let request = parse_check_stock(fixture("add-to-cart-no-qty.json")).unwrap();
        assert_eq!(request.items, one("MS-03", 1.0));
        for info in [
            json!({"qty": ""}),
            json!({"qty": null}),
            json!([]),
            json!({}),
        ] {
            let request = parse(json!({"product": {"sku": "A"}, "info": info})).unwrap();
            assert_eq!(request.items, one("A", 1.0), "{info}");
        }
        assert_eq!(
            parse(json!({"product": {"sku": "A"}})).unwrap().items,
            one("A", 1.0)
        );
    }

    #[test]
    fn add_to_cart_field_selected_with_or_without_the_data_prefix() {
        let selected =
            json!({"product": {"sku": "MS-02", "type_id": "simple"}, "info": {"qty": "1.5"}});
        assert_eq!(parse(selected.clone()).unwrap().items, one("MS-02", 1.5));
        assert_eq!(
            parse(json!({"data": selected})).unwrap().items,
            one("MS-02", 1.5)
        );
    }

    #[test]
    fn a_composite_product_on_add_to_cart_is_let_through_unchecked() {
        let request = parse_check_stock(fixture("add-to-cart-configurable.json")).unwrap();
        assert!(request.items.is_empty());
        assert_eq!(
            request.unchecked,
            Some(UncheckedProduct {
                sku: "WJ-12".into(),
                product_type: "configurable".into()
            })
        );
    }

    #[test]
    fn add_to_cart_bad_values_name_the_path_as_sent() {
        assert_eq!(
            message(json!({"data": {"product": {"sku": "A"}, "info": {"qty": "0"}}})),
            "invalid parameter 'data.info.qty': expected a positive number, got \"0\""
        );
        assert_eq!(
            message(json!({"product": {"sku": 12}, "info": {"qty": "1"}})),
            "invalid parameter 'product.sku': expected a non-empty string, got 12"
        );
        assert_eq!(
            message(json!({"product": [], "info": {"qty": "1"}})),
            "missing parameter(s) 'product.sku'"
        );
        assert_eq!(
            message(json!({"data": {"product": "MS-01"}})),
            "invalid parameter 'data.product': expected an object, got \"MS-01\""
        );
    }

    #[test]
    fn quote_item_default_payload_reads_sku_total_qty_and_cart() {
        let request = parse_check_stock(fixture("quote-item-save-simple.json")).unwrap();
        assert_eq!(
            request,
            CheckStockRequest {
                cart_id: Some("63".into()),
                items: one("MS-01", 8.0),
                unchecked: None
            }
        );
        let configurable = parse_check_stock(fixture("quote-item-save-configurable.json")).unwrap();
        assert_eq!(
            configurable.items,
            one("WJ-12-M-Blue", 2.0),
            "the child's SKU"
        );
    }

    #[test]
    fn quote_item_field_selected_and_its_messages() {
        let request = parse(
            json!({"item": {"name": "Hoodie", "sku": "MS-02", "qty": "3.0000", "quote_id": 7}}),
        )
        .unwrap();
        assert_eq!(request.cart_id.as_deref(), Some("7"));
        assert_eq!(request.items, one("MS-02", 3.0));
        assert_eq!(
            message(json!({"item": {"name": "Hoodie", "sku": null, "qty": ""}})),
            "missing parameter(s) 'item.sku,item.qty'"
        );
        assert_eq!(
            message(json!({"data": {"item": {"sku": "A"}}})),
            "missing parameter(s) 'data.item.qty'"
        );
        assert_eq!(
            message(json!({"item": {"sku": "A", "qty": "lots"}})),
            "invalid parameter 'item.qty': expected a positive number, got \"lots\""
        );
        assert_eq!(
            message(json!({"item": {"sku": "A", "qty": 1, "quote_id": {"id": 1}}})),
            "invalid parameter 'item.quote_id': expected a string or a number, got an object"
        );
        assert_eq!(
            message(json!({"item": 5})),
            "invalid parameter 'item': expected an object, got 5"
        );
    }
}

#[cfg(test)]
mod document_tests {
    use super::*;

    #[test]
    fn quantities_are_read_exactly_from_numbers_and_strings() {
        let qty = |value: serde_json::Value| {
            let body = serde_json::json!({"item": {"sku": "A", "qty": value}});
            parse_check_stock(body.to_string().as_bytes())
                .unwrap()
                .items[0]
                .qty
        };
        let exact = |text: &str| Decimal::from_str_exact(text).unwrap();
        assert_eq!(qty(serde_json::json!(0.1)), exact("0.1"));
        assert_eq!(
            qty(serde_json::json!(9007199254740993_u64)),
            exact("9007199254740993")
        );
        assert_eq!(
            qty(serde_json::json!("9007199254740993.0000")),
            exact("9007199254740993")
        );
        assert_eq!(qty(serde_json::json!("1.0000")).to_string(), "1");
    }

    #[test]
    fn malformed_json_is_reported_with_its_position() {
        assert_eq!(
            parse_check_stock(b"{\"data\": ").unwrap_err().to_string(),
            "malformed JSON body: EOF while parsing a value at line 1 column 9"
        );
        assert!(parse_check_stock(b"").is_err());
    }

    #[test]
    fn a_list_longer_than_the_line_limit_is_counted_not_read() {
        let lines = MAX_CART_LINES + 2;
        let items = vec![r#"{"sku":"A","qty":1}"#; lines].join(",");
        let body = format!(r#"{{"data":{{"cart_id":"c","items":[{items}]}}}}"#);
        assert_eq!(
            parse_check_stock(body.as_bytes()),
            Err(PayloadError::TooManyItems(lines))
        );
        use clap::Parser;
        let args = |max: usize| {
            let max = max.to_string();
            crate::contract::Args::try_parse_from(["commerce-webhook", "--max-cart-lines", &max])
        };
        assert!(args(MAX_CART_LINES).is_ok());
        assert!(
            args(MAX_CART_LINES + 1).is_err(),
            "MAX_CART_LINES cannot exceed what is read"
        );
    }

    /// What the hand-written reader let through (issue 18), each refused as
    /// malformed JSON now; `repeats` marks the bodies serde_json alone reads (it
    /// keeps the last of a repeated member, as PHP's `json_decode` does).
    #[test]
    fn what_is_not_json_is_refused_wherever_it_is() {
        let cases: [(&[u8], bool); 16] = [
            // A member repeated: in a model object, after its last field, in a
            // skipped object, in an array's object, through an escape, at the top.
            (
                br#"{"product":{"sku":"MS-01","type_id":"simple","sku":"MS-03"}}"#,
                true,
            ),
            (
                br#"{"item":{"sku":"A","qty":1,"quote_id":1,"qty":1000}}"#,
                true,
            ),
            (br#"{"item":{"sku":"A","qty":1,"x":{"a":1,"a":2}}}"#, true),
            (br#"{"item":{"sku":"A","qty":1,"x":[{"a":1,"a":2}]}}"#, true),
            (br#"{"item":{"sku":"A","qty":1,"\u0078":1,"x":2}}"#, true),
            (
                br#"{"data":{"cart_id":"c","items":[{"sku":"A","qty":1}]},"data":{}}"#,
                true,
            ),
            // Trailing commas, a `]` closing a `{`, garbage in a skipped array.
            (br#"{"item":{"sku":"A","qty":1,},}"#, false),
            (br#"{"item":{"sku":"A","qty":1,"x":[1,2,]}}"#, false),
            (br#"{"item":{"sku":"A","qty":1,"x":{"a":1]}}"#, false),
            (br#"{"item":{"sku":"A","qty":1,"x":[1 2 zz]}}"#, false),
            // Bad escapes, a lone surrogate, `01`, out-of-range numbers.
            (br#"{"item":{"sku":"A","qty":1,"x":"\q"}}"#, false),
            (br#"{"item":{"sku":"A","qty":1,"x":"\ud800"}}"#, false),
            (br#"{"item":{"sku":"A","qty":1,"x":01}}"#, false),
            (br#"{"item":{"sku":"A","qty":1,"x":1e999}}"#, false),
            // Invalid UTF-8 in a skipped string, and a raw control character.
            (
                b"{\"item\":{\"sku\":\"A\",\"qty\":1,\"x\":\"\xff\"}}",
                false,
            ),
            (
                b"{\"item\":{\"sku\":\"A\",\"qty\":1,\"x\":\"a\nb\"}}",
                false,
            ),
        ];
        for (body, repeats) in cases {
            let text = String::from_utf8_lossy(body);
            assert!(
                matches!(parse_check_stock(body), Err(PayloadError::MalformedJson(_))),
                "{text}"
            );
            let serde_reads = serde_json::from_slice::<serde_json::Value>(body).is_ok();
            assert_eq!(serde_reads, repeats, "{text}");
        }
        assert_eq!(
            parse_check_stock(b"{\"item\":1}\xff")
                .unwrap_err()
                .to_string(),
            "malformed JSON body: invalid UTF-8 at line 1 column 11"
        );
        let message = parse_check_stock(br#"{"item":{"sku":"A","qty":1,"x":{"a":1,"a":2}}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("duplicate field `a` at line 1 column"),
            "{message}"
        );
    }

    #[test]
    fn the_last_field_needs_its_comma() {
        let no_comma = br#"{"item":{"sku":"A","qty":1,"quote_id":1 x]}"#;
        assert!(matches!(
            parse_check_stock(no_comma),
            Err(PayloadError::MalformedJson(_))
        ));
    }

    #[test]
    fn escaped_strings_are_read_and_repeated_keys_refused() {
        let body = br#"{"data":{"cart_id":"c\u0031","items":[{"sku":"A\"B","qty":1}]}}"#;
        let request = parse_check_stock(body).unwrap();
        assert_eq!(request.cart_id.as_deref(), Some("c1"));
        assert_eq!(request.items[0].sku, "A\"B");
        // PHP's arrays cannot repeat a key, so a repeated one is not from Commerce.
        let repeated = br#"{"data":{"cart_id":"c","items":[{"sku":"A","qty":1,"sku":"Z"}]}}"#;
        assert!(
            parse_check_stock(repeated)
                .unwrap_err()
                .to_string()
                .contains("duplicate field `sku`")
        );
    }
}
