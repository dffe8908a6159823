//! The Helm chart: lint and template for default and non-default values, values
//! rejected by its schema, and a real install whose RBAC the operator runs under.

use std::time::Duration;

use commerce_webhook_operator::resource::CommerceWebhook;
use e2e::{
    KillOnDrop, TestNamespace, mark_pods_ready, operator_command, repo_path, tool, wait_for,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(90);

fn chart() -> String {
    repo_path("charts/commerce-webhook-operator")
        .display()
        .to_string()
}

fn template(sets: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec!["template", "cwo", chart.as_str(), "--namespace", "ops"];
    for set in sets {
        args.extend(["--set", set]);
    }
    tool("helm", &args)
}

#[test]
fn lint_passes_for_default_and_non_default_values() {
    let chart = chart();
    tool("helm", &["lint", "--strict", &chart]).unwrap();
    tool(
        "helm",
        &[
            "lint",
            "--strict",
            &chart,
            "--kube-version",
            "1.30.0",
            "--set",
            "replicaCount=3,watchNamespace=shop,podDisruptionBudget.enabled=true,commerceWebhook.create=true",
        ],
    )
    .unwrap();
}

#[test]
fn default_install_is_cluster_wide_with_least_privilege() {
    let out = template(&[]).unwrap();
    assert!(
        out.contains("kind: ClusterRole\n") && out.contains("kind: ClusterRoleBinding\n"),
        "{out}"
    );
    assert!(
        !out.contains("leases"),
        "no leader election RBAC for one replica"
    );
    assert!(
        !out.contains("\"*\"") && !out.contains("'*'") && !out.contains("- '*'"),
        "no wildcards:\n{out}"
    );
    assert!(!out.contains("PodDisruptionBudget"));
    assert!(out.contains("readOnlyRootFilesystem: true") && out.contains("runAsNonRoot: true"));
    assert!(out.contains("value: \"false\"") && out.contains("name: LEADER_ELECT"));
    assert!(
        out.contains("image: \"ghcr.io/commerce-webhook-operator/operator:0.1.0\""),
        "{out}"
    );
    let secrets_rule = out
        .split("- apiGroups:")
        .find(|rule| rule.contains("\"secrets\""))
        .expect("a rule for secrets");
    assert!(
        secrets_rule.contains("[\"get\", \"list\", \"watch\"]"),
        "secrets are read-only: {secrets_rule}"
    );
}

#[test]
fn watch_namespace_replicas_and_extras_change_the_manifests() {
    let out = template(&[
        "watchNamespace=shop",
        "replicaCount=2",
        "podDisruptionBudget.enabled=true",
        "commerceWebhook.create=true",
        "commerceWebhook.spec.workload.replicas=2",
    ])
    .unwrap();
    assert!(
        !out.contains("kind: ClusterRole"),
        "namespaced RBAC only:\n{out}"
    );
    assert!(
        out.contains(
            "kind: Role\nmetadata:\n  name: cwo-commerce-webhook-operator\n  namespace: shop"
        ),
        "{out}"
    );
    assert!(
        out.contains("resources: [\"leases\"]"),
        "leader election RBAC with 2 replicas"
    );
    assert!(
        out.contains("name: WATCH_NAMESPACE\n              value: \"shop\""),
        "{out}"
    );
    assert!(
        out.contains("name: LEADER_ELECT\n              value: \"true\""),
        "{out}"
    );
    assert!(out.contains("kind: PodDisruptionBudget"));
    assert!(
        out.contains("kind: CommerceWebhook") && out.contains("replicas: 2"),
        "{out}"
    );
}

#[test]
fn the_values_schema_rejects_wrong_values_readably() {
    let cases = [
        ("replicaCount=0", "/replicaCount"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("watchNamespace=Not_A_Namespace", "/watchNamespace"),
        ("unknownKey=1", "unknownKey"),
    ];
    for (set, expected) in cases {
        let error = template(&[set]).expect_err(set);
        assert!(
            error.contains("values don't meet the specifications"),
            "{set}: {error}"
        );
        assert!(
            error.contains(expected),
            "{set}: expected {expected} in {error}"
        );
    }
}

/// A kubeconfig like the admin one, but authenticating as the chart's ServiceAccount.
async fn service_account_kubeconfig(
    ns: &TestNamespace,
    account: &str,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let accounts = ns.api::<ServiceAccount>();
    let secrets = ns.api::<Secret>();
    let token = wait_for("the ServiceAccount token", WAIT, || async {
        let account = accounts.get_opt(account).await.ok()??;
        let name = account.secrets?.first()?.name.clone()?;
        let secret = secrets.get_opt(&name).await.ok()??;
        let token = secret.data?.get("token")?.0.clone();
        String::from_utf8(token).ok()
    })
    .await;
    let admin = std::fs::read_to_string(std::env::var("KUBECONFIG").expect("KUBECONFIG"))
        .expect("read KUBECONFIG");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&admin).expect("KUBECONFIG is YAML");
    config["users"][0]["user"] = serde_yaml::from_str(&format!("{{token: {token}}}")).unwrap();
    let path = dir.join("service-account.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn helm_install_runs_the_operator_under_the_charts_rbac() {
    let ns = TestNamespace::new("helm").await;
    let release = format!("cwo-{}", &ns.name[ns.name.len() - 6..]);
    let chart = chart();
    let watch = format!("watchNamespace={}", ns.name);
    tool(
        "helm",
        &[
            "install",
            &release,
            &chart,
            "--namespace",
            &ns.name,
            "--set",
            &watch,
        ],
    )
    .unwrap();

    // The Deployment the chart creates cannot run here (no kubelet); run the same
    // binary locally with the ServiceAccount's token instead, so the chart's RBAC is
    // exactly what the operator has.
    let dir = std::env::temp_dir().join(&ns.name);
    std::fs::create_dir_all(&dir).unwrap();
    let account = format!("{release}-commerce-webhook-operator");
    let kubeconfig = service_account_kubeconfig(&ns, &account, &dir).await;
    let log_path = dir.join("operator.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let operator = operator_command(&ns.name)
        .env("KUBECONFIG", &kubeconfig)
        .env("LOG_LEVEL", "info")
        .stderr(log)
        .spawn()
        .expect("start the operator binary");
    let operator = KillOnDrop(operator);

    let example = repo_path("examples/check-stock.yaml").display().to_string();
    tool("kubectl", &["apply", "-n", &ns.name, "-f", &example]).unwrap();
    let cwhs = ns.api::<CommerceWebhook>();
    let url = wait_for(
        "the example to be reconciled with a status URL",
        WAIT,
        || async { cwhs.get("check-stock").await.ok()?.status?.url },
    )
    .await;
    assert_eq!(
        url,
        format!("http://check-stock.{}.svc/webhook/check-stock", ns.name)
    );
    let deployments = ns.api::<Deployment>();
    wait_for("the webhook Deployment", WAIT, || async {
        deployments.get_opt("check-stock").await.ok()?
    })
    .await;
    wait_for("Ready=True under the chart's RBAC", WAIT, || async {
        mark_pods_ready(
            &ns.client,
            &ns.name,
            "app.kubernetes.io/instance=check-stock",
        )
        .await;
        let status = cwhs.get("check-stock").await.ok()?.status?;
        (status.conditions.first()?.status == "True").then_some(())
    })
    .await;
    let events = ns.api::<Event>();
    wait_for(
        "an event published under the chart's RBAC",
        WAIT,
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("Created"))
                .then_some(())
        },
    )
    .await;

    drop(operator);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit a permission the chart does not grant:\n{log}"
    );

    // Upgrade with changed values, then uninstall: the CRD stays, as Helm does.
    tool(
        "helm",
        &[
            "upgrade",
            &release,
            &chart,
            "--namespace",
            &ns.name,
            "--set",
            &watch,
            "--set",
            "logLevel=debug,replicaCount=2",
        ],
    )
    .unwrap();
    let operator_deployment = deployments.get(&account).await.unwrap();
    let container = &operator_deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0];
    let env = container.env.as_ref().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(value("LOG_LEVEL").as_deref(), Some("debug"));
    assert_eq!(value("LEADER_ELECT").as_deref(), Some("true"));

    tool("helm", &["uninstall", &release, "--namespace", &ns.name]).unwrap();
    assert!(
        deployments.get_opt(&account).await.unwrap().is_none(),
        "uninstall removes the operator"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    let crd = crds
        .get_opt("commercewebhooks.integration.commerce.dev")
        .await
        .unwrap();
    assert!(crd.is_some(), "helm keeps CRDs on uninstall");
    assert!(
        cwhs.get_opt("check-stock").await.unwrap().is_some(),
        "user resources survive uninstall"
    );
    let _ = crd.map(|c| c.name_any());
}
