//! The webhook over real HTTP on loopback.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{BackOfficeStub, Behaviour, Service, cart, exception, success};
use reqwest::{Method, StatusCode};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;

const DEADLINE_MS: &str = "300";

#[tokio::test]
async fn answers_success_and_short_stock_from_the_embedded_inventory() {
    let service = Service::start(&[]).await;
    let (status, answer) = service
        .check(&cart(json!([{"item_id": 1, "sku": "MS-01", "qty": 2}, {"item_id": 2, "sku": "MS-02", "qty": "2"}])))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, success());

    let (status, answer) = service
        .check(&cart(json!([
            {"item_id": 1, "sku": "MS-01", "qty": 1},
            {"item_id": 2, "sku": "MS-02", "qty": 3},
            {"item_id": 3, "sku": "MS-03", "qty": 1},
            {"item_id": 4, "sku": "UNKNOWN", "qty": 1}
        ])))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        exception(
            "Not enough stock for MS-02 (requested 3, available 2); Not enough stock for MS-03 (requested 1, available 0); Not enough stock for UNKNOWN (requested 1, available 0)"
        )
    );
}

#[tokio::test]
async fn every_validation_failure_is_a_200_exception_naming_the_problem() {
    let service = Service::start(&["--max-body-bytes", "2048"]).await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"data": {"cart_id": "", "items": null}}),
            "missing parameter(s) 'data.cart_id,data.items'",
        ),
        (
            json!({"data": {"product": {"sku": "MS-01"}, "info": {"qty": "none"}}}),
            "invalid parameter 'data.info.qty': expected a positive number, got \"none\"",
        ),
        (
            json!({"data": {"items": [{"sku": "A", "qty": 1}]}}),
            "missing parameter(s) 'data.cart_id'",
        ),
        (
            json!({"data": {"cart_id": "1"}}),
            "missing parameter(s) 'data.items'",
        ),
        (
            json!({"data": {"cart_id": "1", "items": "MS-01"}}),
            "invalid parameter 'data.items': expected a non-empty array of items, got \"MS-01\"",
        ),
        (
            cart(json!([{"item_id": 9, "sku": "MS-01", "qty": 0}])),
            "invalid item data.items[0] (item_id 9): 'qty' must be a positive number, got 0",
        ),
        (
            cart(json!([{"item_id": 1, "sku": "MS-01", "qty": 1}, {"item_id": 2, "qty": 1}])),
            "invalid item data.items[1] (item_id 2): 'sku' is missing",
        ),
    ];
    for (payload, message) in cases {
        let (status, answer) = service.check(&payload).await;
        assert_eq!(status, StatusCode::OK, "{payload}");
        assert_eq!(answer, exception(message), "{payload}");
    }

    let json_type = [("content-type", "application/json")];
    let (status, answer) = service.post_raw(b"{\"data\": ".to_vec(), &json_type).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["op"], "exception");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON body: EOF"),
        "{answer}"
    );

    let (status, answer) = service
        .post_raw(
            b"cart_id=1".to_vec(),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        exception(
            "unsupported Content-Type 'application/x-www-form-urlencoded': send application/json"
        )
    );

    let huge = format!("{{\"data\": {{\"cart_id\": \"{}\"}}}}", "x".repeat(10_000));
    let (status, answer) = service.post_raw(huge.into_bytes(), &json_type).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        exception("request body is larger than the limit of 2048 bytes")
    );

    // The limit is not fooled by a body that grows past it without a Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 500])).collect();
    let response = service
        .client
        .post(service.url("/webhook/check-stock"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&response.text().await.unwrap()).unwrap(),
        exception("request body is larger than the limit of 2048 bytes")
    );
}

/// A body stream without a known length (chunked transfer encoding).
fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn the_configured_exception_type_is_added() {
    let graphql = "Magento\\Framework\\GraphQl\\Exception\\GraphQlInputException";
    let service = Service::start(&["--exception-type", graphql]).await;
    let (_, answer) = service
        .check(&cart(json!([{"sku": "MS-03", "qty": 1}])))
        .await;
    assert_eq!(
        answer,
        json!({"op": "exception", "message": "Not enough stock for MS-03 (requested 1, available 0)", "type": graphql})
    );
}

#[tokio::test]
async fn asks_the_back_office_with_its_token_and_answers_from_it() {
    let stub = BackOfficeStub::start(Behaviour::Stock(
        vec![("A", 5.0), ("B", 1.0)],
        Duration::ZERO,
    ))
    .await;
    let service = Service::start(&[
        "--backoffice-url",
        &stub.url,
        "--backoffice-token",
        "erp-secret",
    ])
    .await;
    let (_, answer) = service
        .check(&cart(
            json!([{"sku": "A", "qty": 5}, {"sku": "B", "qty": "1"}]),
        ))
        .await;
    assert_eq!(answer, success());
    let (_, answer) = service
        .check(&cart(
            json!([{"sku": "A", "qty": 2}, {"sku": "B", "qty": 2}]),
        ))
        .await;
    assert_eq!(
        answer,
        exception("Not enough stock for B (requested 2, available 1)")
    );

    let seen = stub.seen.lock().unwrap();
    assert_eq!(
        seen.bodies[0],
        json!({"cart_id": "42", "items": [{"sku": "A", "qty": 5.0}, {"sku": "B", "qty": 1.0}]})
    );
    assert_eq!(seen.authorization[0].as_deref(), Some("Bearer erp-secret"));
}

/// Each way a back-office fails, under each policy, answered before the deadline.
#[tokio::test]
async fn back_office_failures_follow_the_policy() {
    let fallback = "Stock unavailable, try again";
    let failures = [
        ("hangs", Behaviour::Hang),
        (
            "slower than its timeout",
            Behaviour::Stock(vec![("A", 5.0)], Duration::from_millis(250)),
        ),
        ("answers 503", Behaviour::Status(503)),
        ("answers garbage", Behaviour::Body("<html>oops</html>")),
        (
            "leaves out a SKU",
            Behaviour::Body(r#"{"items":[{"sku":"OTHER","available":9}]}"#),
        ),
        (
            "claims negative stock",
            Behaviour::Body(r#"{"items":[{"sku":"A","available":-3}]}"#),
        ),
        (
            "answers the wrong shape",
            Behaviour::Body(r#"{"items":[{"sku":"A","available":"many"}]}"#),
        ),
    ];
    for (what, behaviour) in failures {
        let stub = BackOfficeStub::start(behaviour).await;
        for (policy, expected) in [("deny", exception(fallback)), ("allow", success())] {
            let service = Service::start(&[
                "--backoffice-url",
                &stub.url,
                "--backoffice-timeout-ms",
                "100",
                "--request-deadline-ms",
                DEADLINE_MS,
                "--backoffice-on-error",
                policy,
                "--fallback-error-message",
                fallback,
            ])
            .await;
            let (status, answer) = service.check(&cart(json!([{"sku": "A", "qty": 1}]))).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "back-office {what}, policy {policy}"
            );
            assert_eq!(answer, expected, "back-office {what}, policy {policy}");
        }
    }

    let refused = common::refused_url().await;
    let service = Service::start(&[
        "--backoffice-url",
        &refused,
        "--fallback-error-message",
        fallback,
    ])
    .await;
    let (_, answer) = service.check(&cart(json!([{"sku": "A", "qty": 1}]))).await;
    assert_eq!(
        answer,
        exception(fallback),
        "refused connection, default policy deny"
    );
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("commerce_webhook_backoffice_failures_total{reason=\"unreachable\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("commerce_webhook_requests_total{outcome=\"source_error_denied\"} 1"),
        "{metrics}"
    );
}

/// The request deadline holds even when the back-office timeout is longer.
#[tokio::test]
async fn the_deadline_cuts_a_back_office_slower_than_its_own_timeout() {
    let stub = BackOfficeStub::start(Behaviour::Hang).await;
    let service = Service::start(&[
        "--backoffice-url",
        &stub.url,
        "--backoffice-timeout-ms",
        "60000",
        "--request-deadline-ms",
        DEADLINE_MS,
        "--fallback-error-message",
        "too slow",
    ])
    .await;
    let (_, answer) = service.check(&cart(json!([{"sku": "A", "qty": 1}]))).await;
    assert_eq!(answer, exception("too slow"));
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("commerce_webhook_requests_total{outcome=\"deadline_denied\"} 1"),
        "{metrics}"
    );
}

fn sign(key: &RsaPrivateKey, body: &[u8]) -> String {
    let signer = SigningKey::<Sha256>::new(key.clone());
    BASE64.encode(signer.sign(BASE64.encode(body).as_bytes()).to_bytes())
}

#[tokio::test]
async fn verifies_commerce_signatures() {
    let mut rng = rand::thread_rng();
    let key = RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let other_key = RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let pem = RsaPublicKey::from(&key)
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let service = Service::start(&["--commerce-webhooks-public-key", &pem]).await;
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));

    let body = cart(json!([{"sku": "MS-01", "qty": 1}]))
        .to_string()
        .into_bytes();
    let json_type = ("content-type", "application/json");
    let header = "x-adobe-commerce-webhook-signature";

    let good = sign(&key, &body);
    let (_, answer) = service
        .post_raw(body.clone(), &[json_type, (header, &good)])
        .await;
    assert_eq!(answer, success());

    let (_, answer) = service.post_raw(body.clone(), &[json_type]).await;
    assert_eq!(
        answer,
        exception("missing webhook signature header 'x-adobe-commerce-webhook-signature'")
    );

    let wrong_key = sign(&other_key, &body);
    let (_, answer) = service
        .post_raw(body.clone(), &[json_type, (header, &wrong_key)])
        .await;
    assert_eq!(answer, exception("invalid webhook signature"));

    let tampered = cart(json!([{"sku": "MS-01", "qty": 9}]))
        .to_string()
        .into_bytes();
    let (_, answer) = service
        .post_raw(tampered, &[json_type, (header, &good)])
        .await;
    assert_eq!(answer, exception("invalid webhook signature"));

    let (_, answer) = service
        .post_raw(body, &[json_type, (header, "not base64!")])
        .await;
    assert_eq!(answer, exception("invalid webhook signature"));
}

#[tokio::test]
async fn requires_the_bearer_token_when_configured() {
    let service = Service::start(&["--webhook-auth-token", "s3cr3t"]).await;
    let body = cart(json!([{"sku": "MS-01", "qty": 1}]))
        .to_string()
        .into_bytes();
    let json_type = ("content-type", "application/json");
    let (_, answer) = service
        .post_raw(
            body.clone(),
            &[json_type, ("authorization", "Bearer s3cr3t")],
        )
        .await;
    assert_eq!(answer, success());
    let (_, answer) = service
        .post_raw(
            body.clone(),
            &[json_type, ("authorization", "Bearer s3cr3")],
        )
        .await;
    assert_eq!(answer, exception("invalid Authorization bearer token"));
    let (_, answer) = service.post_raw(body, &[json_type]).await;
    assert_eq!(
        answer,
        exception("missing or malformed Authorization bearer token")
    );
}

#[tokio::test]
async fn reloads_the_inventory_file_and_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.yaml");
    std::fs::write(&path, "SKU-1: 1\n").unwrap();
    let service = Service::start(&[
        "--inventory-file",
        path.to_str().unwrap(),
        "--inventory-reload-ms",
        "20",
    ])
    .await;
    let two = cart(json!([{"sku": "SKU-1", "qty": 2}]));
    let (_, answer) = service.check(&two).await;
    assert_eq!(
        answer,
        exception("Not enough stock for SKU-1 (requested 2, available 1)")
    );

    // Replace the file the way a ConfigMap update does: write aside, rename over.
    let staged = dir.path().join(".staged");
    std::fs::write(&staged, "{\"SKU-1\": 5}").unwrap();
    std::fs::rename(&staged, &path).unwrap();
    assert_eq!(eventually(&service, &two, &success()).await, success());

    // A non-atomic write of an invalid document (the reloader may even see the file
    // empty, half-written) must not replace the good inventory.
    std::fs::write(&path, "SKU-1: [not, a, number]").unwrap();
    // Give the reloader several periods to (wrongly) pick up the invalid file.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, answer) = service.check(&two).await;
    assert_eq!(answer, success(), "the last good inventory keeps serving");
}

/// Asks until the answer is `wanted` (bounded), returning the last answer.
async fn eventually(service: &Service, payload: &Value, wanted: &Value) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = service.check(payload).await.1;
        if &last == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let service = Service::start(&[]).await;
    let get = |path: &str| service.client.get(service.url(path)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    service
        .check(&cart(json!([{"sku": "MS-01", "qty": 1}])))
        .await;
    service.check(&json!({})).await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("commerce_webhook_requests_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("commerce_webhook_requests_total{outcome=\"invalid_request\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("commerce_webhook_request_duration_seconds_count 2"),
        "{metrics}"
    );
}

/// The webhook path is answered outside the router: the other methods on it, other
/// paths and a query string must still get what a router would give.
#[tokio::test]
async fn only_a_post_to_the_webhook_path_is_a_call() {
    let service = Service::start(&["--webhook-path", "/hooks/stock"]).await;
    let webhook = service.url("/hooks/stock");
    let refused = service.client.get(&webhook).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refused.headers()["allow"], "POST");
    for method in [Method::PUT, Method::HEAD, Method::OPTIONS] {
        let refused = service
            .client
            .request(method.clone(), &webhook)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(refused.headers()["allow"], "POST", "{method}");
        assert!(refused.bytes().await.unwrap().is_empty(), "{method}");
    }
    for path in ["/webhook/check-stock", "/hooks/stock/", "/hooks"] {
        let response = service.client.post(service.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let answer = service
        .client
        .post(format!("{webhook}?store=default"))
        .header("content-type", "application/json")
        .body(cart(json!([{"sku": "MS-01", "qty": 1}])).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["content-type"], "application/json");
    assert_eq!(answer.text().await.unwrap(), r#"{"op":"success"}"#);
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let stub = BackOfficeStub::start(Behaviour::Stock(
        vec![("A", 5.0)],
        Duration::from_millis(400),
    ))
    .await;
    let mut service = Service::start(&[
        "--backoffice-url",
        &stub.url,
        "--backoffice-timeout-ms",
        "2000",
        "--request-deadline-ms",
        "3000",
        "--shutdown-drain-ms",
        "1000",
    ])
    .await;
    let in_flight = {
        let client = service.client.clone();
        let url = service.url("/webhook/check-stock");
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(cart(json!([{"sku": "A", "qty": 1}])).to_string())
                .send()
                .await
                .map(|r| r.status())
        })
    };
    // Wait until the back-office has the call, so the request really is in flight.
    for _ in 0..200 {
        if !stub.seen.lock().unwrap().bodies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        stub.seen.lock().unwrap().bodies.len(),
        1,
        "request reached the back-office"
    );
    service.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let readiness = reqwest::get(service.url("/readyz")).await.unwrap().status();
    assert_eq!(
        readiness,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while draining"
    );

    assert_eq!(in_flight.await.unwrap().unwrap(), StatusCode::OK);
    let served = tokio::time::timeout(Duration::from_secs(10), &mut service.task)
        .await
        .expect("server stops")
        .unwrap();
    assert!(served.is_ok(), "server returned {served:?}");
    assert!(
        reqwest::get(service.url("/healthz")).await.is_err(),
        "listener closed after shutdown"
    );
}

#[tokio::test]
async fn the_back_office_client_follows_no_redirect() {
    let elsewhere = BackOfficeStub::start(Behaviour::Stock(vec![("A", 5.0)], Duration::ZERO)).await;
    let redirecting = BackOfficeStub::start(Behaviour::Redirect(elsewhere.url.clone())).await;
    let service = Service::start(&[
        "--backoffice-url",
        &redirecting.url,
        "--fallback-error-message",
        "no stock answer",
    ])
    .await;
    let (_, answer) = service.check(&cart(json!([{"sku": "A", "qty": 1}]))).await;
    assert_eq!(answer, exception("no stock answer"));
    assert!(elsewhere.seen.lock().unwrap().bodies.is_empty());
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("commerce_webhook_backoffice_failures_total{reason=\"status\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn big_carts_are_capped_and_echoed_values_are_escaped_and_capped() {
    let service = Service::start(&[
        "--max-cart-lines",
        "3",
        "--shortage-message",
        "{sku} is sold out",
    ])
    .await;
    let lines: Vec<Value> = (0..4)
        .map(|i| json!({"sku": format!("S{i}"), "qty": 1}))
        .collect();
    let (_, answer) = service.check(&cart(Value::Array(lines))).await;
    assert_eq!(
        answer,
        exception("the cart has 4 lines; at most 3 are checked per call")
    );

    // The template, with a SKU that tries to forge a log line and hide text.
    let sku = format!("EVIL\n2024 INFO forged\u{202e}{}", "x".repeat(200));
    let (_, answer) = service.check(&cart(json!([{"sku": sku, "qty": 1}]))).await;
    let message = answer["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("EVIL\\n2024 INFO forged\\u{202e}xx"),
        "{message}"
    );
    assert!(message.ends_with("x… is sold out"), "{message}");
    assert!(message.chars().count() < 100, "{message}");

    let item_id = "7\r\nforged".to_owned() + &"y".repeat(500);
    let (_, answer) = service
        .check(&cart(json!([{"item_id": item_id, "sku": "A", "qty": -1}])))
        .await;
    let message = answer["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("invalid item data.items[0] (item_id 7\\r\\nforgedyy"),
        "{message}"
    );
    assert!(message.chars().count() < 200, "{message}");
}

#[tokio::test]
async fn a_stale_inventory_is_reported_and_can_make_the_pod_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.yaml");
    std::fs::write(&path, "100234: 5\n").unwrap();
    let service = Service::start(&[
        "--inventory-file",
        path.to_str().unwrap(),
        "--inventory-reload-ms",
        "20",
        "--inventory-stale-not-ready",
        "true",
    ])
    .await;
    // A numeric SKU key loads as the SKU Commerce sends (a string).
    let (_, answer) = service
        .check(&cart(json!([{"sku": "100234", "qty": 5}])))
        .await;
    assert_eq!(answer, success());
    let readiness = || async {
        let response = service
            .client
            .get(service.url("/readyz"))
            .send()
            .await
            .unwrap();
        response.status()
    };
    assert_eq!(readiness().await, StatusCode::OK);

    std::fs::write(&path, "100234: [not, a, number]").unwrap();
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = readiness().await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "stale: not ready");
    assert!(
        service
            .metrics()
            .await
            .contains("commerce_webhook_inventory_stale 1")
    );
    let (_, answer) = service
        .check(&cart(json!([{"sku": "100234", "qty": 5}])))
        .await;
    assert_eq!(answer, success(), "the last good inventory still serves");

    std::fs::write(&path, "100234: 6\n").unwrap();
    for _ in 0..100 {
        status = readiness().await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::OK, "fresh again: ready");
    assert!(
        service
            .metrics()
            .await
            .contains("commerce_webhook_inventory_stale 0")
    );
}
