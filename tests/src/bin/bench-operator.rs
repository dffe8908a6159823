//! Operator benchmark (not a test): applies N CommerceWebhooks and measures how fast
//! the operator turns them into Deployments, Services and a status, against a tight
//! client that makes the same writes itself, in the same run, on the same API server.
//! Run through `scripts/bench-operator.sh`.
//!
//! Reports: total time to all converged (children applied and status written) for
//! both, p50/p99 of apply→children per resource, the operator's CPU seconds per
//! resource and peak RSS, and, with `--steady SECONDS`, the API requests the
//! cluster served in a steady state afterwards (from the API server's own
//! `apiserver_request_total`, by verb and resource; watches left out).
//!
//!   bench-operator N [--steady SECONDS] [--no-direct]

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
    /// User + system CPU seconds at convergence and at the end.
    cpu_converged: f64,
    cpu_end: f64,
    rss_converged_kib: u64,
    /// Non-watch requests served during the steady state, by verb and resource.
    steady: Vec<(String, f64)>,
    latencies: Vec<Duration>,
    /// One at a time on a settled cluster, as a person running `kubectl apply`.
    single_latencies: Vec<Duration>,
    rss_peak_kib: u64,
}

const SINGLE: usize = 50;

/// A process's user + system CPU seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0);
    ticks / per_second
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `apiserver_request_total` from the API server's own metrics, summed by
/// `verb resource[/subresource]`, watches left out.
async fn api_requests(client: &kube::Client) -> HashMap<String, f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client
        .request_text(request)
        .await
        .expect("API server /metrics");
    let mut totals = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let verb = label("verb");
        if verb == "WATCH" || verb == "CONNECT" {
            continue;
        }
        let mut resource = label("resource");
        let subresource = label("subresource");
        if !subresource.is_empty() {
            resource = format!("{resource}/{subresource}");
        }
        if resource.is_empty() {
            resource = "(discovery)".to_owned();
        }
        *totals.entry(format!("{verb} {resource}")).or_insert(0.0) +=
            value.parse::<f64>().unwrap_or(0.0);
    }
    totals
}

async fn through_operator(ns: &TestNamespace, count: usize, steady: Duration) -> OperatorRun {
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
    let cpu_converged = cpu_seconds(pid);
    let rss_converged_kib = peak_rss_kib(pid);
    println!(
        "operator: {count} converged in {:.2} s, {:.1} CPU s, peak RSS {:.1} MiB",
        total.as_secs_f64(),
        cpu_converged,
        rss_converged_kib as f64 / 1024.0
    );

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

    let mut steady_requests = Vec::new();
    if !steady.is_zero() {
        // Settle: the last events of the burst and of the single applies.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let before = api_requests(&ns.client).await;
        println!(
            "steady state: {} s with nothing changing...",
            steady.as_secs()
        );
        tokio::time::sleep(steady).await;
        let after = api_requests(&ns.client).await;
        let mut deltas: Vec<(String, f64)> = after
            .into_iter()
            .map(|(key, value)| {
                let delta = value - before.get(&key).copied().unwrap_or(0.0);
                (key, delta)
            })
            .filter(|(_, delta)| *delta > 0.0)
            .collect();
        deltas.sort_by(|a, b| b.1.total_cmp(&a.1));
        steady_requests = deltas;
    }
    let cpu_end = cpu_seconds(pid);
    let rss_peak_kib = peak_rss_kib(pid);
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
        cpu_converged,
        cpu_end,
        rss_converged_kib,
        steady: steady_requests,
        latencies,
        single_latencies,
        rss_peak_kib,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let steady = args
        .iter()
        .position(|a| a == "--steady")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let with_direct = !args.iter().any(|a| a == "--no-direct");
    println!("applying {count} webhooks, {CONCURRENCY} writes in flight");
    let mut direct_total = None;
    let mut direct_ns = None;
    if with_direct {
        let ns = TestNamespace::new("bench-direct").await;
        install_crd(&ns.client).await;
        let (total, latencies) = direct(&ns, count).await;
        println!(
            "direct client: {count} CommerceWebhooks with Deployment, Service, status and Event in {:.2} s; \
             write -> children p50 {:.1} ms, p99 {:.1} ms",
            total.as_secs_f64(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3
        );
        direct_total = Some(total);
        direct_ns = Some(ns);
        // Let the controller-manager finish the ReplicaSets of the direct phase.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    let operator_ns = TestNamespace::new("bench-operator").await;
    install_crd(&operator_ns.client).await;
    let run = through_operator(&operator_ns, count, steady).await;
    let (p50, p99) = (
        percentile(&run.latencies, 0.5),
        percentile(&run.latencies, 0.99),
    );
    match direct_total {
        Some(direct) => println!(
            "operator: {count} CommerceWebhooks converged in {:.2} s ({:.2}x the direct client)",
            run.total.as_secs_f64(),
            run.total.as_secs_f64() / direct.as_secs_f64()
        ),
        None => println!(
            "operator: {count} CommerceWebhooks converged in {:.2} s",
            run.total.as_secs_f64()
        ),
    }
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
        "operator CPU: {:.1} s to converge ({:.2} ms per resource), {:.1} s in all",
        run.cpu_converged,
        run.cpu_converged * 1e3 / count as f64,
        run.cpu_end
    );
    println!(
        "operator peak RSS: {:.1} MiB at convergence, {:.1} MiB in all",
        run.rss_converged_kib as f64 / 1024.0,
        run.rss_peak_kib as f64 / 1024.0
    );
    if !steady.is_zero() {
        let seconds = steady.as_secs_f64();
        let total: f64 = run.steady.iter().map(|(_, n)| n).sum();
        println!(
            "steady state, {seconds:.0} s: {total:.0} non-watch API requests by every client ({:.2}/s):",
            total / seconds
        );
        for (key, n) in &run.steady {
            println!("  {key}: {n:.0} ({:.3}/s)", n / seconds);
        }
    }
    drop(direct_ns);
    drop(operator_ns);
    tokio::time::sleep(Duration::from_millis(500)).await;
}
