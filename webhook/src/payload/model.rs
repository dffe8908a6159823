//! The document model: the few fields of each payload shape that check-stock reads,
//! read by serde_json.
//!
//! Each object type lists its fields; [`read_object`] does the rest for all of them:
//! a repeated member is refused (PHP's `json_decode` keeps the last one, so a body
//! that repeats one is read differently by Commerce and by us), `null` reads as
//! absent, and unknown members are passed over by the parser as [`Ignored`], which
//! still refuses repeated members in every object it passes over. Each value stays a
//! [`Node`] until validated, so that a wrong value can be named in the message.
//!
//! The body is checked as UTF-8 once, up front: serde_json then reads a `&str`, and
//! what it passes over is valid UTF-8 too.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::marker::PhantomData;

use arrayvec::ArrayVec;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::Echo;

/// Why a body is not JSON, as serde_json words it (with line and column).
#[derive(Debug)]
pub struct Malformed(pub String);

/// Reads a whole body: one value, then only whitespace.
pub fn read_body(body: &[u8]) -> Result<Shape<'_, Body<'_>>, Malformed> {
    let text = std::str::from_utf8(body).map_err(|error| {
        let at = error.valid_up_to();
        let line_start = body[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = body[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Malformed(format!(
            "invalid UTF-8 at line {line} column {}",
            at - line_start + 1
        ))
    })?;
    serde_json::from_str(text).map_err(|error| Malformed(error.to_string()))
}

/// An object of the model: its fields as keyed in the payload, and where each
/// value goes.
pub trait Object<'de>: Default {
    const FIELDS: &'static [&'static str];
    /// Reads the value of `FIELDS[index]` from `map`.
    fn read_field<A: MapAccess<'de>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error>;
    /// How many members the object had, read or passed over.
    fn set_members(&mut self, members: usize);
}

/// Declares the model's objects: each field is `Option` of its type, `None` when
/// absent or `null` (PHP serialises unset values as `null`).
macro_rules! objects {
    ($($(#[$doc:meta])* $name:ident { $($field:ident: $key:literal => $ty:ty),* $(,)? })*) => {$(
        $(#[$doc])*
        #[derive(Default)]
        pub struct $name<'a> {
            $(pub $field: Option<$ty>,)*
            pub members: usize,
            _borrows: PhantomData<&'a str>,
        }

        impl<'a> Object<'a> for $name<'a> {
            const FIELDS: &'static [&'static str] = &[$($key),*];
            fn read_field<A: MapAccess<'a>>(&mut self, index: usize, map: &mut A) -> Result<(), A::Error> {
                match Self::FIELDS[index] {
                    $($key => self.$field = map.next_value::<$ty>()?.present(),)*
                    other => unreachable!("{other} is in FIELDS"),
                }
                Ok(())
            }
            fn set_members(&mut self, members: usize) {
                self.members = members;
            }
        }
    )*};
}

objects! {
    /// The top level: the default form's `data` and `eventName`, or the objects of a
    /// field-selected form.
    Body {
        data: "data" => Shape<'a, Data<'a>>,
        event_name: "eventName" => Node<'a>,
        product: "product" => Shape<'a, Product<'a>>,
        info: "info" => Shape<'a, Info<'a>>,
        item: "item" => Shape<'a, QuoteItem<'a>>,
    }
    /// `data`: the starter kit's fields, or an event's.
    Data {
        cart_id: "cart_id" => Node<'a>,
        items: "items" => List<'a, Shape<'a, StarterItem<'a>>>,
        product: "product" => Shape<'a, Product<'a>>,
        info: "info" => Shape<'a, Info<'a>>,
        item: "item" => Shape<'a, QuoteItem<'a>>,
    }
    /// One line of the starter kit's `data.items`.
    StarterItem {
        item_id: "item_id" => Node<'a>,
        sku: "sku" => Node<'a>,
        qty: "qty" => Node<'a>,
    }
    /// `product` of `observer.checkout_cart_product_add_before` (of its hundreds of
    /// attributes, only these two).
    Product {
        sku: "sku" => Node<'a>,
        type_id: "type_id" => Node<'a>,
    }
    /// `info`: the add-to-cart request (`qty`, `super_attribute`, `form_key`, ...).
    Info {
        qty: "qty" => Node<'a>,
    }
    /// `item` of `observer.sales_quote_item_save_before`.
    QuoteItem {
        sku: "sku" => Node<'a>,
        qty: "qty" => Node<'a>,
        quote_id: "quote_id" => Node<'a>,
    }
}

/// The objects of the two stock events, found under `data` (the default form) or
/// at the top level (a field-selected form).
pub struct Event<'a> {
    pub product: Option<Shape<'a, Product<'a>>>,
    pub info: Option<Shape<'a, Info<'a>>>,
    pub item: Option<Shape<'a, QuoteItem<'a>>>,
}

impl<'a> Body<'a> {
    pub fn event(&mut self) -> Event<'a> {
        Event {
            product: self.product.take(),
            info: self.info.take(),
            item: self.item.take(),
        }
    }
}

impl<'a> Data<'a> {
    pub fn event(&mut self) -> Event<'a> {
        Event {
            product: self.product.take(),
            info: self.info.take(),
            item: self.item.take(),
        }
    }
}

fn read_object<'de, T: Object<'de>, A: MapAccess<'de>>(mut map: A) -> Result<T, A::Error> {
    const { assert!(T::FIELDS.len() < 32, "fields are tracked in a u32") };
    let mut object = T::default();
    let mut seen = 0u32;
    let mut others = Keys::default();
    while let Some(Key(key)) = map.next_key()? {
        match T::FIELDS.iter().position(|field| *field == key) {
            Some(index) => {
                if seen & (1 << index) != 0 {
                    return Err(duplicate(&key));
                }
                seen |= 1 << index;
                object.read_field(index, &mut map)?;
            }
            None => {
                others.insert(key)?;
                map.next_value::<Ignored>()?;
            }
        }
    }
    object.set_members(seen.count_ones() as usize + others.len());
    Ok(object)
}

fn duplicate<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate field `{}`", Echo(key)))
}

/// A member's name: borrowed from the body unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The member names of one object, to refuse a repeated one: a short list on the
/// stack while few (most objects), then a hash set (a product's hundred attributes).
/// Its hasher, foldhash, is seeded at random for each set, which defeats a body of
/// names chosen in advance to collide; it claims no more than that, and a body
/// reaches this reader only after its signature or token is checked.
#[derive(Default)]
struct Keys<'de> {
    list: ArrayVec<Cow<'de, str>, { Keys::LIST_MAX }>,
    /// Members so far, in the list or the set: one comparison tells which of the
    /// two a name goes to.
    len: usize,
    set: Option<HashMap<Cow<'de, str>, (), foldhash::fast::RandomState>>,
}

impl<'de> Keys<'de> {
    const LIST_MAX: usize = 8;
    /// Sized once for a product's attributes rather than grown step by step.
    const SET_CAPACITY: usize = 128;

    fn insert<E: de::Error>(&mut self, key: Cow<'de, str>) -> Result<(), E> {
        if self.len < Self::LIST_MAX {
            if self.list.contains(&key) {
                return Err(duplicate(&key));
            }
            self.list.push(key);
        } else {
            let list = &mut self.list;
            let set = self.set.get_or_insert_with(|| {
                let mut set = HashMap::with_capacity_and_hasher(
                    Self::SET_CAPACITY,
                    foldhash::fast::RandomState::default(),
                );
                set.extend(list.drain(..).map(|seen| (seen, ())));
                set
            });
            match set.entry(key) {
                Entry::Occupied(seen) => return Err(duplicate(seen.key())),
                Entry::Vacant(slot) => slot.insert(()),
            };
        }
        self.len += 1;
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// A value passed over: validated by the parser (and its objects' members checked
/// for repeats), kept nowhere.
pub struct Ignored;

/// A value of the model, as built from what the parser found.
trait Read<'de>: Sized {
    fn scalar(node: Node<'de>) -> Self;
    fn map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        skip_map(map).map(|_| Self::scalar(Node::Object))
    }
    fn seq<A: SeqAccess<'de>>(seq: A) -> Result<Self, A::Error> {
        skip_seq(seq).map(|empty| Self::scalar(if empty { Node::EmptyArray } else { Node::Array }))
    }
    /// `None` for `null`: absent.
    fn present(self) -> Option<Self>;
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    let mut keys = Keys::default();
    while let Some(Key(key)) = map.next_key()? {
        keys.insert(key)?;
        map.next_value::<Ignored>()?;
    }
    Ok(())
}

/// Whether the array was empty.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<bool, A::Error> {
    let mut empty = true;
    while seq.next_element::<Ignored>()?.is_some() {
        empty = false;
    }
    Ok(empty)
}

/// Reads any JSON value as `T`.
struct AnyVisitor<T>(PhantomData<T>);

impl<'de, T: Read<'de>> Visitor<'de> for AnyVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::scalar(Node::Null))
    }
    fn visit_bool<E>(self, b: bool) -> Result<T, E> {
        Ok(T::scalar(Node::Bool(b)))
    }
    fn visit_u64<E>(self, n: u64) -> Result<T, E> {
        Ok(T::scalar(Node::Number(n.into())))
    }
    fn visit_i64<E>(self, n: i64) -> Result<T, E> {
        Ok(T::scalar(Node::Number(n.into())))
    }
    fn visit_f64<E>(self, n: f64) -> Result<T, E> {
        // serde_json refuses what does not fit an f64, so `n` is finite.
        Ok(T::scalar(
            Number::from_f64(n).map_or(Node::Null, Node::Number),
        ))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<T, E> {
        Ok(T::scalar(Node::Str(Cow::Borrowed(s))))
    }
    fn visit_str<E>(self, s: &str) -> Result<T, E> {
        Ok(T::scalar(Node::Str(Cow::Owned(s.to_owned()))))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::seq(seq)
    }
}

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor(PhantomData))
    }
}

impl<'de, T: Object<'de>> Deserialize<'de> for Shape<'de, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<'de, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor(PhantomData))
    }
}

impl<'de> Read<'de> for Ignored {
    fn scalar(_: Node<'de>) -> Self {
        Ignored
    }
    fn present(self) -> Option<Self> {
        Some(self)
    }
}

impl<'de> Read<'de> for Node<'de> {
    fn scalar(node: Node<'de>) -> Self {
        node
    }
    fn present(self) -> Option<Self> {
        (self != Node::Null).then_some(self)
    }
}

/// An object read as `T`, or any other value kept as a [`Node`] to be described
/// (PHP sends `[]` or `""` where an object is empty).
pub enum Shape<'a, T> {
    Object(T),
    Other(Node<'a>),
}

impl<'de, T: Object<'de>> Read<'de> for Shape<'de, T> {
    fn scalar(node: Node<'de>) -> Self {
        Shape::Other(node)
    }
    fn map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        read_object(map).map(Shape::Object)
    }
    fn present(self) -> Option<Self> {
        (!matches!(self, Shape::Other(Node::Null))).then_some(self)
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

impl<'de, T: Deserialize<'de>> Read<'de> for List<'de, T> {
    fn scalar(node: Node<'de>) -> Self {
        List::Other(node)
    }
    fn seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::new();
        while items.len() < MAX_ITEMS {
            match seq.next_element()? {
                Some(item) => items.push(item),
                None => return Ok(List::Items(items)),
            }
        }
        if seq.next_element::<Ignored>()?.is_none() {
            return Ok(List::Items(items));
        }
        let mut count = items.len() + 1;
        drop(items);
        while seq.next_element::<Ignored>()?.is_some() {
            count += 1;
        }
        Ok(List::TooLong(count))
    }
    fn present(self) -> Option<Self> {
        (!matches!(self, List::Other(Node::Null))).then_some(self)
    }
}

/// A JSON value as far as messages need it: scalars kept, containers described.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
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

/// A short, bounded rendering of what was sent, for error messages.
impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 40;
        let text = match self {
            Node::Null => "null".to_owned(),
            Node::Bool(b) => b.to_string(),
            Node::Number(n) => n.to_string(),
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

    /// How a name is written in the body.
    type Spelling = fn(&str) -> String;

    /// An object of `count` distinct names (`k0`, `k1`, ...), the name at `again`
    /// repeated at the end in the spelling given.
    fn object(count: usize, again: Option<(usize, Spelling)>) -> String {
        let mut members: Vec<String> = (0..count).map(|i| format!(r#""k{i}":{i}"#)).collect();
        if let Some((at, spell)) = again {
            members.push(format!(r#""{}":"again""#, spell(&format!("k{at}"))));
        }
        format!("{{{}}}", members.join(","))
    }

    fn plain(name: &str) -> String {
        name.to_owned()
    }

    /// The same name with its first letter escaped, which serde_json unescapes
    /// into an owned string.
    fn escaped(name: &str) -> String {
        format!("\\u{:04x}{}", u32::from(name.as_bytes()[0]), &name[1..])
    }

    #[test]
    fn a_repeated_member_is_refused_in_objects_of_any_size_and_spelling() {
        for count in [1, 2, 7, 8, 9, 10, 16, Keys::SET_CAPACITY + 1, 300] {
            for at in [0, count / 2, count - 1] {
                for spell in [plain as Spelling, escaped] {
                    for body in [
                        // Passed over, under a model object and at the top level.
                        format!(
                            r#"{{"item":{{"sku":"A","x":{}}}}}"#,
                            object(count, Some((at, spell)))
                        ),
                        format!(r#"{{"data":{}}}"#, object(count, Some((at, spell)))),
                    ] {
                        let error = read_body(body.as_bytes())
                            .err()
                            .unwrap_or_else(|| panic!("{count} members, k{at} again: read"));
                        assert!(
                            error.0.contains(&format!("duplicate field `k{at}`")),
                            "{}",
                            error.0
                        );
                    }
                }
            }
            for body in [
                format!(r#"{{"item":{{"sku":"A","x":{}}}}}"#, object(count, None)),
                format!(r#"{{"data":{}}}"#, object(count, None)),
            ] {
                assert!(
                    read_body(body.as_bytes()).is_ok(),
                    "{count} distinct members"
                );
            }
        }
    }

    #[test]
    fn members_are_counted_past_the_short_list() {
        let body = format!(r#"{{"data":{}}}"#, object(Keys::SET_CAPACITY + 5, None));
        let Ok(Shape::Object(top)) = read_body(body.as_bytes()) else {
            panic!("not read");
        };
        let Some(Shape::Object(data)) = top.data else {
            panic!("no data");
        };
        assert_eq!(data.members, Keys::SET_CAPACITY + 5);
    }
}
