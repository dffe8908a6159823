//! The document model: the few fields of each payload shape that check-stock reads.
//!
//! Each object type lists its fields and says where each value goes; [`read_object`]
//! does the rest for all of them: unknown keys are skipped, a repeated field is an
//! error, `null` reads as absent, and once every field has been read the rest of the
//! object is skimmed. Each value stays a [`Node`] until validated, so that a wrong
//! value can be named in the message (which field, what was sent).
//!
//! This replaced serde derives over serde_json, which read (and so paid for) every
//! key of the ~100 product attributes: `scripts/bench-webhook.sh` shows the
//! difference.

use std::borrow::Cow;
use std::fmt;

use serde_json::Number;

use super::Echo;
use super::cursor::{Cursor, Error, Member};

/// Reads a whole body: one value, then only whitespace.
pub fn read_body(text: &[u8]) -> Result<Shape<'_, Body<'_>>, Error> {
    let mut cursor = Cursor::new(text);
    if cursor.peek().is_none() {
        return Err(cursor.syntax_error());
    }
    let mut body = None;
    Shape::read_into(&mut cursor, &mut body)?;
    cursor.finish()?;
    // A value was read, so the slot holds it.
    body.ok_or(Error::Syntax(text.len()))
}

/// The top level: the default form's `data` and `eventName`, or the objects of a
/// field-selected form.
#[derive(Default)]
pub struct Body<'a> {
    pub data: Option<Shape<'a, Data<'a>>>,
    pub event_name: Option<Node<'a>>,
    pub event: Event<'a>,
}

impl<'a> Object<'a> for Body<'a> {
    const FIELDS: &'static [&'static str] = &["data", "eventName", "product", "info", "item"];
    fn read_field(&mut self, field: &'static str, cursor: &mut Cursor<'a>) -> Result<(), Error> {
        match field {
            "data" => optional(cursor, &mut self.data)?,
            "eventName" => optional(cursor, &mut self.event_name)?,
            event => self.event.read_field(event, cursor)?,
        }
        Ok(())
    }
}

/// `data`: the starter kit's fields, or an event's.
#[derive(Default)]
pub struct Data<'a> {
    pub cart_id: Option<Node<'a>>,
    pub items: Option<List<'a, Shape<'a, StarterItem<'a>>>>,
    pub event: Event<'a>,
}

impl<'a> Object<'a> for Data<'a> {
    const FIELDS: &'static [&'static str] = &["cart_id", "items", "product", "info", "item"];
    fn read_field(&mut self, field: &'static str, cursor: &mut Cursor<'a>) -> Result<(), Error> {
        match field {
            "cart_id" => optional(cursor, &mut self.cart_id)?,
            "items" => optional(cursor, &mut self.items)?,
            event => self.event.read_field(event, cursor)?,
        }
        Ok(())
    }
}

/// The objects of the two stock events, found under `data` (the default form) or
/// at the top level (a field-selected form).
#[derive(Default)]
pub struct Event<'a> {
    pub product: Option<Shape<'a, Product<'a>>>,
    pub info: Option<Shape<'a, Info<'a>>>,
    pub item: Option<Shape<'a, QuoteItem<'a>>>,
}

impl<'a> Object<'a> for Event<'a> {
    const FIELDS: &'static [&'static str] = &["product", "info", "item"];
    fn read_field(&mut self, field: &str, cursor: &mut Cursor<'a>) -> Result<(), Error> {
        match field {
            "product" => optional(cursor, &mut self.product)?,
            "info" => optional(cursor, &mut self.info)?,
            "item" => optional(cursor, &mut self.item)?,
            other => unreachable!("{other} is not in FIELDS"),
        }
        Ok(())
    }
}

/// One line of the starter kit's `data.items`.
#[derive(Default)]
pub struct StarterItem<'a> {
    pub item_id: Option<Node<'a>>,
    pub sku: Option<Node<'a>>,
    pub qty: Option<Node<'a>>,
}

impl<'a> Object<'a> for StarterItem<'a> {
    const FIELDS: &'static [&'static str] = &["item_id", "sku", "qty"];
    fn read_field(&mut self, field: &str, cursor: &mut Cursor<'a>) -> Result<(), Error> {
        match field {
            "item_id" => optional(cursor, &mut self.item_id)?,
            "sku" => optional(cursor, &mut self.sku)?,
            "qty" => optional(cursor, &mut self.qty)?,
            other => unreachable!("{other} is not in FIELDS"),
        }
        Ok(())
    }
}

/// `data.product` of `observer.checkout_cart_product_add_before` (of its hundreds of
/// attributes, only these two).
#[derive(Default)]
pub struct Product<'a> {
    pub sku: Option<Node<'a>>,
    pub type_id: Option<Node<'a>>,
}

impl<'a> Object<'a> for Product<'a> {
    const FIELDS: &'static [&'static str] = &["sku", "type_id"];
    fn read_field(&mut self, field: &str, cursor: &mut Cursor<'a>) -> Result<(), Error> {
        match field {
            "sku" => optional(cursor, &mut self.sku)?,
            "type_id" => optional(cursor, &mut self.type_id)?,
            other => unreachable!("{other} is not in FIELDS"),
        }
        Ok(())
    }
}

/// `data.info`: the add-to-cart request (`qty`, `super_attribute`, `form_key`, ...).
#[derive(Default)]
pub struct Info<'a> {
    pub qty: Option<Node<'a>>,
}

impl<'a> Object<'a> for Info<'a> {
    const FIELDS: &'static [&'static str] = &["qty"];
    fn read_field(&mut self, field: &str, cursor: &mut Cursor<'a>) -> Result<(), Error> {
        match field {
            "qty" => optional(cursor, &mut self.qty)?,
            other => unreachable!("{other} is not in FIELDS"),
        }
        Ok(())
    }
}

/// `data.item` of `observer.sales_quote_item_save_before`.
#[derive(Default)]
pub struct QuoteItem<'a> {
    pub sku: Option<Node<'a>>,
    pub qty: Option<Node<'a>>,
    pub quote_id: Option<Node<'a>>,
}

impl<'a> Object<'a> for QuoteItem<'a> {
    const FIELDS: &'static [&'static str] = &["sku", "qty", "quote_id"];
    fn read_field(&mut self, field: &str, cursor: &mut Cursor<'a>) -> Result<(), Error> {
        match field {
            "sku" => optional(cursor, &mut self.sku)?,
            "qty" => optional(cursor, &mut self.qty)?,
            "quote_id" => optional(cursor, &mut self.quote_id)?,
            other => unreachable!("{other} is not in FIELDS"),
        }
        Ok(())
    }
}

/// An object of the model.
pub trait Object<'a>: Default {
    /// Its fields, as keyed in the payload.
    const FIELDS: &'static [&'static str];
    /// Reads the value of `field` (one of [`Self::FIELDS`], so any other name is a
    /// bug of the model: it panics) at the cursor.
    fn read_field(&mut self, field: &'static str, cursor: &mut Cursor<'a>) -> Result<(), Error>;
}

/// Reads the object at the cursor into `object` (fresh), in place: the model's
/// objects nest a few hundred bytes deep, and returning them by value copied them
/// at every level.
fn read_object<'a, T: Object<'a>>(cursor: &mut Cursor<'a>, object: &mut T) -> Result<(), Error> {
    const { assert!(T::FIELDS.len() < 32, "fields are tracked in a u32") };
    let mut seen = 0u32;
    let all = (1u32 << T::FIELDS.len()) - 1;
    cursor.object(|cursor, key| {
        let Some(index) = T::FIELDS.iter().position(|field| field.as_bytes() == key) else {
            return Ok(Member::Unknown);
        };
        let field = T::FIELDS[index];
        if seen & (1 << index) != 0 {
            return Err(cursor.duplicate(field));
        }
        seen |= 1 << index;
        object.read_field(field, cursor)?;
        Ok(if seen == all {
            Member::Last
        } else {
            Member::Read
        })
    })
}

/// A value of the model, as it reads itself.
pub trait Value<'a>: Sized {
    /// Reads the value at the cursor into `slot`, which is empty.
    fn read_into(cursor: &mut Cursor<'a>, slot: &mut Option<Self>) -> Result<(), Error>;
}

/// A field's value, into its (empty) slot; `null` is absent, as PHP serialises
/// unset values.
fn optional<'a, T: Value<'a>>(cursor: &mut Cursor<'a>, slot: &mut Option<T>) -> Result<(), Error> {
    if cursor.null()? {
        Ok(())
    } else {
        T::read_into(cursor, slot)
    }
}

/// An object read as `T`, or any other value kept as a [`Node`] to be described
/// (PHP sends `[]` or `""` where an object is empty).
pub enum Shape<'a, T> {
    Object(T),
    Other(Node<'a>),
}

impl<'a, T: Object<'a>> Value<'a> for Shape<'a, T> {
    fn read_into(cursor: &mut Cursor<'a>, slot: &mut Option<Self>) -> Result<(), Error> {
        if cursor.peek() != Some(b'{') {
            *slot = Some(Shape::Other(Node::read(cursor)?));
            return Ok(());
        }
        match slot.insert(Shape::Object(T::default())) {
            Shape::Object(object) => read_object(cursor, object),
            Shape::Other(_) => Ok(()),
        }
    }
}

/// An array of `T`, or any other value kept as a [`Node`] to be described.
pub enum List<'a, T> {
    Items(Vec<T>),
    /// More than [`MAX_ITEMS`] elements: only counted, so that a body of small
    /// elements cannot make the reader hold many times its size.
    TooLong(usize),
    Other(Node<'a>),
}

/// The most elements of a list that are read; the cart-line limit (`MAX_CART_LINES`)
/// is checked against what is read, so it cannot be set above this.
pub const MAX_ITEMS: usize = 5_000;

impl<'a, T: Value<'a>> Value<'a> for List<'a, T> {
    fn read_into(cursor: &mut Cursor<'a>, slot: &mut Option<Self>) -> Result<(), Error> {
        if cursor.peek() != Some(b'[') {
            *slot = Some(List::Other(Node::read(cursor)?));
            return Ok(());
        }
        let mut items = Vec::new();
        let mut count = 0;
        cursor.array(|cursor| {
            count += 1;
            if count > MAX_ITEMS {
                return cursor.skip();
            }
            let mut item = None;
            T::read_into(cursor, &mut item)?;
            items.extend(item);
            Ok(())
        })?;
        *slot = Some(if count > MAX_ITEMS {
            List::TooLong(count)
        } else {
            List::Items(items)
        });
        Ok(())
    }
}

/// A JSON value as far as messages need it: scalars kept, containers described.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    /// As written (the reader checked it against the JSON grammar and its range):
    /// converted only where it is used, see [`json_number`].
    Number(&'a str),
    Str(Cow<'a, str>),
    EmptyArray,
    Array,
    Object,
}

impl<'a> Value<'a> for Node<'a> {
    fn read_into(cursor: &mut Cursor<'a>, slot: &mut Option<Self>) -> Result<(), Error> {
        *slot = Some(Node::read(cursor)?);
        Ok(())
    }
}

impl<'a> Node<'a> {
    fn read(cursor: &mut Cursor<'a>) -> Result<Self, Error> {
        match cursor.peek() {
            Some(b'"') => cursor.string().map(Node::Str),
            Some(b'[') => Ok(if cursor.skip_container()? {
                Node::EmptyArray
            } else {
                Node::Array
            }),
            Some(b'{') => cursor.skip_container().map(|_| Node::Object),
            _ => {
                let error = cursor.syntax_error();
                match cursor.scalar()? {
                    "null" => Ok(Node::Null),
                    "true" => Ok(Node::Bool(true)),
                    "false" => Ok(Node::Bool(false)),
                    // Out of range (`1e999`) is refused, as serde_json does.
                    number if in_range(number) => Ok(Node::Number(number)),
                    _ => Err(error),
                }
            }
        }
    }
}

impl Node<'_> {
    /// The reference validator treats absent and empty-string values as missing; so
    /// does this one, and `null` too (PHP serialises unset values as `null`).
    pub fn is_blank(&self) -> bool {
        match self {
            Node::Null => true,
            Node::Str(s) => s.is_empty(),
            _ => false,
        }
    }

    /// Blank, or PHP's empty array `[]` (how an empty value is often serialised).
    pub fn is_empty(&self) -> bool {
        self.is_blank() || matches!(self, Node::EmptyArray)
    }
}

/// Whether serde_json reads the number (the grammar already checked): out of range
/// (`1e999`) it does not. Without an exponent, fewer than 300 characters are always
/// in range; anything else is asked of serde_json itself, whose rounding near
/// `f64::MAX` is its own.
fn in_range(number: &str) -> bool {
    (number.len() < 300 && !number.contains(['e', 'E'])) || json_number(number).is_some()
}

/// A number of the payload as serde_json reads it: an integer when it is one that
/// fits, else an `f64`. `None` only for text the reader did not accept.
pub fn json_number(number: &str) -> Option<Number> {
    number.parse().ok()
}

/// A number as messages and identifiers show it (serde_json's rendering).
pub fn shown_number(number: &str) -> String {
    json_number(number).map_or_else(|| number.to_owned(), |n| n.to_string())
}

/// A short, bounded rendering of what was sent, for error messages.
impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 40;
        let text = match self {
            Node::Null => "null".to_owned(),
            Node::Bool(b) => b.to_string(),
            Node::Number(n) => shown_number(n),
            Node::Str(s) => format!("\"{}\"", Echo(s)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each listed field is read into its own place: `slots` gives, in the order of
    /// `FIELDS`, whether each place holds a value.
    fn reads_each_field_into_its_place<'a, T: Object<'a>>(slots: impl Fn(&T) -> Vec<bool>) {
        for (index, field) in T::FIELDS.iter().enumerate() {
            let text: &'static str = format!(r#"{{"{field}":"x"}}"#).leak();
            let mut object = T::default();
            read_object(&mut Cursor::new(text.as_bytes()), &mut object).unwrap();
            let filled: Vec<usize> = (slots(&object).into_iter().enumerate())
                .filter_map(|(slot, filled)| filled.then_some(slot))
                .collect();
            assert_eq!(filled, [index], "field {field}");
        }
    }

    #[test]
    fn every_listed_field_is_read_into_its_own_place() {
        let event = |e: &Event| [e.product.is_some(), e.info.is_some(), e.item.is_some()];
        reads_each_field_into_its_place::<Body>(|o| {
            [
                [o.data.is_some(), o.event_name.is_some()].as_slice(),
                &event(&o.event),
            ]
            .concat()
        });
        reads_each_field_into_its_place::<Data>(|o| {
            [
                [o.cart_id.is_some(), o.items.is_some()].as_slice(),
                &event(&o.event),
            ]
            .concat()
        });
        reads_each_field_into_its_place::<Event>(|o| event(o).to_vec());
        reads_each_field_into_its_place::<StarterItem>(|o| {
            vec![o.item_id.is_some(), o.sku.is_some(), o.qty.is_some()]
        });
        reads_each_field_into_its_place::<Product>(|o| vec![o.sku.is_some(), o.type_id.is_some()]);
        reads_each_field_into_its_place::<Info>(|o| vec![o.qty.is_some()]);
        reads_each_field_into_its_place::<QuoteItem>(|o| {
            vec![o.sku.is_some(), o.qty.is_some(), o.quote_id.is_some()]
        });
    }

    #[test]
    fn numbers_are_in_range_exactly_when_serde_json_reads_them() {
        let max = f64::MAX.to_string(); // 309 digits
        let mut cases = vec![
            "1e999".to_owned(),
            "-1e999".to_owned(),
            "1e-999".to_owned(),
            "1.7976931348623157e308".to_owned(),
            "1.7976931348623158e308".to_owned(),
            "1.7976931348623159e308".to_owned(),
            format!("1.7976931348623157{}e308", "0".repeat(40)),
            max.clone(),
            format!("{max}0"),
            format!("9{}", "9".repeat(310)),
            "-0".to_owned(),
            "12345678901234567890123".to_owned(),
        ];
        for digit in 0..10 {
            cases.push(format!("1.797693134862315{digit}e308"));
            cases.push(format!("1797693134862315{digit}{}", "0".repeat(292)));
        }
        for number in &cases {
            let serde = serde_json::from_str::<serde_json::Value>(number).is_ok();
            assert_eq!(in_range(number), serde, "{number}");
        }
    }

    #[test]
    fn a_repeated_field_is_refused_and_null_is_absent() {
        let text = br#"{"sku":null,"qty":"1","sku":"A"}"#;
        let read = read_object(&mut Cursor::new(text), &mut QuoteItem::default());
        assert!(matches!(read, Err(Error::Duplicate { field: "sku", .. })));
        let mut item = QuoteItem::default();
        read_object(&mut Cursor::new(br#"{"sku":null,"qty":"1"}"#), &mut item).unwrap();
        assert!(item.sku.is_none() && item.qty.is_some());
    }
}
