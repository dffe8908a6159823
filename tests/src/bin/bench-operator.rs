//! Operator benchmark (not a test): applies N CommerceWebhooks and measures how fast
//! the operator turns them into Deployments, Services and a status, against a tight
//! client that makes the same writes itself, in the same run, on the same API server.
//! Run through `scripts/bench-operator.sh`.
//!
//! Reports: total time to all converged (children applied and status written) for
//! both, p50/p99 of apply→children per resource, and the operator's peak RSS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commerce_webhook_operator::children::{self, Defaults};
use commerce_webhook_operator::resource::{CommerceWebhook, CommerceWebhookSpec};
use e2e::{KillOnDrop, TestNamespace, install_crd, operator_command, wait_for};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher;

const CONCURRENCY: usize = 32;

fn webhook(name: &str) -> CommerceWebhook {
    let spec: CommerceWebhookSpec =
        serde_json::from_value(serde_json::json!({"workload": {"replicas": 0}}))
            .expect("bench spec");
    let mut cwh = CommerceWebhook::new(name, spec);
    cwh.metadata.labels = Some([("bench".to_owned(), "operator".to_owned())].into());
    cwh
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Direct: a tight client making the writes the operator path makes, itself: the
/// CommerceWebhook, its Deployment and Service, its status and one Event.
/// Returns the total time and, per resource, the time from its CommerceWebhook
/// write to its Service write.
async fn direct(ns: &TestNamespace, count: usize) -> (Duration, Vec<Duration>) {
    let cwhs = ns.api::<CommerceWebhook>();
    let deployments = ns.api::<Deployment>();
    let services = ns.api::<Service>();
    let events = ns.api::<k8s_openapi::api::events::v1::Event>();
    let defaults = Defaults {
        image: e2e::WEBHOOK_IMAGE.to_owned(),
        pdb: children::PdbApi::v1beta1(),
    };
    let params = PatchParams::apply("bench-direct").force();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = stream::iter(0..count)
        .map(|i| {
            let (cwhs, deployments, services, events, defaults, params) =
                (&cwhs, &deployments, &services, &events, &defaults, &params);
            async move {
                let name = format!("hook-{i}");
                let cwh = cwhs.patch(&name, params, &Patch::Apply(&webhook(&name))).await?;
                let applied = Instant::now();
                let deployment = children::deployment(&cwh, defaults, "direct");
                deployments.patch(&name, params, &Patch::Apply(&deployment)).await?;
                services.patch(&name, params, &Patch::Apply(&children::service(&cwh))).await?;
                let latency = applied.elapsed();
                let status = serde_json::json!({"status": {"observedGeneration": 1, "url": cwh.cluster_url()}});
                cwhs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
                let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(serde_json::json!({
                    "metadata": {"generateName": format!("{name}-")},
                    "eventTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                    "reason": "Created", "action": "Reconcile", "type": "Normal",
                    "reportingController": "bench-direct", "reportingInstance": "bench",
                    "regarding": {"apiVersion": "integration.commerce.dev/v1alpha1", "kind": "CommerceWebhook",
                                  "name": name, "namespace": ns.name},
                }))
                .expect("event");
                events.create(&Default::default(), &event).await?;
                Ok::<_, kube::Error>(latency)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
        .expect("direct writes");
    latencies.sort();
    (started.elapsed(), latencies)
}

struct OperatorRun {
    total: Duration,
    latencies: Vec<Duration>,
    /// One at a time on a settled cluster, as a person running `kubectl apply`.
    single_latencies: Vec<Duration>,
    rss_peak_kib: u64,
}

const SINGLE: usize = 50;

async fn through_operator(ns: &TestNamespace, count: usize) -> OperatorRun {
    let log = std::fs::File::create(std::env::temp_dir().join(format!("{}-operator.log", ns.name)))
        .expect("log");
    let operator = operator_command(&ns.name)
        .env(
            "LOG_LEVEL",
            std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(log)
        .spawn()
        .expect("start the operator");
    let operator = KillOnDrop(operator);
    let pid = operator.0.id();

    // When each Service (the last child applied) first appears.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let services = ns.api::<Service>();
        tokio::spawn(async move {
            let events = watcher(services, watcher::Config::default()).boxed();
            events
                .for_each(|event| {
                    if let Ok(watcher::Event::Apply(service) | watcher::Event::InitApply(service)) =
                        event
                    {
                        seen.lock()
                            .expect("lock")
                            .entry(service.name_any())
                            .or_insert_with(Instant::now);
                    }
                    std::future::ready(())
                })
                .await;
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let cwhs = ns.api::<CommerceWebhook>();
    let params = PatchParams::apply("bench-client").force();
    let started = Instant::now();
    let applied: Vec<(String, Instant)> = stream::iter(0..count)
        .map(|i| {
            let (cwhs, params) = (&cwhs, &params);
            async move {
                let name = format!("hook-{i}");
                cwhs.patch(&name, params, &Patch::Apply(&webhook(&name)))
                    .await?;
                Ok::<_, kube::Error>((name, Instant::now()))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
        .expect("apply CommerceWebhooks");

    let converged = wait_for(
        "all CommerceWebhooks converged",
        Duration::from_secs(600),
        || async {
            let list = cwhs.list(&ListParams::default()).await.ok()?;
            let done = list
                .items
                .iter()
                .filter(|c| {
                    c.status
                        .as_ref()
                        .is_some_and(|s| s.observed_generation.is_some() && s.url.is_some())
                })
                .count();
            let services = seen.lock().expect("lock").len();
            (done == count && services == count).then(Instant::now)
        },
    )
    .await;
    let total = converged - started;

    let mut single_latencies = Vec::with_capacity(SINGLE);
    for i in 0..SINGLE {
        let name = format!("single-{i}");
        cwhs.patch(&name, &params, &Patch::Apply(&webhook(&name)))
            .await
            .expect("apply");
        let applied = Instant::now();
        let seen_at = wait_for(
            "the Service of a single webhook",
            Duration::from_secs(30),
            || {
                let seen = seen.clone();
                let name = name.clone();
                async move { seen.lock().expect("lock").get(&name).copied() }
            },
        )
        .await;
        single_latencies.push(seen_at.saturating_duration_since(applied));
    }
    single_latencies.sort();
    let rss_peak_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    drop(operator);
    watch.abort();

    let seen = seen.lock().expect("lock");
    let mut latencies: Vec<Duration> = applied
        .iter()
        .filter_map(|(name, at)| seen.get(name).map(|s| s.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    OperatorRun {
        total,
        latencies,
        single_latencies,
        rss_peak_kib,
    }
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let direct_ns = TestNamespace::new("bench-direct").await;
    install_crd(&direct_ns.client).await;
    println!("applying {count} webhooks, {CONCURRENCY} writes in flight");
    let (direct_total, direct_latencies) = direct(&direct_ns, count).await;
    println!(
        "direct client: {count} CommerceWebhooks with Deployment, Service, status and Event in {:.2} s; \
         write -> children p50 {:.1} ms, p99 {:.1} ms",
        direct_total.as_secs_f64(),
        percentile(&direct_latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&direct_latencies, 0.99).as_secs_f64() * 1e3
    );
    // Let the controller-manager finish the ReplicaSets of the direct phase.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let operator_ns = TestNamespace::new("bench-operator").await;
    let run = through_operator(&operator_ns, count).await;
    let (p50, p99) = (
        percentile(&run.latencies, 0.5),
        percentile(&run.latencies, 0.99),
    );
    println!(
        "operator: {count} CommerceWebhooks converged in {:.2} s ({:.2}x the direct client)",
        run.total.as_secs_f64(),
        run.total.as_secs_f64() / direct_total.as_secs_f64()
    );
    println!(
        "apply -> children during the burst: p50 {:.1} ms, p99 {:.1} ms, over {} resources",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        run.latencies.len()
    );
    println!(
        "apply -> children, one at a time on a settled cluster: p50 {:.1} ms, p99 {:.1} ms, over {SINGLE}",
        percentile(&run.single_latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&run.single_latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "operator peak RSS: {:.1} MiB",
        run.rss_peak_kib as f64 / 1024.0
    );
    drop(direct_ns);
    drop(operator_ns);
    tokio::time::sleep(Duration::from_millis(500)).await;
}
