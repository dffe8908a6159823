//! Arbitrary input never panics the webhook and always yields a Commerce operation.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use clap::Parser;
use commerce_webhook::config::Config;
use commerce_webhook::contract::Args;
use commerce_webhook::payload::{PayloadError, parse_check_stock};
use commerce_webhook::server::AppState;
use commerce_webhook::startup;
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::sync::Arc;

fn runtime_and_state() -> (tokio::runtime::Runtime, Arc<AppState>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let args = Args::parse_from(["commerce-webhook", "--max-body-bytes", "65536"]);
    let config = Config::from_args(&args).unwrap();
    let state = runtime.block_on(startup::app_state(&config)).unwrap();
    (runtime, state)
}

/// Checks that `answer` is `{"op":"success"}` or `{"op":"exception","message":<string>}`.
fn assert_commerce_operation(answer: &Value) {
    match answer.get("op").and_then(Value::as_str) {
        Some("success") => assert_eq!(answer.as_object().map(Map::len), Some(1), "{answer}"),
        Some("exception") => {
            let message = answer.get("message").and_then(Value::as_str).unwrap_or("");
            assert!(!message.is_empty(), "exception without message: {answer}");
        }
        _ => panic!("not a Commerce operation: {answer}"),
    }
}

fn answer(runtime: &tokio::runtime::Runtime, state: &AppState, body: Vec<u8>) -> Value {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let operation = runtime.block_on(state.check_stock.answer(&headers, Body::from(body)));
    serde_json::to_value(operation).unwrap()
}

/// JSON of any shape, biased towards the fields check-stock reads.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9 .-]{0,8}".prop_map(Value::String),
        prop_oneof!["-?[0-9]{1,4}(\\.[0-9]{1,3})?", "MS-0[1-3]"].prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("data".to_owned()),
            Just("cart_id".to_owned()),
            Just("items".to_owned()),
            Just("sku".to_owned()),
            Just("qty".to_owned()),
            Just("item_id".to_owned()),
            Just("product".to_owned()),
            Just("info".to_owned()),
            Just("item".to_owned()),
            "[a-z]{1,5}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_get_an_operation(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let (runtime, state) = runtime_and_state();
        assert_commerce_operation(&answer(&runtime, &state, body));
    }

    #[test]
    fn arbitrary_json_shapes_get_an_operation(payload in arbitrary_json()) {
        let (runtime, state) = runtime_and_state();
        let wrapped = serde_json::json!({"data": payload.clone()});
        for value in [payload, wrapped] {
            assert_commerce_operation(&answer(&runtime, &state, value.to_string().into_bytes()));
        }
    }

    #[test]
    fn every_valid_json_body_is_read_not_called_malformed(payload in arbitrary_json(), pretty: bool) {
        for value in [serde_json::json!({"data": payload.clone()}), payload] {
            let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
            let result = parse_check_stock(text.as_bytes());
            prop_assert!(!matches!(result, Err(PayloadError::MalformedJson(_))), "{value}: {result:?}");
        }
    }

    /// The reader skims what follows an object's last known field: whatever comes
    /// before, between or after the fields read, the request read is the same.
    #[test]
    fn attributes_around_the_fields_read_do_not_change_the_request(
        // Distinct names: a repeated member is refused (PHP would read the last).
        extra in prop::collection::btree_map("x_[a-z_]{0,6}", arbitrary_json(), 0..9),
        pretty: bool,
    ) {
        let members: Vec<String> = extra
            .iter()
            .map(|(key, value)| {
                let value = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
                format!("{}:{}", Value::from(key.as_str()), value.unwrap())
            })
            .collect();
        let third = members.len() / 3;
        let (before, rest) = members.split_at(third);
        let (between, after) = rest.split_at(third);
        let object = |fields: [&str; 2]| {
            let parts: Vec<String> = [before, &[fields[0].to_owned()], between, &[fields[1].to_owned()], after]
                .concat();
            format!("{{{}}}", parts.join(if pretty { ",\n " } else { "," }))
        };
        let cases = [
            (
                format!(r#"{{"data":{{"product":{},"info":{}}}}}"#, object([r#""sku":"MS-01""#, r#""type_id":"simple""#]), object([r#""qty":"2""#, r#""form_key":"k""#])),
                r#"{"data":{"product":{"sku":"MS-01","type_id":"simple"},"info":{"qty":"2"}}}"#,
            ),
            (
                format!(r#"{{"data":{{"item":{}}}}}"#, object([r#""qty":"3.0000""#, r#""sku":"MS-02""#])),
                r#"{"data":{"item":{"sku":"MS-02","qty":"3.0000"}}}"#,
            ),
        ];
        for (noisy, plain) in cases {
            prop_assert_eq!(parse_check_stock(noisy.as_bytes()), parse_check_stock(plain.as_bytes()), "{}", noisy);
        }
    }
}
