//! Plays Commerce against what `commerce-config` prints: takes the printed hook (the
//! PaaS webhooks.xml and the SaaS REST body), applies its field selection to recorded
//! default payloads of the chosen event, as Commerce does, sends the result to a real
//! webhook on loopback, and checks the answers. A hook that selects a path the event
//! does not have fails here, before any merchant pastes it.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Parser;
use commerce_webhook::config::Config;
use commerce_webhook::contract::Args;
use commerce_webhook::{server, startup};
use commerce_webhook_operator::commerce_config::{self, HookConfig, Origin, SECTION};
use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value, json};

/// The hook as Commerce reads it, from either printed form.
#[derive(Debug, PartialEq)]
struct Hook {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    /// `(name, source)`
    fields: Vec<(String, String)>,
}

/// Recorded default payloads of each event (PHP noise included), by file name.
fn recorded(method: &str) -> Vec<(&'static str, Value)> {
    let names: &[&str] = match method {
        "observer.checkout_cart_product_add_before" => &[
            "add-to-cart-simple.json",
            "add-to-cart-no-qty.json",
            "add-to-cart-configurable.json",
        ],
        "observer.sales_quote_item_save_before" => &[
            "quote-item-save-simple.json",
            "quote-item-save-configurable.json",
        ],
        other => panic!("no recorded payloads for {other}"),
    };
    names
        .iter()
        .map(|name| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../webhook/tests/fixtures")
                .join(name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (*name, value)
        })
        .collect()
}

/// What `commerce-config -f <manifest>` prints for this manifest.
fn print_config(manifest: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "commerce-roundtrip-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("check-stock.yaml");
    std::fs::write(&path, manifest).expect("write manifest");
    let cwh = commerce_config::from_manifest(&path, None).expect("manifest is valid");
    let hook = HookConfig::for_resource(&cwh, Origin::Manifest(path));
    let output = commerce_config::render(&cwh, &hook).expect("renders");
    std::fs::remove_dir_all(&dir).expect("clean temp dir");
    output
}

/// The body of the printed section whose title starts with `title`.
fn section<'a>(output: &'a str, title: &str) -> &'a str {
    let start = output
        .find(&format!("{SECTION}{title}"))
        .unwrap_or_else(|| panic!("no section {title:?} in\n{output}"));
    let body = &output[start..];
    let body = &body[body.find('\n').map_or(body.len(), |i| i + 1)..];
    &body[..body.find(SECTION).unwrap_or(body.len())]
}

fn xml_hook(xml: &str) -> Hook {
    let mut reader = Reader::from_str(xml);
    let mut hook = Hook {
        method: String::new(),
        url: String::new(),
        headers: Vec::new(),
        fields: Vec::new(),
    };
    let mut header_name = None;
    loop {
        match reader
            .read_event()
            .expect("printed webhooks.xml is well-formed")
        {
            Event::Start(e) | Event::Empty(e) => {
                let attribute = |name: &str| {
                    e.try_get_attribute(name)
                        .expect("attribute is well-formed")
                        .map(|a| {
                            a.normalized_value(XmlVersion::Implicit1_0)
                                .expect("value unescapes")
                                .into_owned()
                        })
                };
                match e.name().as_ref() {
                    "method" => hook.method = attribute("name").expect("method name"),
                    "hook" => hook.url = attribute("url").expect("hook url"),
                    "header" => header_name = attribute("name"),
                    "field" => hook.fields.push((
                        attribute("name").expect("field name"),
                        attribute("source").expect("field source"),
                    )),
                    _ => {}
                }
            }
            Event::Text(text) => {
                if let Some(name) = header_name.take() {
                    // The printed header holds no entity, so its text is one event.
                    hook.headers.push((name, text.xml10_content().into_owned()));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    hook
}

fn rest_hook(json: &str) -> Hook {
    let body: Value = serde_json::from_str(json).expect("printed REST body is JSON");
    let webhook = &body["webhook"];
    let pairs = |list: &Value, key: &str, value: &str| -> Vec<(String, String)> {
        list.as_array()
            .map(|list| {
                list.iter()
                    .map(|entry| {
                        (
                            entry[key].as_str().expect("string").to_owned(),
                            entry[value].as_str().expect("string").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    Hook {
        method: webhook["webhook_method"]
            .as_str()
            .expect("method")
            .to_owned(),
        url: webhook["url"].as_str().expect("url").to_owned(),
        headers: pairs(&webhook["headers"], "name", "value"),
        fields: pairs(&webhook["fields"], "name", "source"),
    }
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |value, key| value.get(key))
}

/// Every source must exist in the event (in at least one recorded payload of it):
/// a path the event lacks would reach the webhook as `null` on every call.
fn check_sources(hook: &Hook, payloads: &[(&str, Value)]) -> Result<(), String> {
    for (_, source) in &hook.fields {
        if !payloads
            .iter()
            .any(|(_, payload)| lookup(payload, source).is_some())
        {
            return Err(format!(
                "the hook selects {source}, which {} does not have",
                hook.method
            ));
        }
    }
    Ok(())
}

/// Commerce's field selection: the value at each `source` goes to `name` (a path
/// missing from this payload arrives as `null`).
fn select(hook: &Hook, payload: &Value) -> Value {
    let mut selected = Value::Object(Map::new());
    for (name, source) in &hook.fields {
        let value = lookup(payload, source).cloned().unwrap_or(Value::Null);
        let mut target = &mut selected;
        let mut keys = name.split('.').peekable();
        while let Some(key) = keys.next() {
            let object = target.as_object_mut().expect("names nest objects");
            if keys.peek().is_none() {
                object.insert(key.to_owned(), value.clone());
                break;
            }
            target = object.entry(key).or_insert_with(|| json!({}));
        }
    }
    selected
}

/// A webhook on loopback serving the printed hook's path; returns its base URL.
async fn start_webhook(path: &str, extra: &[&str]) -> String {
    let mut argv = vec!["commerce-webhook", "--webhook-path", path];
    argv.extend_from_slice(extra);
    let args = Args::try_parse_from(argv).expect("webhook flags are valid");
    let config = Config::from_args(&args).expect("webhook configuration is valid");
    let state = startup::app_state(&config).await.expect("webhook starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (limits, policy) = (config.connections, config.shutdown);
    let path = config.webhook_path.clone();
    tokio::spawn(async move {
        server::serve(
            listener,
            state,
            &path,
            limits,
            policy,
            std::future::pending(),
        )
        .await
    });
    base
}

/// The path of the printed URL: Commerce's calls land on it, here on loopback.
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("/", |slash| &after_scheme[slash..])
}

/// Sends what Commerce would: the selected payload, the hook's headers (placeholders
/// resolved with `token`), and the signature when a key is given.
async fn call(
    base: &str,
    hook: &Hook,
    body: &Value,
    token: Option<&str>,
    key: Option<&RsaPrivateKey>,
) -> Value {
    let body = serde_json::to_vec(body).expect("serialises");
    let mut request = reqwest::Client::new()
        .post(format!("{base}{}", url_path(&hook.url)))
        .header("content-type", "application/json");
    for (name, value) in &hook.headers {
        let token = token.expect("a hook with headers needs the token");
        let value = value
            .replace("{env:COMMERCE_WEBHOOK_AUTH_TOKEN}", token)
            .replace("<token>", token);
        request = request.header(name, value);
    }
    if let Some(key) = key {
        let signer = SigningKey::<Sha256>::new(key.clone());
        let signature = BASE64.encode(signer.sign(BASE64.encode(&body).as_bytes()).to_bytes());
        request = request.header("x-adobe-commerce-webhook-signature", signature);
    }
    let response = request.body(body).send().await.expect("webhook answers");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("answer body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"))
}

fn manifest(commerce: &str, extra: &str) -> String {
    format!(
        "apiVersion: integration.commerce.dev/v1alpha1\nkind: CommerceWebhook\nmetadata:\n  name: check-stock\n  namespace: shop\nspec:\n  ingress: {{host: shop.example.com, tlsSecretName: shop-tls}}\n  commerce: {commerce}\n{extra}"
    )
}

fn success() -> Value {
    json!({"op": "success"})
}

fn short(sku: &str, requested: u32, available: u32) -> Value {
    json!({"op": "exception", "message": format!("Not enough stock for {sku} (requested {requested}, available {available})")})
}

/// Both printed forms of the hook, checked against the event's recorded payloads.
fn printed_hooks(manifest: &str) -> Vec<Hook> {
    let output = print_config(manifest);
    let hooks = vec![
        xml_hook(section(&output, "PaaS")),
        rest_hook(section(&output, "SaaS")),
    ];
    // Header values differ on purpose: PaaS reads the token from Commerce's
    // environment, SaaS has it pasted in.
    let essentials = |hook: &Hook| (hook.method.clone(), hook.url.clone(), hook.fields.clone());
    assert_eq!(
        essentials(&hooks[0]),
        essentials(&hooks[1]),
        "webhooks.xml and the REST body differ"
    );
    for hook in &hooks {
        assert_eq!(hook.url, "https://shop.example.com/webhook/check-stock");
        check_sources(hook, &recorded(&hook.method)).unwrap_or_else(|e| panic!("{e}"));
    }
    hooks
}

// The webhook answers from its built-in sample inventory: MS-01: 10, MS-03: 0,
// WJ-12-M-Blue: 25 (webhook/sample-inventory.yaml).

#[tokio::test]
async fn add_to_cart_hook_fed_real_events_answers_in_stock_short_qty_absent_and_configurable() {
    let hooks = printed_hooks(&manifest("{}", ""));
    let base = start_webhook("/webhook/check-stock", &[]).await;
    let payloads = recorded("observer.checkout_cart_product_add_before");
    let payload = |name: &str| {
        payloads
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, payload)| payload.clone())
            .expect("recorded payload")
    };
    let mut more = payload("add-to-cart-simple.json");
    more["data"]["info"]["qty"] = json!("11");
    let cases = [
        ("in stock", payload("add-to-cart-simple.json"), success()),
        ("short", more, short("MS-01", 11, 10)),
        (
            "qty absent",
            payload("add-to-cart-no-qty.json"),
            short("MS-03", 1, 0),
        ),
        (
            "configurable (let through)",
            payload("add-to-cart-configurable.json"),
            success(),
        ),
    ];
    for hook in &hooks {
        assert_eq!(hook.method, "observer.checkout_cart_product_add_before");
        for (case, event, expected) in &cases {
            let selected = select(hook, event);
            assert_eq!(
                call(&base, hook, &selected, None, None).await,
                *expected,
                "{case}: {selected}"
            );
            // The same event unselected (a hook without fields) answers the same.
            assert_eq!(
                call(&base, hook, event, None, None).await,
                *expected,
                "{case}, default payload"
            );
        }
    }
}

#[tokio::test]
async fn quote_item_hook_fed_real_events_checks_the_cart_total_and_the_configurable_child() {
    let hooks = printed_hooks(&manifest(
        "{event: observer.sales_quote_item_save_before}",
        "",
    ));
    let base = start_webhook("/webhook/check-stock", &[]).await;
    let payloads = recorded("observer.sales_quote_item_save_before");
    let (simple, configurable) = (payloads[0].1.clone(), payloads[1].1.clone());
    let mut simple_short = simple.clone();
    simple_short["data"]["item"]["qty"] = json!("12.0000");
    let mut configurable_short = configurable.clone();
    configurable_short["data"]["item"]["qty"] = json!(30);
    let cases = [
        ("in stock", simple, success()),
        ("short", simple_short, short("MS-01", 12, 10)),
        ("configurable child in stock", configurable, success()),
        (
            "configurable child short",
            configurable_short,
            short("WJ-12-M-Blue", 30, 25),
        ),
    ];
    for hook in &hooks {
        assert_eq!(hook.method, "observer.sales_quote_item_save_before");
        for (case, event, expected) in &cases {
            let selected = select(hook, event);
            assert_eq!(
                call(&base, hook, &selected, None, None).await,
                *expected,
                "{case}: {selected}"
            );
        }
    }
}

#[tokio::test]
async fn hook_with_token_and_signature_is_accepted_and_unsigned_calls_refused() {
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
    let pem = RsaPublicKey::from(&key)
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let hooks = printed_hooks(&manifest(
        "{}",
        "  authToken: {name: hook-token, key: token}\n  signaturePublicKey: {name: commerce-key, key: pem}\n",
    ));
    let base = start_webhook(
        "/webhook/check-stock",
        &[
            "--webhook-auth-token",
            "s3cret",
            "--commerce-webhooks-public-key",
            &pem,
        ],
    )
    .await;
    let event = recorded("observer.checkout_cart_product_add_before")[0]
        .1
        .clone();
    for hook in &hooks {
        assert_eq!(hook.headers.len(), 1, "{hook:?}");
        let selected = select(hook, &event);
        assert_eq!(
            call(&base, hook, &selected, Some("s3cret"), Some(&key)).await,
            success()
        );
        assert_eq!(
            call(&base, hook, &selected, Some("s3cret"), None).await,
            json!({"op": "exception", "message": "missing webhook signature header 'x-adobe-commerce-webhook-signature'"})
        );
    }
}

#[test]
fn a_hook_selecting_paths_the_event_lacks_fails_the_check() {
    // What commerce-config printed before: the starter kit's paths.
    let stale = Hook {
        method: "observer.checkout_cart_product_add_before".into(),
        url: "https://shop.example.com/webhook/check-stock".into(),
        headers: Vec::new(),
        fields: vec![
            ("data.cart_id".into(), "data.cart_id".into()),
            ("data.items".into(), "data.items".into()),
        ],
    };
    assert_eq!(
        check_sources(&stale, &recorded(&stale.method)),
        Err("the hook selects data.cart_id, which observer.checkout_cart_product_add_before does not have".into())
    );
    let wrong_event = Hook {
        fields: vec![("item.sku".into(), "data.item.sku".into())],
        ..stale
    };
    assert!(check_sources(&wrong_event, &recorded(&wrong_event.method)).is_err());
}
