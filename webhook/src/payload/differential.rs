//! Our reading against serde_json's `Value` on arbitrary JSON-ish bytes: a
//! proptest property and a bounded, seeded mutation fuzzer (stable toolchain, part
//! of `cargo test`; `FUZZ_ITERATIONS` and `PROPTEST_CASES` make them run longer).
//!
//! The oracle: a body is refused exactly when serde_json refuses it or an object
//! in it repeats a member; otherwise every field we use reads as in `Value`.

use std::fmt::Write;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::model::{
    Body, Info, List, MAX_ITEMS, Node, Product, QuoteItem, Shape, StarterItem, read_body,
};

/// Whether some object of a (serde_json-valid) body repeats a member.
struct Repeats(bool);

impl<'de> Deserialize<'de> for Repeats {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Repeats;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any")
            }
            fn visit_unit<E>(self) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Repeats, A::Error> {
                let mut any = false;
                while let Some(Repeats(r)) = seq.next_element()? {
                    any |= r;
                }
                Ok(Repeats(any))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Repeats, A::Error> {
                let mut keys = std::collections::HashSet::new();
                let mut any = false;
                while let Some(key) = map.next_key::<String>()? {
                    any |= !keys.insert(key);
                    any |= map.next_value::<Repeats>()?.0;
                }
                Ok(Repeats(any))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Checks our reading of `body` against the oracle; the failure says where.
fn check(body: &[u8]) -> Result<(), String> {
    let oracle = serde_json::from_slice::<Value>(body);
    let repeats = serde_json::from_slice::<Repeats>(body).map(|r| r.0);
    let ours = read_body(body);
    match (oracle, repeats, ours) {
        (Err(_), _, Err(_)) | (Ok(_), Ok(true), Err(_)) => Ok(()),
        (Err(error), _, Ok(_)) => Err(format!("we read what serde_json refuses: {error}")),
        (Ok(_), Ok(true), Ok(_)) => Err("we read a repeated member".into()),
        (Ok(_), _, Err(error)) => Err(format!("we refuse what serde_json reads: {}", error.0)),
        (Ok(value), _, Ok(shape)) => shape_matches(&shape, Some(&value), "", body_matches),
    }
}

type Fields<T> = fn(&T, &Value, &str) -> Result<(), String>;

fn shape_matches<T>(
    shape: &Shape<'_, T>,
    value: Option<&Value>,
    at: &str,
    fields: Fields<T>,
) -> Result<(), String> {
    match (shape, value) {
        (Shape::Object(object), Some(value @ Value::Object(_))) => fields(object, value, at),
        (Shape::Other(node), value) => node_matches(Some(node), value, at),
        (Shape::Object(_), value) => Err(format!("{at}: an object read, {value:?} sent")),
    }
}

fn optional_shape<T>(
    shape: &Option<Shape<'_, T>>,
    value: Option<&Value>,
    at: &str,
    fields: Fields<T>,
) -> Result<(), String> {
    match shape {
        Some(shape) => shape_matches(shape, value, at, fields),
        None => node_matches(None, value, at),
    }
}

fn node_matches(node: Option<&Node<'_>>, value: Option<&Value>, at: &str) -> Result<(), String> {
    let same = match (node, value) {
        (None, None | Some(Value::Null)) => true,
        (Some(Node::Bool(a)), Some(Value::Bool(b))) => a == b,
        (Some(Node::Number(a)), Some(Value::Number(b))) => a == b,
        (Some(Node::Str(a)), Some(Value::String(b))) => a == b,
        (Some(Node::EmptyArray), Some(Value::Array(a))) => a.is_empty(),
        (Some(Node::Array), Some(Value::Array(a))) => !a.is_empty(),
        (Some(Node::Object), Some(Value::Object(_))) => true,
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(format!("{at}: read {node:?}, sent {value:?}"))
    }
}

fn body_matches(body: &Body<'_>, value: &Value, _: &str) -> Result<(), String> {
    optional_shape(&body.data, value.get("data"), "data", |data, value, at| {
        node_matches(data.cart_id.as_ref(), value.get("cart_id"), at)?;
        match (&data.items, value.get("items")) {
            (Some(List::Items(items)), Some(Value::Array(sent))) => {
                if items.len() != sent.len() {
                    return Err(format!(
                        "{at}.items: {} read, {} sent",
                        items.len(),
                        sent.len()
                    ));
                }
                for (item, sent) in items.iter().zip(sent) {
                    shape_matches(item, Some(sent), "items[]", starter_item_matches)?;
                }
            }
            (Some(List::TooLong(n)), Some(Value::Array(sent))) => {
                if *n != sent.len() || *n <= MAX_ITEMS {
                    return Err(format!("{at}.items: counted {n}, sent {}", sent.len()));
                }
            }
            (Some(List::Other(node)), sent) => node_matches(Some(node), sent, "items")?,
            (None, sent) => node_matches(None, sent, "items")?,
            (read, sent) => {
                return Err(format!(
                    "items: read a list, sent {sent:?} ({})",
                    read.is_some()
                ));
            }
        }
        event_matches(&data.product, &data.info, &data.item, value)
    })?;
    node_matches(
        body.event_name.as_ref(),
        value.get("eventName"),
        "eventName",
    )?;
    event_matches(&body.product, &body.info, &body.item, value)
}

fn event_matches(
    product: &Option<Shape<'_, Product<'_>>>,
    info: &Option<Shape<'_, Info<'_>>>,
    item: &Option<Shape<'_, QuoteItem<'_>>>,
    value: &Value,
) -> Result<(), String> {
    optional_shape(product, value.get("product"), "product", |p, v, at| {
        node_matches(p.sku.as_ref(), v.get("sku"), at)?;
        node_matches(p.type_id.as_ref(), v.get("type_id"), at)
    })?;
    optional_shape(info, value.get("info"), "info", |i, v, at| {
        node_matches(i.qty.as_ref(), v.get("qty"), at)
    })?;
    optional_shape(item, value.get("item"), "item", |i, v, at| {
        node_matches(i.sku.as_ref(), v.get("sku"), at)?;
        node_matches(i.qty.as_ref(), v.get("qty"), at)?;
        node_matches(i.quote_id.as_ref(), v.get("quote_id"), at)
    })
}

fn starter_item_matches(item: &StarterItem<'_>, value: &Value, at: &str) -> Result<(), String> {
    node_matches(item.item_id.as_ref(), value.get("item_id"), at)?;
    node_matches(item.sku.as_ref(), value.get("sku"), at)?;
    node_matches(item.qty.as_ref(), value.get("qty"), at)
}

/// JSON-ish text: mostly the members we read, values PHP sends, and the near
/// misses a reader gets wrong (leading zeros, bad escapes, lone surrogates).
#[derive(Debug, Clone)]
enum Doc {
    Raw(&'static str),
    Arr(Vec<Doc>),
    Obj(Vec<(&'static str, Doc)>),
}

const KEYS: &[&str] = &[
    "data",
    "eventName",
    "product",
    "info",
    "item",
    "cart_id",
    "items",
    "item_id",
    "sku",
    "qty",
    "type_id",
    "quote_id",
    "name",
    "\\u0073ku",
    "s\\u006bu",
    "\\ud800",
    "",
];

const SCALARS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1",
    "2",
    "01",
    "-",
    "1.",
    "1.5",
    "0.1",
    "1e999",
    "-1e5",
    "1E2",
    "18446744073709551616",
    "9007199254740993",
    "\"\"",
    "\"MS-01\"",
    "\"2\"",
    "\"1.0000\"",
    "\"a\\\"b\"",
    "\"\\u0041\"",
    "\"\\ud83d\\ude00\"",
    "\"\\ud800\"",
    "\"\\x\"",
    "\"\\u12\"",
    "\"\t\"",
    "\"é\"",
    "[]",
    "{}",
    "nul",
    "tru",
    "NaN",
];

fn doc() -> impl Strategy<Value = Doc> {
    let leaf = proptest::sample::select(SCALARS).prop_map(Doc::Raw);
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Doc::Arr),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6)
                .prop_map(Doc::Obj),
        ]
    })
}

fn render(doc: &Doc, out: &mut String) {
    match doc {
        Doc::Raw(text) => out.push_str(text),
        Doc::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render(item, out);
            }
            out.push(']');
        }
        Doc::Obj(members) => {
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\"{key}\":");
                render(value, out);
            }
            out.push('}');
        }
    }
}

/// Bytes a mutation puts in: JSON's punctuation, and bytes that are not UTF-8.
const MUTATION_BYTES: &[u8] = b"{}[],:\"\\ 0123456789-+.eEtfnu\xff\xc3\x80\xed";

fn mutate(body: &mut Vec<u8>, rng: &mut impl Rng) {
    let at = rng.gen_range(0..=body.len());
    let byte = MUTATION_BYTES[rng.gen_range(0..MUTATION_BYTES.len())];
    match rng.gen_range(0..4) {
        0 => body.insert(at, byte),
        1 if at < body.len() => {
            body.remove(at);
        }
        2 if at < body.len() => body[at] = byte,
        _ => {
            // Repeat a stretch (a member, often): the duplicate-key case.
            let end = (at + rng.gen_range(1..40)).min(body.len());
            let stretch = body[at..end].to_vec();
            body.splice(end..end, stretch);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn our_reading_is_serde_jsons_plus_refused_repeats(
        doc in doc(),
        mutations in proptest::collection::vec(any::<u64>(), 0..3),
    ) {
        let mut text = String::new();
        render(&Doc::Obj(vec![("data", doc.clone()), ("item", doc)]), &mut text);
        let mut body = text.into_bytes();
        for seed in mutations {
            mutate(&mut body, &mut StdRng::seed_from_u64(seed));
        }
        if let Err(problem) = check(&body) {
            return Err(TestCaseError::fail(format!("{problem}\n{}", String::from_utf8_lossy(&body))));
        }
    }
}

/// A bounded fuzzer: the fixtures Commerce sends, mutated a few bytes at a time.
#[test]
fn mutated_commerce_payloads_read_as_serde_json_reads_them() {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    seeds.push(
        br#"{"data":{"cart_id":"c","items":[{"item_id":1,"sku":"MS-01","qty":"2"}]}}"#.to_vec(),
    );
    seeds.push(br#"{"item":{"sku":"MS-01","qty":"2.0000","quote_id":"7"}}"#.to_vec());
    assert!(seeds.len() >= 7, "the fixtures are read");
    let mut rng = StdRng::seed_from_u64(18);
    let mut refused = 0;
    for i in 0..iterations {
        let mut body = seeds[i % seeds.len()].clone();
        for _ in 0..rng.gen_range(1..4) {
            mutate(&mut body, &mut rng);
        }
        refused += usize::from(read_body(&body).is_err());
        if let Err(problem) = check(&body) {
            panic!("{problem}\n{}", String::from_utf8_lossy(&body));
        }
    }
    // Both sides of the oracle are exercised.
    assert!(
        refused > iterations / 10 && refused < iterations,
        "{refused} of {iterations} refused"
    );
}
