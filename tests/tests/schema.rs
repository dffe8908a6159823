//! The CRD's schema against a real API server (Kubernetes 1.20): the CRD with
//! every list and string bounded is accepted, a resource at the bounds is stored,
//! and one past any bound is refused by `kubectl apply` and by the API with the
//! field's path in the message, before the operator ever sees it. And what the
//! hardening fields become: `spec.limits` in the Deployment's environment, the
//! `Secured` condition in the status.

use std::time::Duration;

use commerce_webhook_operator::resource::{CommerceWebhook, Limits, bounds};
use commerce_webhook_operator::status::SECURED;
use e2e::{TestNamespace, install_crd, namespace_with_operator, tool, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A CommerceWebhook named `name` with `spec`.
fn webhook(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "integration.commerce.dev/v1alpha1",
        "kind": "CommerceWebhook",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// `count` literal inputs, each value `length` characters long.
fn inputs(count: u32, length: u32) -> Value {
    (0..count)
        .map(|i| json!({"name": format!("PARAM_{i}"), "value": "x".repeat(length as usize)}))
        .collect()
}

/// `kubectl apply --server-side -f` of `document` in the namespace: its output, or
/// its error (server-side, so that no last-applied annotation is refused first).
fn kubectl_apply(ns: &TestNamespace, document: &Value) -> Result<String, String> {
    let path = std::env::temp_dir().join(format!("{}-{}.json", ns.name, std::process::id()));
    std::fs::write(&path, document.to_string()).unwrap();
    let result = tool(
        "kubectl",
        &[
            "apply",
            "--server-side",
            "-n",
            &ns.name,
            "-f",
            path.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&path).unwrap();
    result
}

/// The start of an error (the API server echoes a refused value whole).
fn cut(error: &str) -> String {
    error.chars().take(2000).collect()
}

/// The attack of issue 17 (a 1.4 MB value) and one past each bound are refused,
/// each naming its field; a resource at every bound is accepted.
#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn an_oversized_resource_is_refused_with_the_field_path() {
    let ns = TestNamespace::new("schema").await;
    install_crd(&ns.client).await;

    let at_bounds = webhook(
        "at-bounds",
        json!({
            "inputs": inputs(bounds::MAX_INPUTS, bounds::MAX_INPUT_VALUE),
            "workload": {
                "image": format!("registry.example/{}", "a".repeat(bounds::MAX_IMAGE as usize - 17)),
                "resources": {"limits": {"memory": "128Mi", "cpu": 1}},
            },
            "limits": {"maxCartLines": 5000, "maxConnections": 1},
        }),
    );
    kubectl_apply(&ns, &at_bounds).unwrap_or_else(|e| panic!("a resource at the bounds: {e}"));

    let refused: [(&str, Value, &str); 6] = [
        (
            "huge-value",
            json!({"inputs": inputs(1, 1_400_000)}),
            "spec.inputs.value",
        ),
        (
            "long-value",
            json!({"inputs": inputs(1, bounds::MAX_INPUT_VALUE + 1)}),
            "spec.inputs.value",
        ),
        (
            "many-inputs",
            json!({"inputs": inputs(bounds::MAX_INPUTS + 1, 1)}),
            "spec.inputs",
        ),
        (
            "long-image",
            json!({"workload": {"image": "i".repeat(bounds::MAX_IMAGE as usize + 1)}}),
            "spec.workload.image",
        ),
        (
            "long-quantity",
            json!({"workload": {"resources": {"limits": {"memory": "1".repeat(bounds::MAX_QUANTITY as usize + 1)}}}}),
            "spec.workload.resources.limits",
        ),
        (
            "many-cart-lines",
            json!({"limits": {"maxCartLines": 5001}}),
            "spec.limits.maxCartLines",
        ),
    ];
    // Kubernetes 1.20 names a field inside a list without its index
    // (`spec.inputs.value`); later versions add it (`spec.inputs[0].value`).
    let mentions = |error: &str, path: &str| {
        error.contains(path) || error.contains(&path.replace("inputs.", "inputs[0]."))
    };
    for (name, spec, path) in refused {
        let document = webhook(name, spec);
        let error = kubectl_apply(&ns, &document).expect_err(name);
        assert!(
            mentions(&error, path),
            "{name}: {path} not in: {}",
            cut(&error)
        );
        // The API says the same to any client.
        let api = ns.api::<CommerceWebhook>();
        let resource: CommerceWebhook = serde_json::from_value(document).unwrap();
        let error = api
            .create(&Default::default(), &resource)
            .await
            .expect_err(name)
            .to_string();
        assert!(
            mentions(&error, path),
            "{name}: {path} not in: {}",
            cut(&error)
        );
        assert!(api.get_opt(name).await.unwrap().is_none(), "{name} stored");
    }
}

/// Every `spec.limits` field and the shortage message reach the webhook's
/// container as its variables, and a webhook without signature key or token is
/// reported `Secured: False` with the reason (no node needed: the Deployment and
/// the status are what is checked).
#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn limits_reach_the_deployment_and_an_open_webhook_is_reported() {
    let (ns, _operator) = namespace_with_operator("limits").await;
    let values: Vec<(&str, &str, String)> = Limits::ALL
        .iter()
        .map(|limit| {
            let value = limit.min + (limit.max - limit.min) / 2;
            (limit.field, limit.var, value.to_string())
        })
        .collect();
    let limits: serde_json::Map<String, Value> = values
        .iter()
        .map(|(field, _, value)| ((*field).to_owned(), json!(value.parse::<u32>().unwrap())))
        .collect();
    let document = webhook(
        "open",
        json!({"limits": limits, "commerce": {"shortageMessage": "Only a few {sku} left"}}),
    );
    ns.apply_yaml::<CommerceWebhook>(&document.to_string())
        .await
        .unwrap();

    let deployments = ns.api::<Deployment>();
    let env = wait_for("the webhook's Deployment", WAIT, || async {
        let pod = deployments.get("open").await.ok()?.spec?.template.spec?;
        pod.containers[0].env.clone()
    })
    .await;
    let value_of = |name: &str| {
        env.iter()
            .find(|var| var.name == name)
            .and_then(|var| var.value.clone())
    };
    for (field, var, value) in &values {
        assert_eq!(
            value_of(var).as_ref(),
            Some(value),
            "spec.limits.{field} -> {var}"
        );
    }
    assert_eq!(
        value_of("SHORTAGE_MESSAGE").as_deref(),
        Some("Only a few {sku} left")
    );

    let webhooks = ns.api::<CommerceWebhook>();
    let secured = wait_for("the Secured condition", WAIT, || async {
        let status = webhooks.get("open").await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == SECURED)
    })
    .await;
    assert_eq!(
        (secured.status.as_str(), secured.reason.as_str()),
        ("False", "Unauthenticated")
    );
    assert!(
        secured.message.contains("learn whether a SKU is in stock"),
        "the message without {{available}} does not show the stock: {}",
        secured.message
    );
}
