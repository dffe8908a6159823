//! Test support for end-to-end tests against a real cluster (`scripts/local-cluster.sh`:
//! a control plane and a node that runs pods): a client from `KUBECONFIG`, a fresh
//! namespace per test, the CRD installed, the operator running in-process for that
//! namespace, pods made Ready by the kubelet's own probes, and Commerce calls sent
//! through a Service's ClusterIP as the cluster routes them.

#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commerce_webhook_operator::children::{Defaults, PdbApi};
use commerce_webhook_operator::controller::{self, Scope};
use commerce_webhook_operator::metrics::Metrics;
use commerce_webhook_operator::reconciler::Context;
use commerce_webhook_operator::resource::CommerceWebhook;
use k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where `scripts/build-images.sh` tags the images it builds into this machine's
/// engine (its IMAGE_REGISTRY default): a name no one can claim on a public
/// registry, like the node's `cwo.local/pause` (nothing is pulled).
pub const LOCAL_REGISTRY: &str = "cwo.local";

/// The image of every webhook pod the tests start, as `scripts/build-images.sh`
/// tags it: the operator has no default image.
pub const WEBHOOK_IMAGE: &str = concat!("cwo.local/commerce-webhook:", env!("CARGO_PKG_VERSION"));

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
    /// Deletes the namespace before the test ends, pods included: on a real node,
    /// pods left behind keep their CPU requests and would starve later tests. The
    /// test's own runtime is blocked in this drop, so the delete runs on a thread with
    /// a runtime and a client of its own.
    fn drop(&mut self) {
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = Client::try_default().await.map_err(|e| e.to_string())?;
                let namespaces: Api<Namespace> = Api::all(client);
                namespaces
                    .delete(&name, &DeleteParams::foreground())
                    .await
                    .map_err(|e| e.to_string())?;
                // Gone once its pods are: wait, bounded, so the node is free again.
                for _ in 0..600 {
                    match namespaces.get_opt(&name).await {
                        Ok(None) => return Ok(()),
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                Err(format!("namespace {name} still exists after 60 s"))
            })
        })
        .join();
        if let Ok(Err(error)) = deleted {
            eprintln!("cleaning up the test namespace: {error}");
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

/// A fresh namespace with the CRD installed and an in-process operator watching it.
pub async fn namespace_with_operator(prefix: &str) -> (TestNamespace, Operator) {
    let ns = TestNamespace::new(prefix).await;
    install_crd(&ns.client).await;
    let operator = Operator::start(&ns).await;
    (ns, operator)
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
        let pdb = PdbApi::discover(&client)
            .await
            .unwrap_or_else(|e| panic!("discovering the PodDisruptionBudget API: {e}"));
        let defaults = Defaults {
            image: WEBHOOK_IMAGE.to_owned(),
            pdb,
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
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_until(timeout, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `check` until it yields a value; `None` once `timeout` has passed.
async fn poll_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The reasons of the Events in the namespace about objects of `kind` (any kind
/// when `None`).
pub async fn event_reasons(ns: &TestNamespace, kind: Option<&str>) -> Vec<String> {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing events: {e}"))
        .items
        .into_iter()
        .filter(|e| kind.is_none() || e.involved_object.kind.as_deref() == kind)
        .filter_map(|e| e.reason)
        .collect()
}

/// Waits until `count` pods matching `selector` are Running and Ready (by the
/// kubelet's readiness probes) and none other is left; returns their names, sorted.
pub async fn ready_pods(ns: &TestNamespace, selector: &str, count: usize) -> Vec<String> {
    let pods = ns.api::<Pod>();
    let what = format!("{count} Ready pods {selector}");
    wait_for_pods(ns, &what, || async {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .ok()?;
        let ready: Vec<String> = list
            .items
            .iter()
            .filter(|pod| pod_is_ready(pod))
            .map(|pod| pod.name_any())
            .collect();
        (ready.len() == count && list.items.len() == count).then_some(ready)
    })
    .await
}

/// [`wait_for`] something the node's pods do, for up to [`POD_WAIT`]. A timeout
/// panics with what the node did with the namespace's pods ([`describe_pods`]), so a
/// failure on a machine nobody can log in to still says why.
pub async fn wait_for_pods<T, F, Fut>(ns: &TestNamespace, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(POD_WAIT, check).await {
        Some(value) => value,
        None => panic!(
            "timed out after {POD_WAIT:?} waiting for {what}\n{}",
            describe_pods(ns).await
        ),
    }
}

/// What the node did with the namespace's pods, for a test that waited in vain: each
/// pod's phase and containers, and the namespace's Warning events (image missing,
/// sandbox refused, probe failing...).
pub async fn describe_pods(ns: &TestNamespace) -> String {
    let mut text = String::new();
    match ns.api::<Pod>().list(&ListParams::default()).await {
        Ok(list) if list.items.is_empty() => text.push_str("no pods in the namespace\n"),
        Ok(list) => {
            for pod in &list.items {
                text.push_str(&describe_pod(pod));
            }
        }
        Err(e) => text.push_str(&format!("listing pods: {e}\n")),
    }
    match ns.api::<Event>().list(&ListParams::default()).await {
        Ok(events) => {
            for event in events
                .items
                .iter()
                .filter(|e| e.type_.as_deref() == Some("Warning"))
            {
                text.push_str(&format!(
                    "event {}/{}: {} x{}: {}\n",
                    event.involved_object.kind.as_deref().unwrap_or("?"),
                    event.involved_object.name.as_deref().unwrap_or("?"),
                    event.reason.as_deref().unwrap_or("?"),
                    event.count.unwrap_or(1),
                    event.message.as_deref().unwrap_or("")
                ));
            }
        }
        Err(e) => text.push_str(&format!("listing events: {e}\n")),
    }
    text
}

fn describe_pod(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let mut text = format!(
        "pod {}: phase {}, node {}{}\n",
        pod.name_any(),
        status.phase.as_deref().unwrap_or("?"),
        pod.spec
            .as_ref()
            .and_then(|spec| spec.node_name.as_deref())
            .unwrap_or("none"),
        status.message.map(|m| format!(", {m}")).unwrap_or_default()
    );
    for condition in status.conditions.unwrap_or_default() {
        if condition.status != "True" {
            text.push_str(&format!(
                "  condition {}={} {} {}\n",
                condition.type_,
                condition.status,
                condition.reason.unwrap_or_default(),
                condition.message.unwrap_or_default()
            ));
        }
    }
    for container in status.container_statuses.unwrap_or_default() {
        let state = container.state.unwrap_or_default();
        let now = if let Some(waiting) = state.waiting {
            format!(
                "waiting {} {}",
                waiting.reason.unwrap_or_default(),
                waiting.message.unwrap_or_default()
            )
        } else if let Some(done) = state.terminated {
            format!(
                "terminated exit {} {} {}",
                done.exit_code,
                done.reason.unwrap_or_default(),
                done.message.unwrap_or_default()
            )
        } else {
            "running".to_owned()
        };
        text.push_str(&format!(
            "  container {}: {now}, ready {}, restarts {}\n",
            container.name, container.ready, container.restart_count
        ));
    }
    text
}

/// How long a pod may take to be scheduled, started and probed Ready.
pub const POD_WAIT: Duration = Duration::from_secs(120);

pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// Restarts of every container of the pods matching `selector`.
pub async fn restart_count(ns: &TestNamespace, selector: &str) -> i32 {
    let list = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|e| panic!("listing pods {selector}: {e}"));
    list.items
        .iter()
        .filter_map(|pod| pod.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .map(|container| container.restart_count)
        .sum()
}

/// `http://<ClusterIP>:<port>` of a Service: the node's kube-proxy routes it from
/// this machine as from any pod.
pub async fn service_url(ns: &TestNamespace, name: &str) -> String {
    let services = ns.api::<Service>();
    let what = format!("Service {name} with a ClusterIP");
    wait_for(&what, POD_WAIT, || async {
        let spec = services.get_opt(name).await.ok()??.spec?;
        let ip = spec
            .cluster_ip
            .filter(|ip| !ip.is_empty() && ip != "None")?;
        let port = spec.ports?.first()?.port;
        Some(format!("http://{ip}:{port}"))
    })
    .await
}

/// Addresses behind a Service, as the endpoints controller sees them.
pub async fn endpoint_addresses(ns: &TestNamespace, name: &str) -> usize {
    let endpoints = ns.api::<Endpoints>();
    endpoints
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|e| e.subsets)
        .unwrap_or_default()
        .iter()
        .map(|subset| subset.addresses.as_ref().map_or(0, Vec::len))
        .sum()
}

/// This machine's address on the node's container network (the apiserver's own, as
/// `KUBECONFIG` names it): pods reach servers a test starts there.
pub fn host_address() -> std::net::IpAddr {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let text = std::fs::read_to_string(&path).expect("read KUBECONFIG");
    let config: serde_yaml::Value = serde_yaml::from_str(&text).expect("KUBECONFIG is YAML");
    let server = config["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("KUBECONFIG names a server");
    let host = server
        .trim_start_matches("https://")
        .split(':')
        .next()
        .unwrap_or_default();
    host.parse()
        .unwrap_or_else(|_| panic!("the API server in KUBECONFIG is not an IP address: {server}"))
}

/// Plays Commerce: POSTs a payload to the hook URL with the hook's headers, with
/// Commerce's timeout, one connection per call.
#[derive(Clone)]
pub struct Commerce {
    client: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
}

impl Commerce {
    pub fn new(url: String) -> Commerce {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client");
        Commerce {
            client,
            url,
            headers: Vec::new(),
        }
    }

    /// Commerce calling `path` on a Service, through its ClusterIP.
    pub async fn to_service(ns: &TestNamespace, service: &str, path: &str) -> Commerce {
        Commerce::new(format!("{}{path}", service_url(ns, service).await))
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Commerce {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The webhook's answer, or why there was none (refused, timed out, not JSON).
    pub async fn call(&self, body: &str) -> Result<serde_json::Value, String> {
        self.call_with(body, &[]).await
    }

    pub async fn call_with(
        &self,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())) {
            request = request.header(name, value);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await.map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{e:?}"))?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))
    }

    /// Calls until the answer satisfies `accept`, for up to `timeout`; returns it.
    pub async fn eventually(
        &self,
        body: &str,
        timeout: Duration,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let what = format!("an accepted answer to {body} from {}", self.url);
        wait_for(&what, timeout, || async {
            self.call(body).await.ok().filter(|answer| accept(answer))
        })
        .await
    }
}

/// A steady stream of Commerce calls in the background, as shoppers adding to their
/// carts make; every call that is not answered `expected` is a failure.
pub struct CallStream {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<StreamReport>,
}

#[derive(Debug, Default)]
pub struct StreamReport {
    pub calls: usize,
    pub failures: Vec<String>,
}

impl CallStream {
    pub fn start(
        commerce: Commerce,
        body: &'static str,
        expected: serde_json::Value,
        per_second: u32,
    ) -> CallStream {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut calls = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        let commerce = commerce.clone();
                        let expected = expected.clone();
                        calls.spawn(async move {
                            match commerce.call(body).await {
                                Ok(answer) if answer == expected => None,
                                Ok(answer) => Some(format!("unexpected answer {answer}")),
                                Err(error) => Some(error),
                            }
                        });
                    }
                }
            }
            let mut report = StreamReport::default();
            while let Some(result) = calls.join_next().await {
                report.calls += 1;
                match result {
                    Ok(None) => {}
                    Ok(Some(failure)) => report.failures.push(failure),
                    Err(error) => report.failures.push(format!("call task failed: {error}")),
                }
            }
            report
        });
        CallStream {
            stop: Some(stop),
            task,
        }
    }

    /// Stops sending, waits for the calls in flight, and reports.
    pub async fn finish(mut self) -> StreamReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("the call stream task")
    }
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
        .env("WEBHOOK_IMAGE", WEBHOOK_IMAGE)
        .stdout(std::process::Stdio::null());
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_described_by_what_keeps_it_from_running() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1"},
            "spec": {"nodeName": "cwo-node", "containers": [{"name": "main"}]},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                     "message": "containers with unready status: [main]"}
                ],
                "containerStatuses": [{
                    "name": "main", "ready": false, "restartCount": 3, "image": "x", "imageID": "",
                    "state": {"waiting": {"reason": "ErrImageNeverPull",
                                          "message": "image is not present"}}
                }]
            }
        }))
        .expect("a pod");
        let text = describe_pod(&pod);
        assert!(
            text.starts_with("pod web-1: phase Pending, node cwo-node\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "condition Ready=False ContainersNotReady containers with unready status: [main]"
            ),
            "{text}"
        );
        assert!(
            !text.contains("PodScheduled"),
            "only conditions not met: {text}"
        );
        assert!(
            text.contains(
                "container main: waiting ErrImageNeverPull image is not present, ready false, restarts 3"
            ),
            "{text}"
        );
    }
}
