//! The operator against a real API server: each test has its own namespace and its
//! own in-process operator watching only that namespace.

use std::time::Duration;

use commerce_webhook_operator::children::CONFIG_HASH_ANNOTATION;
use commerce_webhook_operator::leader::LeaseLock;
use commerce_webhook_operator::resource::CommerceWebhook;
use e2e::{
    Operator, TestNamespace, event_reasons, install_crd, namespace_with_operator, wait_for,
    wait_for_pods,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

const SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: commerce-keys}
stringData: {auth-token: first-token, erp-token: erp-1}
"#;

const WEBHOOK: &str = r#"
apiVersion: integration.commerce.dev/v1alpha1
kind: CommerceWebhook
metadata: {name: check-stock}
spec:
  inputs:
    - {name: LOG_LEVEL, value: debug}
    - {name: HERE_YOUR_PARAM, valueFrom: {secretKeyRef: {name: commerce-keys, key: erp-token}}}
  authToken: {name: commerce-keys, key: auth-token}
  workload: {replicas: 1}
  commerce: {timeoutMs: 2000, fallbackErrorMessage: Try again later}
"#;

/// A namespace with the operator, the Secret and the webhook applied, and the
/// webhook's Deployment once it exists.
async fn deployed(prefix: &str) -> (TestNamespace, Operator, Deployment) {
    let (ns, operator) = namespace_with_operator(prefix).await;
    ns.apply_yaml::<Secret>(SECRET).await.unwrap();
    ns.apply_yaml::<CommerceWebhook>(WEBHOOK).await.unwrap();
    let deployment = deployment(&ns).await;
    (ns, operator, deployment)
}

fn ready_condition(cwh: &CommerceWebhook) -> Option<&Condition> {
    cwh.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Waits until the webhook's Deployment and Service are gone.
async fn children_gone(ns: &TestNamespace, what: &str) {
    let deployments = ns.api::<Deployment>();
    let services = ns.api::<Service>();
    wait_for(what, WAIT, || async {
        let gone = deployments.get_opt("check-stock").await.ok()?.is_none()
            && services.get_opt("check-stock").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
}

/// Waits until the resource's Ready condition has `reason`, and returns the resource.
async fn wait_for_reason(ns: &TestNamespace, name: &str, reason: &str) -> CommerceWebhook {
    let api = ns.api::<CommerceWebhook>();
    let what = format!("CommerceWebhook {name} to report {reason}");
    wait_for(&what, WAIT, || async {
        let cwh = api.get(name).await.ok()?;
        let ready = ready_condition(&cwh)?;
        (ready.reason == reason).then_some(cwh.clone())
    })
    .await
}

/// A spec change the operator must apply to the Deployment.
async fn set_log_level_warn(ns: &TestNamespace) {
    let change = json!({"spec": {"inputs": [{"name": "LOG_LEVEL", "value": "warn"}]}});
    ns.api::<CommerceWebhook>()
        .patch(
            "check-stock",
            &PatchParams::default(),
            &Patch::Merge(change),
        )
        .await
        .unwrap();
}

fn ready_message(cwh: &CommerceWebhook) -> String {
    cwh.status.as_ref().unwrap().conditions[0].message.clone()
}

async fn deployment(ns: &TestNamespace) -> Deployment {
    let api = ns.api::<Deployment>();
    wait_for("the webhook Deployment", WAIT, || async {
        api.get_opt("check-stock").await.ok().flatten()
    })
    .await
}

fn config_hash(deployment: &Deployment) -> String {
    let template = &deployment.spec.as_ref().unwrap().template;
    template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

/// Waits until the node runs the webhook's pod, its readiness probe passes, and the
/// operator reports it: Ready=True.
async fn wait_until_ready(ns: &TestNamespace) -> CommerceWebhook {
    let api = ns.api::<CommerceWebhook>();
    wait_for_pods(ns, "Ready=True from the pods' readiness", || async {
        let cwh = api.get("check-stock").await.ok()?;
        let ready = ready_condition(&cwh)?;
        (ready.status == "True").then_some(cwh.clone())
    })
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn deploys_inputs_and_secret_references_and_reports_readiness() {
    let (ns, _operator) = namespace_with_operator("deploy").await;
    ns.apply_yaml::<Secret>(SECRET).await.unwrap();
    ns.apply_yaml::<CommerceWebhook>(WEBHOOK).await.unwrap();

    let progressing = wait_for_reason(&ns, "check-stock", "Progressing").await;
    let status = progressing.status.clone().unwrap();
    assert_eq!(
        status.url.as_deref(),
        Some(format!("http://check-stock.{}.svc/webhook/check-stock", ns.name).as_str())
    );
    assert_eq!(status.observed_generation, progressing.metadata.generation);

    let deployment = deployment(&ns).await;
    let pod = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some(e2e::WEBHOOK_IMAGE));
    let env = container.env.as_ref().unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("env {name}"))
    };
    assert_eq!(var("LOG_LEVEL").value.as_deref(), Some("debug"));
    assert_eq!(
        var("FALLBACK_ERROR_MESSAGE").value.as_deref(),
        Some("Try again later")
    );
    assert_eq!(var("REQUEST_DEADLINE_MS").value.as_deref(), Some("600"));
    for (name, key) in [
        ("HERE_YOUR_PARAM", "erp-token"),
        ("WEBHOOK_AUTH_TOKEN", "auth-token"),
    ] {
        let selector = var(name)
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (selector.name.as_str(), selector.key.as_str()),
            ("commerce-keys", key)
        );
        assert!(
            var(name).value.is_none(),
            "secret {name} must not be copied into the pod spec"
        );
    }
    let readiness = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    let liveness = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(
        (security.read_only_root_filesystem, security.run_as_non_root),
        (Some(true), Some(true))
    );

    let service = ns.api::<Service>().get("check-stock").await.unwrap();
    let port = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.protocol.as_deref()),
        (Some("http"), Some("TCP"))
    );

    let ready = wait_until_ready(&ns).await;
    let status = ready.status.unwrap();
    assert_eq!(status.ready_replicas, 1);
    assert_eq!(status.conditions[0].reason, "Available");

    let events = ns.api::<Event>();
    let reasons = event_reasons(&ns, Some("CommerceWebhook")).await;
    assert!(
        reasons.contains(&"Created".to_owned()),
        "events: {reasons:?}"
    );
    for event in events.list(&ListParams::default()).await.unwrap().items {
        let text = format!("{:?}", event.message);
        assert!(
            !text.contains("first-token") && !text.contains("erp-1"),
            "a secret leaked into an event: {text}"
        );
    }
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn disabling_removes_the_workload_and_enabling_restores_it() {
    let (ns, _operator, _) = deployed("enable").await;

    let api = ns.api::<CommerceWebhook>();
    let set_enabled = |enabled: bool| {
        let api = api.clone();
        async move {
            api.patch(
                "check-stock",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"enabled": enabled}})),
            )
            .await
            .unwrap();
        }
    };
    set_enabled(false).await;
    let disabled = wait_for_reason(&ns, "check-stock", "Disabled").await;
    assert_eq!(
        disabled.status.as_ref().unwrap().conditions[0].status,
        "False"
    );
    children_gone(&ns, "Deployment and Service removed").await;
    assert!(
        disabled.status.unwrap().url.is_none(),
        "no URL while disabled"
    );

    set_enabled(true).await;
    deployment(&ns).await;
    let services = ns.api::<Service>();
    wait_for("the Service back", WAIT, || async {
        services.get_opt("check-stock").await.ok().flatten()
    })
    .await;
    wait_until_ready(&ns).await;
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn repairs_deleted_and_hand_edited_children() {
    let (ns, _operator, first) = deployed("repair").await;

    let deployments = ns.api::<Deployment>();
    deployments
        .delete("check-stock", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_for("the deleted Deployment to be recreated", WAIT, || async {
        let d = deployments.get_opt("check-stock").await.ok()??;
        (d.uid() != first.uid() && d.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;

    // A hand edit of fields the operator owns is reverted.
    deployments
        .patch(
            "check-stock",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
                {"name": "webhook", "image": "evil:latest"}]}}}}),
            ),
        )
        .await
        .unwrap();
    wait_for("the hand edit to be repaired", WAIT, || async {
        let d = deployments.get("check-stock").await.ok()?;
        let spec = d.spec?;
        let image = spec.template.spec?.containers[0].image.clone()?;
        (spec.replicas == Some(1) && image == e2e::WEBHOOK_IMAGE).then_some(())
    })
    .await;
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn changing_a_referenced_secret_rolls_the_pods() {
    let (ns, _operator, first) = deployed("rollout").await;
    let before = config_hash(&first);

    ns.api::<Secret>()
        .patch(
            "commerce-keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"auth-token": "rotated-token"}})),
        )
        .await
        .unwrap();
    let deployments = ns.api::<Deployment>();
    let after = wait_for("a new config hash in the pod template", WAIT, || async {
        let hash = config_hash(&deployments.get("check-stock").await.ok()?);
        (hash != before).then_some(hash)
    })
    .await;
    assert_eq!(after.len(), 32);

    // A Secret nobody references changes nothing.
    ns.apply_yaml::<Secret>(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: unrelated}\nstringData: {a: b}",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        config_hash(&deployments.get("check-stock").await.unwrap()),
        after
    );
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn deleting_the_resource_garbage_collects_its_children() {
    let (ns, _operator, _) = deployed("delete").await;
    ns.api::<CommerceWebhook>()
        .delete("check-stock", &DeleteParams::background())
        .await
        .unwrap();
    children_gone(&ns, "children garbage-collected").await;
}

/// Issue 17, item 9: a foreground deletion deletes the children first, then the
/// resource; meanwhile the operator sees the children go and must not put them
/// back (each would be a new object the garbage collector has to delete again).
#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn foreground_deletion_does_not_re_create_children() {
    let (ns, _operator, original) = deployed("foreground").await;
    let original_uid = original.metadata.uid.clone().unwrap();
    // Every Deployment that exists from now on, by uid.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let watch = {
        use futures::StreamExt;
        let seen = seen.clone();
        let events = kube::runtime::watcher(ns.api::<Deployment>(), Default::default());
        tokio::spawn(async move {
            events
                .for_each(|event| {
                    if let Ok(
                        kube::runtime::watcher::Event::Apply(d)
                        | kube::runtime::watcher::Event::InitApply(d),
                    ) = event
                    {
                        seen.lock()
                            .unwrap()
                            .insert(d.metadata.uid.unwrap_or_default());
                    }
                    std::future::ready(())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    ns.api::<CommerceWebhook>()
        .delete("check-stock", &DeleteParams::foreground())
        .await
        .unwrap();
    let cwhs = ns.api::<CommerceWebhook>();
    wait_for("the resource gone", WAIT, || async {
        cwhs.get_opt("check-stock")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    children_gone(&ns, "children garbage-collected").await;
    // Time for a re-created child to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        std::collections::BTreeSet::from([original_uid]),
        "a Deployment was re-created during the deletion"
    );
}

/// Issue 17, item 8: what the reconciler's guarded writes rely on, asked of the
/// API server itself: a create fails (409) on an existing object; an apply naming a
/// uid is refused (422, on metadata.uid) when the object under the name is another
/// one; and a create's record of fields, once turned into the apply's, lets a later
/// apply drop a field (without it, the field stays).
#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn guarded_writes_are_refused_by_the_api_server() {
    use kube::api::PostParams;
    let ns = TestNamespace::new("guards").await;
    let services = ns.api::<Service>();
    let service = |name: &str, labels: serde_json::Value, uid: Option<&str>| -> Service {
        let mut object = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": "ours"}, "ports": [{"port": 80, "protocol": "TCP"}]}});
        if let Some(uid) = uid {
            object["metadata"]["uid"] = json!(uid);
        }
        serde_json::from_value(object).unwrap()
    };
    let manager = "guard-test";
    let post = PostParams {
        field_manager: Some(manager.to_owned()),
        ..PostParams::default()
    };
    let apply = PatchParams::apply(manager).force();
    let two = json!({"a": "1", "b": "2"});
    let created = services
        .create(&post, &service("guarded", two.clone(), None))
        .await
        .expect("a create of an absent object");
    let uid = created.metadata.uid.clone().unwrap();
    let again = services
        .create(&post, &service("guarded", two.clone(), None))
        .await
        .expect_err("a create fails on an existing object");
    assert!(
        matches!(&again, kube::Error::Api(s) if s.code == 409),
        "{again}"
    );

    let other = services
        .patch(
            "guarded",
            &apply,
            &Patch::Apply(service(
                "guarded",
                two.clone(),
                Some("00000000-0000-0000-0000-000000000001"),
            )),
        )
        .await
        .expect_err("an apply naming another uid is refused");
    match &other {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{other}");
            assert!(
                status
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .any(|c| c.field == "metadata.uid"),
                "{other}"
            );
        }
        _ => panic!("{other}"),
    }

    // A created object, applied without label b: b stays (the create's record
    // still owns it) unless that record was made the apply's first.
    let one = json!({"a": "1"});
    let kept = services
        .patch(
            "guarded",
            &apply,
            &Patch::Apply(service("guarded", one.clone(), Some(&uid))),
        )
        .await
        .expect("an apply naming the object's own uid lands");
    assert_eq!(kept.labels().get("b").map(String::as_str), Some("2"));

    let adopted = services
        .create(&post, &service("adopted", two, None))
        .await
        .unwrap();
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<Service>(&()),
    );
    let current = raw.get("adopted").await.unwrap();
    let mut entries = current.metadata.managed_fields.clone().unwrap();
    assert_eq!(entries[0].operation.as_deref(), Some("Update"));
    entries[0].operation = Some("Apply".to_owned());
    raw.patch(
        "adopted",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {
            "uid": current.metadata.uid,
            "resourceVersion": current.metadata.resource_version,
            "managedFields": entries,
        }})),
    )
    .await
    .unwrap();
    let dropped = services
        .patch(
            "adopted",
            &apply,
            &Patch::Apply(service("adopted", one, adopted.metadata.uid.as_deref())),
        )
        .await
        .unwrap();
    assert_eq!(dropped.labels().get("b"), None, "{:?}", dropped.labels());
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn a_missing_secret_is_a_condition_until_it_appears() {
    let (ns, _operator) = namespace_with_operator("missing").await;
    ns.apply_yaml::<CommerceWebhook>(WEBHOOK).await.unwrap();
    let waiting = wait_for_reason(&ns, "check-stock", "MissingReference").await;
    assert_eq!(
        ready_message(&waiting),
        "waiting for Secret commerce-keys not found"
    );
    assert!(
        ns.api::<Deployment>()
            .get_opt("check-stock")
            .await
            .unwrap()
            .is_none(),
        "no pod is deployed that would fail to start"
    );

    ns.apply_yaml::<Secret>("apiVersion: v1\nkind: Secret\nmetadata: {name: commerce-keys}\nstringData: {auth-token: t}")
        .await
        .unwrap();
    let key_missing = wait_for_reason(&ns, "check-stock", "MissingReference").await;
    let key_missing = wait_for("the message to name the missing key", WAIT, || {
        let api = ns.api::<CommerceWebhook>();
        let mut cwh = Some(key_missing.clone());
        async move {
            let current = api.get("check-stock").await.ok().or(cwh.take())?;
            ready_message(&current)
                .contains("has no key")
                .then_some(current)
        }
    })
    .await;
    assert_eq!(
        ready_message(&key_missing),
        "waiting for Secret commerce-keys has no key erp-token"
    );

    ns.apply_yaml::<Secret>(SECRET).await.unwrap();
    wait_for_reason(&ns, "check-stock", "Progressing").await;
    deployment(&ns).await;
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn a_spec_the_schema_cannot_check_is_reported_as_invalid() {
    let (ns, _operator) = namespace_with_operator("invalid").await;
    ns.apply_yaml::<CommerceWebhook>(
        "apiVersion: integration.commerce.dev/v1alpha1\nkind: CommerceWebhook\nmetadata: {name: check-stock}\nspec:\n  inputs: [{name: PORT, value: '9'}]",
    )
    .await
    .unwrap();
    let invalid = wait_for_reason(&ns, "check-stock", "InvalidSpec").await;
    assert_eq!(
        ready_message(&invalid),
        "input PORT is managed by the operator; set it there instead of in spec.inputs"
    );
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn the_api_server_rejects_invalid_resources_with_readable_messages() {
    let ns = TestNamespace::new("schema").await;
    install_crd(&ns.client).await;
    let cases = [
        (
            "inputs: [{name: 'BAD-NAME', value: x}]",
            "spec.inputs.name: Invalid value: \"BAD-NAME\": spec.inputs.name in body should match '^[A-Za-z_][A-Za-z0-9_]*$'",
        ),
        (
            "action: check-price",
            "spec.action: Unsupported value: \"check-price\"",
        ),
        (
            "workload: {replicas: -1}",
            "spec.workload.replicas: Invalid value: -1",
        ),
        (
            "stock: {backOffice: {timeoutMs: 100}}",
            "spec.stock.backOffice.url: Required value",
        ),
        ("inputs: [{value: x}]", "spec.inputs.name: Required value"),
        (
            "stock: {backOffice: {url: 'http://erp'}, inventory: {configMapKeyRef: {name: a, key: b}}}",
            "spec.stock in body should have at most 1 properties",
        ),
        ("path: 'no-slash'", "spec.path: Invalid value: \"no-slash\""),
        (
            "commerce: {timeoutMs: 10}",
            "spec.commerce.timeoutMs: Invalid value: 10",
        ),
    ];
    for (spec, expected) in cases {
        let yaml = format!(
            "apiVersion: integration.commerce.dev/v1alpha1\nkind: CommerceWebhook\nmetadata: {{name: bad}}\nspec:\n  {spec}"
        );
        let error = ns
            .apply_yaml::<CommerceWebhook>(&yaml)
            .await
            .expect_err(&format!("the API server accepted an invalid spec: {spec}"));
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "for `{spec}` expected «{expected}» in: {message}"
        );
    }
    // Two inputs with the same name are one list-map key, so the server refuses them.
    let duplicate = "apiVersion: integration.commerce.dev/v1alpha1\nkind: CommerceWebhook\nmetadata: {name: bad}\nspec:\n  inputs: [{name: A, value: x}, {name: A, value: y}]";
    let error = ns
        .apply_yaml::<CommerceWebhook>(duplicate)
        .await
        .expect_err("duplicate input names");
    assert!(
        error
            .to_string()
            .contains("spec.inputs[1]: Duplicate value"),
        "{error}"
    );
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn an_operator_restart_converges_and_a_resync_writes_nothing() {
    let (ns, operator, _) = deployed("restart").await;
    operator.stop().await;

    // Changed while no operator runs.
    ns.api::<CommerceWebhook>()
        .patch(
            "check-stock",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workload": {"replicas": 2}}})),
        )
        .await
        .unwrap();
    let operator = Operator::start(&ns).await;
    let deployments = ns.api::<Deployment>();
    wait_for(
        "the restarted operator to apply replicas: 2",
        WAIT,
        || async {
            (deployments.get("check-stock").await.ok()?.spec?.replicas == Some(2)).then_some(())
        },
    )
    .await;
    let converged = wait_until_ready(&ns).await;
    assert_eq!(converged.status.as_ref().unwrap().ready_replicas, 2);
    operator.stop().await;

    // A fresh operator reconciles everything once: nothing may be written.
    let versions = || async {
        let cwh = ns
            .api::<CommerceWebhook>()
            .get("check-stock")
            .await
            .unwrap();
        let deployment = ns.api::<Deployment>().get("check-stock").await.unwrap();
        let service = ns.api::<Service>().get("check-stock").await.unwrap();
        (
            cwh.resource_version(),
            deployment.resource_version(),
            service.resource_version(),
        )
    };
    let before = versions().await;
    let operator = Operator::start(&ns).await;
    let metrics = operator.metrics.clone();
    wait_for("a resync reconcile", WAIT, || async {
        (metrics.reconciles() >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        versions().await,
        before,
        "a steady resync changed resourceVersions"
    );
}

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn only_one_replica_holds_the_lease() {
    let ns = TestNamespace::new("lease").await;
    let lease = |identity: &str| {
        LeaseLock::new(
            ns.client.clone(),
            &ns.name,
            "operator",
            identity,
            Duration::from_secs(3),
        )
    };
    let (first, second) = (lease("first"), lease("second"));
    first.acquire().await;
    let second_won = tokio::time::timeout(Duration::from_secs(2), second.acquire()).await;
    assert!(
        second_won.is_err(),
        "the second replica must stand by while the first renews"
    );

    first.release().await;
    tokio::time::timeout(Duration::from_secs(10), second.acquire())
        .await
        .expect("the standby takes over once the leader releases the Lease");
    let holder =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(ns.client.clone(), &ns.name)
            .get("operator")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity;
    assert_eq!(holder.as_deref(), Some("second"));
}

/// A Deployment and a Service someone else made, named like the hook: the operator
/// must not apply over them nor delete them, and says why it cannot deploy.
#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn objects_it_does_not_own_are_never_overwritten_or_deleted() {
    let (ns, _operator) = namespace_with_operator("foreign").await;
    let theirs = ns
        .apply_yaml::<Deployment>(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: check-stock}
spec:
  replicas: 0
  selector: {matchLabels: {app: theirs}}
  template:
    metadata: {labels: {app: theirs}}
    spec: {containers: [{name: app, image: theirs:1}]}
"#,
        )
        .await
        .unwrap();
    let their_service = ns
        .apply_yaml::<Service>(
            "{apiVersion: v1, kind: Service, metadata: {name: check-stock}, spec: {selector: {app: theirs}, ports: [{port: 81, protocol: TCP}]}}",
        )
        .await
        .unwrap();
    ns.apply_yaml::<Secret>(SECRET).await.unwrap();
    ns.apply_yaml::<CommerceWebhook>(WEBHOOK).await.unwrap();

    let conflict = wait_for_reason(&ns, "check-stock", "ChildConflict").await;
    assert_eq!(ready_condition(&conflict).unwrap().status, "False");
    assert_eq!(
        ready_message(&conflict),
        "Deployment check-stock, Service check-stock already exist and are not owned by this \
         CommerceWebhook; rename the CommerceWebhook or remove them"
    );
    let events = ns.api::<Event>();
    wait_for("a ChildConflict event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ChildConflict"))
            .then_some(())
    })
    .await;
    // Their objects may change (the Deployment controller writes its status), but
    // never by the operator's hand: no field of its manager, no owner, same spec.
    let untouched = |what: &'static str| {
        let (ns, theirs, their_service) = (&ns, &theirs, &their_service);
        async move {
            let deployment = ns.api::<Deployment>().get("check-stock").await.unwrap();
            let service = ns.api::<Service>().get("check-stock").await.unwrap();
            for (kind, meta) in [
                ("Deployment", &deployment.metadata),
                ("Service", &service.metadata),
            ] {
                let managers: Vec<_> = meta
                    .managed_fields
                    .iter()
                    .flatten()
                    .filter_map(|entry| entry.manager.as_deref())
                    .collect();
                assert!(
                    !managers.contains(&"commerce-webhook-operator"),
                    "{what}: the operator wrote their {kind}: {managers:?}"
                );
                assert!(meta.owner_references.is_none(), "{what}: {kind}");
            }
            assert_eq!(deployment.spec, theirs.spec, "{what}");
            assert_eq!(deployment.metadata.generation, theirs.metadata.generation);
            assert_eq!(service.spec, their_service.spec, "{what}");
        }
    };
    untouched("while enabled").await;

    ns.api::<CommerceWebhook>()
        .patch(
            "check-stock",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"enabled": false}})),
        )
        .await
        .unwrap();
    wait_for_reason(&ns, "check-stock", "Disabled").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    untouched("after enabled: false").await;
}

/// Unset replicas are the starting count only (2 for a required hook, with a
/// disruption budget): `kubectl scale` survives the operator's next apply.
/// Autoscaling creates an HPA; taking it out of the spec removes it again.
#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn scaling_is_left_to_kubectl_and_an_hpa() {
    let (ns, _operator) = namespace_with_operator("scale").await;
    ns.apply_yaml::<Secret>(SECRET).await.unwrap();
    let hook = WEBHOOK.replace("  workload: {replicas: 1}\n", "");
    ns.apply_yaml::<CommerceWebhook>(&hook).await.unwrap();
    let deployments = ns.api::<Deployment>();
    let replicas = || async {
        deployments
            .get("check-stock")
            .await
            .ok()
            .and_then(|d| d.spec?.replicas)
    };
    wait_for("two starting replicas", WAIT, || async {
        (replicas().await == Some(2)).then_some(())
    })
    .await;
    let budget = kube::api::ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    };
    let budgets: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &budget);
    let pdb = budgets.get("check-stock").await.unwrap();
    assert_eq!(pdb.data["spec"]["maxUnavailable"], 1, "{pdb:?}");

    e2e::tool(
        "kubectl",
        &[
            "scale",
            "deployment/check-stock",
            "--replicas=1",
            "-n",
            &ns.name,
        ],
    )
    .unwrap();
    // A change the operator must apply, after the scale.
    set_log_level_warn(&ns).await;
    wait_for("the new LOG_LEVEL applied", WAIT, || async {
        let deployment = deployments.get("check-stock").await.ok()?;
        let env = deployment.spec?.template.spec?.containers[0].env.clone()?;
        env.iter()
            .any(|e| e.name == "LOG_LEVEL" && e.value.as_deref() == Some("warn"))
            .then_some(())
    })
    .await;
    assert_eq!(replicas().await, Some(1), "kubectl scale was reverted");

    let autoscalers = ns.api::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>();
    ns.api::<CommerceWebhook>()
        .patch(
            "check-stock",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workload": {"autoscaling": {"maxReplicas": 3}}}})),
        )
        .await
        .unwrap();
    let hpa = wait_for("the HPA", WAIT, || async {
        autoscalers.get_opt("check-stock").await.ok().flatten()
    })
    .await;
    let spec = hpa.spec.unwrap();
    assert_eq!(
        (
            spec.min_replicas,
            spec.max_replicas,
            spec.scale_target_ref.name.as_str()
        ),
        (Some(2), 3, "check-stock")
    );
    ns.api::<CommerceWebhook>()
        .patch(
            "check-stock",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"workload": {"autoscaling": null}, "commerce": {"required": false}}}),
            ),
        )
        .await
        .unwrap();
    wait_for("the HPA and the budget removed", WAIT, || async {
        let gone = autoscalers.get_opt("check-stock").await.ok()?.is_none()
            && budgets.get_opt("check-stock").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
}

/// Two operator processes with leader election: the leader frozen (SIGSTOP) past
/// its lease loses it to the standby, and once thawed (SIGCONT) writes nothing:
/// it finds its renew deadline gone, says so, and exits without touching the
/// Lease or the resources the new leader now owns.
#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn a_frozen_leader_loses_the_lease_and_stays_quiet_when_thawed() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::events::v1::Event as NewEvent;

    let ns = TestNamespace::new("frozen").await;
    install_crd(&ns.client).await;
    let logs = std::env::temp_dir().join(&ns.name);
    std::fs::create_dir_all(&logs).unwrap();
    let start = |identity: &str| {
        let log = std::fs::File::create(logs.join(identity)).unwrap();
        let child = e2e::operator_command(&ns.name)
            .env("LEADER_ELECT", "true")
            .env("LEADER_ELECTION_NAMESPACE", &ns.name)
            .env("LEADER_ELECTION_SECONDS", "3")
            .env("POD_NAME", identity)
            .env("LOG_LEVEL", "info")
            .stderr(log)
            .spawn()
            .unwrap();
        e2e::KillOnDrop(child)
    };
    let leases = ns.api::<Lease>();
    let holder = || async {
        leases
            .get_opt("commerce-webhook-operator")
            .await
            .ok()
            .flatten()
            .and_then(|lease| lease.spec?.holder_identity)
    };
    let mut first = start("first");
    wait_for("first to lead", WAIT, || async {
        (holder().await.as_deref() == Some("first")).then_some(())
    })
    .await;
    let _second = start("second");
    ns.apply_yaml::<Secret>(SECRET).await.unwrap();
    ns.apply_yaml::<CommerceWebhook>(WEBHOOK).await.unwrap();
    wait_for_reason(&ns, "check-stock", "Progressing").await;
    let signal = |name: &str, pid: u32| {
        e2e::tool("kill", &[&format!("-{name}"), &pid.to_string()]).unwrap();
    };

    signal("STOP", first.0.id());
    wait_for("second to take the Lease over", WAIT, || async {
        (holder().await.as_deref() == Some("second")).then_some(())
    })
    .await;
    // Work for the new leader, which the frozen one would also do once thawed.
    set_log_level_warn(&ns).await;
    let events = ns.api::<NewEvent>();
    let by = |instance: &'static str| {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.reporting_instance.as_deref() == Some(instance))
                .map(|e| e.metadata.name.unwrap_or_default())
                .collect::<Vec<_>>()
        }
    };
    wait_for("the new leader's Updated event", WAIT, || async {
        (!by("second").await.is_empty()).then_some(())
    })
    .await;
    let before = by("first").await;
    let lease_before = leases.get("commerce-webhook-operator").await.unwrap();

    signal("CONT", first.0.id());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = first.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the thawed leader did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "losing the Lease is a failure exit");
    let log = std::fs::read_to_string(logs.join("first")).unwrap();
    assert!(log.contains("leadership lost"), "{log}");
    assert_eq!(
        by("first").await,
        before,
        "the thawed leader published events"
    );
    let lease_after = leases.get("commerce-webhook-operator").await.unwrap();
    assert_eq!(
        lease_after
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .as_deref(),
        Some("second")
    );
    assert_eq!(
        lease_after.spec.as_ref().and_then(|s| s.lease_transitions),
        lease_before.spec.as_ref().and_then(|s| s.lease_transitions),
        "the thawed leader took the Lease back"
    );
    let _ = std::fs::remove_dir_all(&logs);
}
