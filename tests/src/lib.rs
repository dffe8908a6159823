//! Test support for end-to-end tests against a real API server: a client from
//! `KUBECONFIG` (as `scripts/local-cluster.sh env` sets it), a fresh namespace per
//! test, the CRD installed, the operator running in-process for that namespace, and
//! a stand-in for the missing kubelet that marks pods Ready.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commerce_webhook_operator::children::Defaults;
use commerce_webhook_operator::controller::{self, Scope};
use commerce_webhook_operator::metrics::Metrics;
use commerce_webhook_operator::reconciler::Context;
use commerce_webhook_operator::resource::CommerceWebhook;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TEST_IMAGE: &str = "registry.invalid/commerce-webhook:e2e";

/// A client for the cluster the tests run against. Fails with instructions when
/// there is none: an e2e test that cannot reach a cluster must not pass.
pub async fn client() -> Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!(
            "KUBECONFIG is not set: run the tests with scripts/test.sh (it starts a local control plane)"
        );
    }
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot build a Kubernetes client from KUBECONFIG: {e}"));
    client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("the API server in KUBECONFIG does not answer: {e}"));
    client
}

/// A namespace of its own for one test, deleted when dropped.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> TestNamespace {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let client = client().await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "e2e-{prefix}-{}-{:x}",
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos ^ std::process::id()
        );
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace { client, name }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Server-side applies a YAML document into this namespace as a test user would.
    pub async fn apply_yaml<K>(&self, yaml: &str) -> Result<K, kube::Error>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + serde::Serialize,
    {
        let value: serde_json::Value = serde_yaml::from_str(yaml).expect("test YAML is valid");
        let name = value["metadata"]["name"]
            .as_str()
            .expect("test YAML has a name")
            .to_owned();
        self.api::<K>()
            .patch(
                &name,
                &PatchParams::apply("e2e-test").force(),
                &Patch::Apply(value),
            )
            .await
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        // Best effort, in the background: the runtime may be shutting down.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = namespaces.delete(&name, &DeleteParams::background()).await;
            });
        }
    }
}

/// Installs (or updates) the CommerceWebhook CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = CommerceWebhook::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("e2e-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("installing the CRD: {e}"));
    wait_for("the CRD to be established", Duration::from_secs(30), || {
        let crds = crds.clone();
        let name = name.clone();
        async move {
            let crd = crds.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}

/// The operator, running in this process and watching one namespace.
pub struct Operator {
    pub metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Operator {
    pub async fn start(namespace: &TestNamespace) -> Operator {
        Self::start_with(
            namespace.client.clone(),
            Scope::Namespace(namespace.name.clone()),
        )
        .await
    }

    pub async fn start_with(client: Client, scope: Scope) -> Operator {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "commerce-webhook-operator".into(),
                instance: Some("e2e".into()),
            },
        );
        let defaults = Defaults {
            image: TEST_IMAGE.to_owned(),
        };
        let metrics = Metrics::default();
        let (context, writers) = Context::new(client, defaults, recorder, metrics.clone());
        let context = std::sync::Arc::new(context);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(context, writers, scope, async {
            let _ = stopped.await;
        }));
        Operator {
            metrics,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the controller and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `check` until it yields a value, panicking with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Plays the kubelet: marks every pod matching `selector` as Running and Ready, so
/// the ReplicaSet and Deployment controllers count them. Returns how many it marked.
pub async fn mark_pods_ready(client: &Client, namespace: &str, selector: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|e| panic!("listing pods {selector}: {e}"));
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut marked = 0;
    for pod in list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let containers: Vec<serde_json::Value> = pod
            .spec
            .as_ref()
            .map(|spec| spec.containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|name| {
                json!({"name": name, "ready": true, "restartCount": 0, "image": TEST_IMAGE, "imageID": "",
                       "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let status = json!({"status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
            ],
            "containerStatuses": containers,
        }});
        pods.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .unwrap_or_else(|e| panic!("marking pod {} ready: {e}", pod.name_any()));
        marked += 1;
    }
    marked
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A binary of this workspace, built next to the test executables
/// (`cargo test --workspace` and `scripts/test.sh` build them).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps, binaries from target/<profile>.
    let dir = exe.parent().expect("executable directory");
    let candidates = [Some(dir.join(name)), dir.parent().map(|up| up.join(name))];
    let path = candidates
        .into_iter()
        .flatten()
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| dir.join(name));
    assert!(
        path.exists(),
        "{} not found: build it first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// Runs a command line tool (helm, kubectl) and returns its stdout, or its stderr as the error.
pub fn tool(program: &str, args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (is it on PATH? scripts/test.sh puts it there): {e}")
        });
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        ))
    }
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The operator binary, ready to run for one namespace with the test image as its
/// default; callers add their environment (KUBECONFIG, LOG_LEVEL) and spawn it.
pub fn operator_command(namespace: &str) -> std::process::Command {
    let mut command = std::process::Command::new(workspace_binary("commerce-webhook-operator"));
    command
        .args([
            "run",
            "--watch-namespace",
            namespace,
            "--metrics-address",
            "127.0.0.1:0",
        ])
        .env("WEBHOOK_IMAGE", TEST_IMAGE)
        .stdout(std::process::Stdio::null());
    command
}
