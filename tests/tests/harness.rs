//! Proves the local cluster is a real one: server-side apply, the Deployment and
//! ReplicaSet controllers, pods run by the node with a hardened security context and
//! made Ready by their probes, a Service routed to them, and garbage collection.

use std::time::Duration;

use e2e::{Commerce, TestNamespace, WEBHOOK_IMAGE, ready_pods, service_url, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, PostParams};

/// The webhook image with the embedded sample inventory, under the restrictions a
/// production pod has.
fn deployment_yaml() -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: smoke, labels: {{app: smoke}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: smoke}}}}
  template:
    metadata: {{labels: {{app: smoke}}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: main
          image: {WEBHOOK_IMAGE}
          ports: [{{name: http, containerPort: 8080, protocol: TCP}}]
          readinessProbe: {{httpGet: {{path: /readyz, port: http}}, periodSeconds: 1}}
          securityContext:
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: {{drop: [ALL]}}
"#
    )
}

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: smoke}
spec:
  selector: {app: smoke}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
"#;

#[tokio::test]
#[ignore = "needs a cluster: scripts/test.sh"]
async fn control_plane_runs_controllers_readiness_and_garbage_collection() {
    let ns = TestNamespace::new("smoke").await;
    let deployment: Deployment = ns
        .apply_yaml(&deployment_yaml())
        .await
        .expect("server-side apply a Deployment");
    let service: Service = ns
        .apply_yaml(SERVICE)
        .await
        .expect("server-side apply a Service");
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 80);

    wait_for(
        "the ReplicaSet and 2 pods",
        Duration::from_secs(30),
        || async { (replica_sets_and_pods(&ns).await? == (1, 2)).then_some(()) },
    )
    .await;

    assert_eq!(ready_pods(&ns, "app=smoke", 2).await.len(), 2);
    let deployments = ns.api::<Deployment>();
    wait_for(
        "the Deployment to report 2 ready replicas",
        Duration::from_secs(30),
        || async {
            let d = deployments.get("smoke").await.ok()?;
            (d.status?.ready_replicas? == 2).then_some(())
        },
    )
    .await;

    // Through the Service, as kube-proxy routes it: the sample inventory answers.
    let url = format!("{}/webhook/check-stock", service_url(&ns, "smoke").await);
    let answer = Commerce::new(url)
        .eventually(
            r#"{"data":{"cart_id":"1","items":[{"item_id":1,"sku":"MS-03","qty":1}]}}"#,
            Duration::from_secs(30),
            |answer| answer["op"] == "exception",
        )
        .await;
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("MS-03"),
        "{answer}"
    );

    // An object owned by the Deployment disappears with it.
    let owned: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "owned", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "smoke",
            "uid": deployment.uid().unwrap(), "controller": true}]}
    }))
    .unwrap();
    let config_maps = ns.api::<ConfigMap>();
    config_maps
        .create(&PostParams::default(), &owned)
        .await
        .unwrap();
    deployments
        .delete("smoke", &DeleteParams::background())
        .await
        .unwrap();
    wait_for(
        "garbage collection of the ReplicaSet, pods and owned ConfigMap",
        Duration::from_secs(60),
        || async {
            let owned = config_maps.get_opt("owned").await.ok()?;
            (replica_sets_and_pods(&ns).await? == (0, 0) && owned.is_none()).then_some(())
        },
    )
    .await;
}

/// How many ReplicaSets the namespace has, and how many pods of the smoke app.
async fn replica_sets_and_pods(ns: &TestNamespace) -> Option<(usize, usize)> {
    let replica_sets = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .ok()?;
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=smoke"))
        .await
        .ok()?;
    Some((replica_sets.items.len(), pods.items.len()))
}
