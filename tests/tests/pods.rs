//! Webhook pods as the operator runs them, on the local node: the environment the
//! operator writes is exactly what the binary accepts (every option set, served for
//! real), and rolling updates and deleted pods lose no Commerce call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use commerce_webhook_operator::resource::CommerceWebhook;
use e2e::{
    CallStream, Commerce, endpoint_addresses, host_address, namespace_with_operator, ready_pods,
    tool, wait_for_pods,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

const IN_STOCK: &str = r#"{"data":{"cart_id":"7","items":[{"item_id":1,"sku":"MS-01","qty":1}]}}"#;
const SHORT: &str = r#"{"data":{"cart_id":"7","items":[{"item_id":1,"sku":"MS-03","qty":1}]}}"#;

fn selector(name: &str) -> String {
    format!("app.kubernetes.io/instance={name}")
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn rolling_updates_and_deleted_pods_lose_no_call() {
    let (ns, _operator) = namespace_with_operator("rollout").await;
    ns.apply_yaml::<Secret>(
        "{apiVersion: v1, kind: Secret, metadata: {name: erp}, stringData: {param: one}}",
    )
    .await
    .unwrap();
    ns.apply_yaml::<CommerceWebhook>(
        r#"
apiVersion: integration.commerce.dev/v1alpha1
kind: CommerceWebhook
metadata: {name: stream}
spec:
  inputs: [{name: ERP_PARAM, valueFrom: {secretKeyRef: {name: erp, key: param}}}]
  workload: {replicas: 2}
"#,
    )
    .await
    .unwrap();
    let before = ready_pods(&ns, &selector("stream"), 2).await;
    wait_for_pods(&ns, "2 endpoints", || async {
        (endpoint_addresses(&ns, "stream").await == 2).then_some(())
    })
    .await;
    let commerce = Commerce::to_service(&ns, "stream", "/webhook/check-stock").await;
    commerce
        .eventually(IN_STOCK, Duration::from_secs(30), |a| a["op"] == "success")
        .await;

    let started = tokio::time::Instant::now();
    let stream = CallStream::start(commerce, IN_STOCK, json!({"op": "success"}), 25);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A Secret the webhook reads changes: the pods roll, one at a time.
    let changed = json!({"stringData": {"param": "two"}});
    ns.api::<Secret>()
        .patch("erp", &PatchParams::default(), &Patch::Merge(&changed))
        .await
        .unwrap();
    let rolled = wait_for_pods(&ns, "2 new Ready pods replacing the old", || async {
        let now = ready_pods(&ns, &selector("stream"), 2).await;
        now.iter().all(|pod| !before.contains(pod)).then_some(now)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A pod is deleted under the same stream: it is replaced.
    ns.api::<Pod>()
        .delete(&rolled[0], &DeleteParams::default())
        .await
        .unwrap();
    wait_for_pods(&ns, "a replacement for the deleted pod", || async {
        let now = ready_pods(&ns, &selector("stream"), 2).await;
        (!now.contains(&rolled[0])).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let report = stream.finish().await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        report.failures.is_empty(),
        "{} of {} calls failed: {:?}",
        report.failures.len(),
        report.calls,
        &report.failures[..report.failures.len().min(5)]
    );
    assert!(
        report.calls as f64 >= 20.0 * seconds,
        "the stream kept at least 20 calls/s: {} calls in {seconds:.1} s",
        report.calls
    );
}

/// A back-office on this machine's container-network address, as an ERP would
/// answer: MS-01 has 10, everything else none. It insists on its bearer token.
async fn start_back_office() -> (SocketAddr, Arc<AtomicUsize>) {
    async fn stock(
        State(calls): State<Arc<AtomicUsize>>,
        headers: HeaderMap,
        Json(query): Json<Value>,
    ) -> Result<Json<Value>, StatusCode> {
        let authorized =
            headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer erp-secret");
        if !authorized {
            return Err(StatusCode::UNAUTHORIZED);
        }
        calls.fetch_add(1, Ordering::Relaxed);
        let items: Vec<Value> = query["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|item| {
                let available = if item["sku"] == "MS-01" { 10 } else { 0 };
                json!({"sku": item["sku"], "available": available})
            })
            .collect();
        Ok(Json(json!({"items": items})))
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind((host_address(), 0))
        .await
        .expect("bind the back-office on the container network");
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/stock", post(stock))
        .with_state(calls.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, calls)
}

/// An RSA key pair from openssl, as the Commerce Admin generates one, and a signer
/// that signs like Commerce: RSA-SHA256 over the base64 of the body.
struct CommerceKey {
    dir: std::path::PathBuf,
    public_pem: String,
}

impl CommerceKey {
    fn generate(dir: std::path::PathBuf) -> CommerceKey {
        std::fs::create_dir_all(&dir).unwrap();
        let private = dir.join("private.pem");
        let private = private.to_str().unwrap();
        tool("openssl", &["genrsa", "-out", private, "2048"]).unwrap();
        let public_pem = tool("openssl", &["rsa", "-in", private, "-pubout"]).unwrap();
        CommerceKey { dir, public_pem }
    }

    fn sign(&self, body: &str) -> String {
        let encoded = self.dir.join("body.b64");
        std::fs::write(&encoded, BASE64.encode(body)).unwrap();
        let signature = self.dir.join("body.sig");
        tool(
            "openssl",
            &[
                "dgst",
                "-sha256",
                "-sign",
                self.dir.join("private.pem").to_str().unwrap(),
                "-out",
                signature.to_str().unwrap(),
                encoded.to_str().unwrap(),
            ],
        )
        .unwrap();
        BASE64.encode(std::fs::read(&signature).unwrap())
    }
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn every_option_the_crd_offers_reaches_a_serving_pod() {
    let (ns, _operator) = namespace_with_operator("options").await;
    let (back_office, back_office_calls) = start_back_office().await;
    let key = CommerceKey::generate(std::env::temp_dir().join(&ns.name));
    let keys = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "commerce"},
        "stringData": {"token": "hook-token", "erp": "erp-secret", "public-key": key.public_pem}
    });
    ns.apply_yaml::<Secret>(&keys.to_string()).await.unwrap();
    ns.apply_yaml::<k8s_openapi::api::core::v1::ConfigMap>(
        "{apiVersion: v1, kind: ConfigMap, metadata: {name: stock}, data: {inventory.yaml: 'MS-01: 10'}}",
    )
    .await
    .unwrap();
    let common = r#"
  path: /hooks/stock
  authToken: {name: commerce, key: token}
  signaturePublicKey: {name: commerce, key: public-key}
  inputs:
    - {name: LOG_LEVEL, value: debug}
  workload: {replicas: 1}
  commerce:
    timeoutMs: 1500
    fallbackErrorMessage: Stock check unavailable
    exceptionType: 'Magento\Framework\Exception\LocalizedException'
"#;
    let back_office_hook = format!(
        "apiVersion: integration.commerce.dev/v1alpha1\nkind: CommerceWebhook\nmetadata: {{name: erp}}\nspec:{common}  stock:\n    backOffice: {{url: 'http://{back_office}/stock', timeoutMs: 300, onError: deny, token: {{name: commerce, key: erp}}}}\n"
    );
    let inventory_hook = format!(
        "apiVersion: integration.commerce.dev/v1alpha1\nkind: CommerceWebhook\nmetadata: {{name: shelf}}\nspec:{common}  stock:\n    inventory: {{configMapKeyRef: {{name: stock, key: inventory.yaml}}}}\n"
    );
    ns.apply_yaml::<CommerceWebhook>(&back_office_hook)
        .await
        .unwrap();
    ns.apply_yaml::<CommerceWebhook>(&inventory_hook)
        .await
        .unwrap();

    for hook in ["erp", "shelf"] {
        ready_pods(&ns, &selector(hook), 1).await;
        let commerce = Commerce::to_service(&ns, hook, "/hooks/stock")
            .await
            .with_header("authorization", "Bearer hook-token");
        let signed = |body: &str| key.sign(body);
        let in_stock = signed(IN_STOCK);
        let answer = wait_for_pods(&ns, "a signed call to be served", || async {
            let headers = [("x-adobe-commerce-webhook-signature", in_stock.as_str())];
            commerce.call_with(IN_STOCK, &headers).await.ok()
        })
        .await;
        assert_eq!(answer, json!({"op": "success"}), "{hook}");
        let short = signed(SHORT);
        let headers = [("x-adobe-commerce-webhook-signature", short.as_str())];
        let answer = commerce.call_with(SHORT, &headers).await.unwrap();
        assert_eq!(answer["op"], "exception", "{hook}: {answer}");
        assert_eq!(
            answer["type"], "Magento\\Framework\\Exception\\LocalizedException",
            "{hook}: {answer}"
        );
        // The signature is checked: a call signed for another body is refused.
        let headers = [("x-adobe-commerce-webhook-signature", in_stock.as_str())];
        let answer = commerce.call_with(SHORT, &headers).await.unwrap();
        assert_eq!(
            answer["message"], "invalid webhook signature",
            "{hook}: {answer}"
        );
        // And the token: without it, refused.
        let unauthenticated = Commerce::to_service(&ns, hook, "/hooks/stock").await;
        let headers = [("x-adobe-commerce-webhook-signature", in_stock.as_str())];
        let answer = unauthenticated.call_with(IN_STOCK, &headers).await.unwrap();
        assert_eq!(answer["op"], "exception", "{hook}: {answer}");
    }
    assert!(
        back_office_calls.load(Ordering::Relaxed) >= 2,
        "the erp hook asked the back-office with its token"
    );
}
