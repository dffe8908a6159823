//! Reconcile decisions against the mocked API server (`fixtures`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::controller::Action;
use serde_json::json;

use super::backoff::MAX_BACKOFF;
use super::flow::MISSING_REFERENCE_RETRY;
use super::*;
use crate::fixtures::path::collection;
use crate::fixtures::{ApiServer, failure, path, webhook};

fn secret_path(name: &str) -> String {
    format!("{}/{name}", path::SECRETS)
}

fn line(method: &str, path: &str) -> String {
    format!("{method} {path}")
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// A child named `hook`, controlled by the resource with `uid` and labelled as
/// the operator's (so its watch sees it); with no uid, nobody's and unlabelled.
fn child(kind: &str, api_version: &str, uid: Option<&str>) -> serde_json::Value {
    let labels = uid.map(|_| json!({"app.kubernetes.io/managed-by": "commerce-webhook-operator"}));
    let owners = uid.map(|uid| {
        json!([{"apiVersion": "integration.commerce.dev/v1alpha1", "kind": "CommerceWebhook",
                "name": "hook", "uid": uid, "controller": true}])
    });
    let spec = match kind {
        "Deployment" => json!({"selector": {"matchLabels": {"app": "theirs"}}, "template": {}}),
        _ => json!({"selector": {"app": "theirs"}}),
    };
    json!({"apiVersion": api_version, "kind": kind, "metadata": {
        "name": "hook", "namespace": "shop", "uid": format!("{kind}-uid"),
        "resourceVersion": "5", "ownerReferences": owners, "labels": labels,
    }, "spec": spec})
}

#[tokio::test]
async fn a_disabled_webhook_loses_its_children_and_says_so() {
    let cwh = webhook("enabled: false");
    let (ctx, mut writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    // The Deployment and Service existed (and were watched); the Ingress never did.
    server.insert(
        path::DEPLOYMENT,
        child("Deployment", "apps/v1", Some("uid-1")),
    );
    server.insert(path::SERVICE, child("Service", "v1", Some("uid-1")));
    server.sync(&mut writers);
    let action = reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let expected = vec![
        line("DELETE", path::DEPLOYMENT),
        line("DELETE", path::SERVICE),
        line("PATCH", path::STATUS),
        line("POST", path::EVENTS),
    ];
    assert_eq!(
        server.lines(),
        sorted(expected),
        "no reads: the caches know"
    );
    let delete = server
        .calls()
        .into_iter()
        .find(|c| c.method == Method::DELETE)
        .unwrap();
    assert_eq!(
        delete.body["preconditions"]["uid"],
        json!(if delete.path == path::DEPLOYMENT {
            "Deployment-uid"
        } else {
            "Service-uid"
        }),
        "only this very object is deleted"
    );
    assert_eq!(server.last_status()["conditions"][0]["reason"], "Disabled");
    assert_eq!(server.event_reasons(), ["Disabled"]);
}

/// Objects that merely have the resource's name (no controller reference to
/// it, or one to another resource's uid) are never applied over nor deleted:
/// one the caches know stops the reconcile before any write; one they do not
/// know (it lacks our label) is found by the create that fails on it.
#[tokio::test]
async fn someone_else_s_objects_are_never_written_or_deleted() {
    let cwh = webhook("{}");
    let (ctx, mut writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    let other_owner = child("Service", "v1", Some("uid-of-an-older-hook"));
    server.insert(path::SERVICE, other_owner.clone());
    server.sync(&mut writers);
    let theirs = child("Deployment", "apps/v1", None);
    // Created after the watch's view: not in the cache.
    server.insert(path::DEPLOYMENT, theirs.clone());

    let action = reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(MISSING_REFERENCE_RETRY));
    let expected = vec![line("PATCH", path::STATUS), line("POST", path::EVENTS)];
    assert_eq!(server.lines(), sorted(expected), "nothing is written");
    let condition = &server.last_status()["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "ChildConflict");
    assert_eq!(
        condition["message"],
        "Service hook already exist and are not owned by this \
         CommerceWebhook; rename the CommerceWebhook or remove them"
    );
    assert_eq!(server.event_reasons(), ["ChildConflict"]);

    // The Service's owner renamed it away; the Deployment is still theirs.
    server.forget_calls();
    server.remove(path::SERVICE);
    server.sync(&mut writers);
    let mut cwh = cwh;
    cwh.status = None;
    reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
    let lines = server.lines();
    assert!(lines.contains(&line("GET", path::DEPLOYMENT)), "{lines:?}");
    assert_eq!(
        server.last_status()["conditions"][0]["message"],
        "Deployment hook already exist and are not owned by this \
         CommerceWebhook; rename the CommerceWebhook or remove them"
    );
    assert_eq!(
        server.object::<serde_json::Value>(path::DEPLOYMENT),
        Some(theirs.clone()),
        "the create failed on it"
    );

    server.forget_calls();
    server.sync(&mut writers);
    let disabled = webhook("enabled: false");
    reconcile(Arc::new(disabled), ctx).await.unwrap();
    let lines = server.lines();
    assert!(
        lines
            .iter()
            .all(|line| !line.starts_with("DELETE /apis/apps")),
        "{lines:?}"
    );
    assert_eq!(
        server.object::<serde_json::Value>(path::DEPLOYMENT),
        Some(theirs)
    );
}

/// Issue 17, item 8: an object created under a child's name after the operator
/// looked (here: its first read of the name found nothing) is not taken over: a
/// child that is not known is created with a write that fails on anything there.
#[tokio::test]
async fn an_object_created_between_the_check_and_the_write_is_not_taken_over() {
    let cwh = webhook("{}");
    let deployment_calls = Arc::new(AtomicUsize::new(0));
    let answer = {
        let calls = deployment_calls.clone();
        Box::new(move |call: &crate::fixtures::Call| {
            let about_it = call.path == path::DEPLOYMENT
                || (call.method == Method::POST && call.path == collection(path::DEPLOYMENT));
            if !about_it {
                return None;
            }
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            // The name was free when it was first looked at.
            (first && call.method == Method::GET).then(crate::fixtures::not_found)
        })
    };
    let (ctx, _writers, server) = ApiServer::start(&cwh, answer);
    let theirs = child("Deployment", "apps/v1", None);
    server.insert(path::DEPLOYMENT, theirs.clone());

    reconcile(Arc::new(cwh), ctx).await.unwrap();
    assert_eq!(
        server.object::<serde_json::Value>(path::DEPLOYMENT),
        Some(theirs),
        "{:?}",
        server.lines()
    );
    let condition = &server.last_status()["conditions"][0];
    assert_eq!(condition["reason"], "ChildConflict");
    let writes: Vec<_> = server
        .lines()
        .into_iter()
        .filter(|l| l.contains("/deployments") && !l.starts_with("GET"))
        .collect();
    assert_eq!(
        writes,
        [line("POST", &collection(path::DEPLOYMENT))],
        "a create, which failed on it, and nothing else"
    );
}

/// Issue 17, item 8: a child the cache says is ours, replaced by someone else's
/// object since, is not applied over: the apply names the uid it means.
#[tokio::test]
async fn an_apply_only_lands_on_the_object_the_cache_said_was_ours() {
    let cwh = webhook("{}");
    let (ctx, mut writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    server.insert(
        path::DEPLOYMENT,
        child("Deployment", "apps/v1", Some("uid-1")),
    );
    server.sync(&mut writers);
    // Deleted and re-created by someone else; the watch has not said so yet.
    let mut theirs = child("Deployment", "apps/v1", None);
    theirs["metadata"]["uid"] = json!("theirs-uid");
    server.insert(path::DEPLOYMENT, theirs.clone());

    reconcile(Arc::new(cwh), ctx).await.unwrap();
    assert_eq!(
        server.object::<serde_json::Value>(path::DEPLOYMENT),
        Some(theirs)
    );
    let apply = server
        .calls()
        .into_iter()
        .find(|c| c.path == path::DEPLOYMENT && c.method == Method::PATCH)
        .unwrap();
    assert_eq!(apply.body["metadata"]["uid"], "Deployment-uid");
    assert_eq!(
        server.last_status()["conditions"][0]["reason"],
        "ChildConflict"
    );
}

/// A child the operator created but whose watch event has not arrived yet: the
/// create fails on it, a read shows it is ours, and it is applied by its uid.
#[tokio::test]
async fn a_child_the_cache_has_not_seen_yet_is_applied_by_its_uid() {
    let cwh = webhook("commerce: {required: false}\nworkload: {replicas: 1}");
    let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    server.insert(path::SERVICE, child("Service", "v1", Some("uid-1")));
    reconcile(Arc::new(cwh), ctx).await.unwrap();
    let service_calls: Vec<_> = server
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with(&collection(path::SERVICE)))
        .collect();
    let methods: Vec<_> = service_calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["POST", "GET", "PATCH"]);
    assert_eq!(service_calls[2].body["metadata"]["uid"], "Service-uid");
    assert_eq!(
        server.last_status()["conditions"][0]["reason"],
        "Progressing",
        "{}",
        server.last_status()
    );
}

/// Issue 17, item 9: a resource being deleted (in the foreground, its children
/// first) gets nothing written: no child re-created, none deleted by us.
#[tokio::test]
async fn a_resource_being_deleted_gets_no_child_re_created() {
    let mut cwh = webhook("{}");
    cwh.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let (ctx, mut writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    // The garbage collector already removed the Deployment; the Service remains.
    server.insert(path::SERVICE, child("Service", "v1", Some("uid-1")));
    server.sync(&mut writers);
    let action = reconcile(Arc::new(cwh), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert!(server.lines().is_empty(), "{:?}", server.lines());
    assert!(server.object::<Deployment>(path::DEPLOYMENT).is_none());
}

#[tokio::test]
async fn a_missing_secret_is_waited_for_and_named() {
    let cwh = webhook("authToken: {name: hook-auth, key: token}");
    let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    let action = reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(MISSING_REFERENCE_RETRY));
    let expected = vec![
        line("GET", &secret_path("hook-auth")),
        line("PATCH", path::STATUS),
        line("POST", path::EVENTS),
    ];
    assert_eq!(
        server.lines(),
        sorted(expected),
        "nothing is applied while a reference is missing"
    );
    let status = server.last_status();
    assert_eq!(status["conditions"][0]["reason"], "MissingReference");
    assert_eq!(
        status["conditions"][0]["message"],
        "waiting for Secret hook-auth not found"
    );
}

#[tokio::test]
async fn an_invalid_spec_reports_every_problem_and_applies_nothing() {
    let cwh =
        webhook("path: /metrics\ninputs: [{name: PORT, value: '1'}]\nauthToken: {name: s, key: k}");
    let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    let action = reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
    assert_eq!(action, Action::await_change(), "only an edit can fix it");
    assert_eq!(
        server.lines(),
        [line("PATCH", path::STATUS), line("POST", path::EVENTS)],
        "references are not even read"
    );
    let status = server.last_status();
    assert_eq!(status["conditions"][0]["reason"], "InvalidSpec");
    assert_eq!(
        status["conditions"][0]["message"],
        "spec.path /metrics: /metrics is reserved for the service itself; \
         input PORT is managed by the operator; set it there instead of in spec.inputs"
    );
}

#[tokio::test]
async fn a_failed_apply_is_reported_counted_and_retried() {
    let cwh = webhook("{}");
    let (ctx, _writers, server) = ApiServer::start(
        &cwh,
        Box::new(|call| {
            (call.method == Method::POST && call.path == collection(path::DEPLOYMENT))
                .then(|| failure(StatusCode::FORBIDDEN, "Forbidden"))
        }),
    );
    let error = reconcile(Arc::new(cwh.clone()), ctx.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Apply {
                kind: ChildKind::Deployment,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.kind().label(), "apply");
    assert!(
        std::error::Error::source(&error).is_some(),
        "the API error stays reachable as the source"
    );
    let status = server.last_status();
    assert_eq!(status["conditions"][0]["reason"], "ApplyFailed");
    assert_eq!(server.event_reasons(), ["ApplyFailed"]);
    assert_eq!(
        error_policy(Arc::new(cwh), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(ctx.metrics.reconciles(), 1);
}

/// A child someone else edited is applied again (our fields win); a child
/// nobody touched since our last apply costs no write, and a settled resource
/// costs no request at all: every kind is answered from its watch's cache.
#[tokio::test]
async fn a_child_changed_by_someone_else_is_applied_again() {
    let mut cwh = webhook("{}");
    let (ctx, mut writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
    let expected = vec![
        line("PATCH", path::STATUS),
        line("POST", &collection(path::SERVICE)),
        line("POST", &collection(path::DEPLOYMENT)),
        // The starting replicas of a required hook, outside the apply.
        line("PATCH", path::DEPLOYMENT),
        line("POST", &collection(path::BUDGET)),
        line("POST", path::EVENTS),
    ];
    assert_eq!(server.lines(), sorted(expected));
    assert_eq!(server.event_reasons(), ["Created"]);
    // The watches see what was applied; the resource now has its status.
    server.sync(&mut writers);
    cwh.status = Some(serde_json::from_value(server.last_status()).unwrap());
    server.forget_calls();

    reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
    assert!(
        server.lines().is_empty(),
        "a settled resource costs no request: {:?}",
        server.lines()
    );

    let mut edited: serde_json::Value = server.object(path::DEPLOYMENT).unwrap();
    edited["metadata"]["generation"] = json!(3);
    server.insert(path::DEPLOYMENT, edited);
    server.sync(&mut writers);
    reconcile(Arc::new(cwh.clone()), ctx).await.unwrap();
    let lines = server.lines();
    assert!(
        lines.contains(&line("PATCH", path::DEPLOYMENT)),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("/services")),
        "the untouched Service is left alone: {lines:?}"
    );
    // The first apply over a created child first makes the create's record of
    // fields the apply's (else a field dropped later would never be removed).
    let writes: Vec<_> = server
        .calls()
        .into_iter()
        .filter(|c| c.path == path::DEPLOYMENT && c.method == Method::PATCH)
        .collect();
    assert_eq!(writes.len(), 2, "{lines:?}");
    let adopted = &writes[0].body["metadata"];
    assert_eq!(adopted["managedFields"][0]["manager"], FIELD_MANAGER);
    assert_eq!(adopted["managedFields"][0]["operation"], "Apply");
    assert!(adopted["uid"].is_string() && adopted["resourceVersion"].is_string());
    assert!(
        writes[1].body["metadata"]["uid"].is_string(),
        "then the apply, by uid"
    );
}

/// Unset, `replicas` is never applied (so `kubectl scale` or an HPA keep the
/// count); a required hook starts with 2 pods and a disruption budget.
#[tokio::test]
async fn replicas_are_only_seeded_and_required_hooks_get_a_budget() {
    let cwh = webhook("{}");
    let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    reconcile(Arc::new(cwh), ctx).await.unwrap();
    let writes: Vec<_> = server
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with(&collection(path::DEPLOYMENT)))
        .collect();
    assert_eq!(writes[0].method, Method::POST);
    assert!(
        writes[0].body["spec"].get("replicas").is_none(),
        "{}",
        writes[0].body
    );
    let created: Deployment = server.object(path::DEPLOYMENT).unwrap();
    assert_eq!(
        writes[1].body,
        json!({"metadata": {"uid": created.metadata.uid}, "spec": {"replicas": 2}}),
        "seeded on the object just created, by its uid"
    );
    let budget: serde_json::Value = server.object(path::BUDGET).unwrap();
    assert_eq!(budget["spec"]["maxUnavailable"], 1);

    let optional = webhook("commerce: {required: false}\nworkload: {replicas: 3}");
    let (ctx, _writers, server) = ApiServer::start(&optional, Box::new(|_| None));
    reconcile(Arc::new(optional), ctx).await.unwrap();
    let deployment: Deployment = server.object(path::DEPLOYMENT).unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(3), "set: applied");
    assert!(server.object::<serde_json::Value>(path::BUDGET).is_none());
    assert!(
        !server
            .lines()
            .iter()
            .any(|l| l.contains("poddisruptionbudgets")),
        "no budget for an optional hook"
    );
}

/// Autoscaling creates an HPA and leaves replicas alone; without it again, the
/// HPA this resource owns (as its watch knows it) is removed.
#[tokio::test]
async fn autoscaling_creates_an_hpa_that_goes_with_it() {
    let mut cwh = webhook("workload: {autoscaling: {maxReplicas: 4}}");
    let (ctx, mut writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
    let hpa: k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler =
        server.object(path::AUTOSCALER).unwrap();
    assert_eq!(hpa.spec.unwrap().max_replicas, 4);
    let deployment: Deployment = server.object(path::DEPLOYMENT).unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, None, "the HPA's to set");
    assert!(
        !server.lines().contains(&line("PATCH", path::DEPLOYMENT)),
        "no seeded replicas under an HPA: {:?}",
        server.lines()
    );

    server.sync(&mut writers);
    cwh.spec.workload.autoscaling = None;
    cwh.metadata.generation = Some(2);
    server.forget_calls();
    reconcile(Arc::new(cwh), ctx).await.unwrap();
    assert!(
        server.lines().contains(&line("DELETE", path::AUTOSCALER)),
        "{:?}",
        server.lines()
    );
    assert!(
        server
            .object::<serde_json::Value>(path::AUTOSCALER)
            .is_none()
    );
}

/// A replica whose Lease lapsed (a frozen or partitioned leader) must not write
/// anything, whatever the reconcile would do.
#[tokio::test]
async fn a_replica_that_is_not_leading_writes_nothing() {
    let cwh = webhook("{}");
    let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    let ctx = Arc::try_unwrap(ctx)
        .unwrap_or_else(|_| panic!("one context"))
        .with_leadership(crate::leader::Leadership::elected());
    let error = reconcile(Arc::new(cwh), Arc::new(ctx)).await.unwrap_err();
    assert!(matches!(error, Error::NotLeading), "{error}");
    assert_eq!(error.kind().label(), "not_leading");
    assert!(server.lines().is_empty(), "{:?}", server.lines());
}

#[tokio::test]
async fn failures_back_off_exponentially_and_a_success_resets_them() {
    // Disabled and already reported so: a reconcile that succeeds without a call.
    let mut cwh = webhook("enabled: false");
    let (ctx, _writers, server) = ApiServer::start(&cwh, Box::new(|_| None));
    reconcile(Arc::new(cwh.clone()), ctx.clone()).await.unwrap();
    cwh.status = Some(serde_json::from_value(server.last_status()).unwrap());
    let cwh = Arc::new(cwh);

    let delays: Vec<u64> = (0..12)
        .map(|_| {
            let action = error_policy(cwh.clone(), &Error::NoNamespace, ctx.clone());
            requeue_seconds(&action)
        })
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    assert_eq!(MAX_BACKOFF, Duration::from_secs(300));

    server.forget_calls();
    reconcile(cwh.clone(), ctx.clone()).await.unwrap();
    assert!(server.lines().is_empty(), "{:?}", server.lines());
    let action = error_policy(cwh, &Error::NoNamespace, ctx);
    assert_eq!(requeue_seconds(&action), 1, "a success starts over");
}

fn requeue_seconds(action: &Action) -> u64 {
    let debug = format!("{action:?}");
    [1u64, 2, 4, 8, 16, 32, 64, 128, 256, 300]
        .into_iter()
        .find(|s| *action == Action::requeue(Duration::from_secs(*s)))
        .unwrap_or_else(|| panic!("unexpected action {debug}"))
}

/// The metric labels are unique, snake_case, and the ones the design doc lists
/// (between its `error-kinds` markers), so the docs cannot drift from the code.
#[test]
fn error_labels_are_the_documented_ones() {
    let labels: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
    let mut unique = labels.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), labels.len(), "{labels:?}");
    assert!(
        labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
        "{labels:?}"
    );
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/design/operator.md"
    ))
    .expect("docs/design/operator.md");
    let listed = doc
        .split("<!-- error-kinds -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /error-kinds -->").next())
        .expect("the doc marks its list of error kinds");
    let documented: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
    assert_eq!(documented, labels);
}
