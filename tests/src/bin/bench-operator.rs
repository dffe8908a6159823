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

use commerce_webhook_operator::children::{self, ChildKind, Defaults};
use commerce_webhook_operator::resource::{CommerceWebhook, CommerceWebhookSpec};
use e2e::{KillOnDrop, TestNamespace, install_crd, operator_command, wait_for};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
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

/// Direct: a tight client making the writes the operator makes, itself: the
/// CommerceWebhook, then each child the operator would create for it (every kind of
/// [`ChildKind::ALL`] it wants, created as the operator creates them), its status
/// and one Event. Returns the total time and, per resource, the time from its
/// CommerceWebhook write to its last child's.
async fn direct(ns: &TestNamespace, count: usize) -> (Duration, Vec<Duration>) {
    let cwhs = ns.api::<CommerceWebhook>();
    let events = ns.api::<k8s_openapi::api::events::v1::Event>();
    let defaults = Defaults {
        image: e2e::WEBHOOK_IMAGE.to_owned(),
        pdb: children::PdbApi::discover(&ns.client)
            .await
            .expect("the PodDisruptionBudget API"),
    };
    let child_apis: Vec<(ChildKind, Api<DynamicObject>)> = ChildKind::ALL
        .into_iter()
        .map(|kind| {
            let resource = kind.api_resource(&defaults.pdb);
            (
                kind,
                Api::namespaced_with(ns.client.clone(), &ns.name, &resource),
            )
        })
        .collect();
    let create = PostParams {
        field_manager: Some("bench-direct".to_owned()),
        ..PostParams::default()
    };
    let params = PatchParams::apply("bench-direct").force();
    let audit = Audit::mark();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = stream::iter(0..count)
        .map(|i| {
            let (cwhs, child_apis, events, defaults, params, create) =
                (&cwhs, &child_apis, &events, &defaults, &params, &create);
            async move {
                let name = format!("hook-{i}");
                let cwh = cwhs.patch(&name, params, &Patch::Apply(&webhook(&name))).await?;
                let applied = Instant::now();
                // Concurrently, as the operator writes a resource's children.
                let writes = child_apis.iter().filter_map(|(kind, api)| {
                    let child = kind.desired(&cwh, defaults, "direct")?;
                    Some(async move { api.create(create, &child).await })
                });
                futures::future::try_join_all(writes).await?;
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
    print_audit("direct client's burst", audit.as_ref(), None);
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

/// Where the API server's audit log stands (`CWO_AUDIT=1` on the local cluster):
/// what it logged from here on is attributed by [`Audit::since`].
struct Audit {
    path: std::path::PathBuf,
    offset: u64,
}

impl Audit {
    /// `None` unless the cluster writes an audit log.
    fn mark() -> Option<Audit> {
        let path = std::path::PathBuf::from(std::env::var_os("CWO_AUDIT_LOG")?);
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Some(Audit { path, offset })
    }

    /// The requests logged since the mark (watches are not logged), counted by
    /// `client verb resource[/subresource]`, most first, each with the URI of its
    /// first request; the client is the user agent's program name.
    fn since(&self) -> Vec<(String, usize, String)> {
        use std::io::{BufRead, Seek};
        let mut file = std::fs::File::open(&self.path).expect("audit log");
        file.seek(std::io::SeekFrom::Start(self.offset))
            .expect("seek in the audit log");
        let mut counts: HashMap<String, (usize, String)> = HashMap::new();
        for line in std::io::BufReader::new(file).lines() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line.expect("read")) else {
                continue;
            };
            let text = |pointer: &str| {
                entry
                    .pointer(pointer)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
            };
            let client = text("/userAgent")
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned();
            let mut resource = text("/objectRef/resource").to_owned();
            if resource.is_empty() {
                resource = "(discovery)".to_owned();
            }
            let subresource = text("/objectRef/subresource");
            if !subresource.is_empty() {
                resource = format!("{resource}/{subresource}");
            }
            counts
                .entry(format!("{client} {} {resource}", text("/verb")))
                .or_insert_with(|| (0, text("/requestURI").to_owned()))
                .0 += 1;
        }
        let mut counts: Vec<(String, usize, String)> = counts
            .into_iter()
            .map(|(key, (n, uri))| (key, n, uri))
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }
}

/// Prints what the audit log attributes to a phase, if the cluster writes one.
fn print_audit(phase: &str, audit: Option<&Audit>, seconds: Option<f64>) {
    let Some(audit) = audit else { return };
    let counts = audit.since();
    let total: usize = counts.iter().map(|(_, n, _)| n).sum();
    println!("{phase}: {total} requests in the API server's audit log, by client:");
    for (key, n, uri) in counts.iter().take(12) {
        let rate = seconds.map_or(String::new(), |s| format!(" ({:.3}/s)", *n as f64 / s));
        let uri: String = uri.chars().take(100).collect();
        println!("  {key}: {n}{rate}, e.g. {uri}");
    }
}

type FirstSeen = Arc<Mutex<HashMap<String, Instant>>>;

/// When each object of `api` was first seen by a watch in a state `accept` takes.
fn first_seen<K>(api: Api<K>, accept: fn(&K) -> bool) -> (FirstSeen, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let seen: FirstSeen = Arc::default();
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            watcher(api, watcher::Config::default())
                .for_each(|event| {
                    if let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) =
                        event
                        && accept(&object)
                    {
                        seen.lock()
                            .expect("lock")
                            .entry(object.name_any())
                            .or_insert_with(Instant::now);
                    }
                    std::future::ready(())
                })
                .await;
        })
    };
    (seen, task)
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

    // When each Service (the last child applied) first appears, and each
    // CommerceWebhook first has its status: watched, so that waiting costs the API
    // server nothing but the events (a LIST of every resource each poll would load
    // it during the operator's burst only).
    let cwhs = ns.api::<CommerceWebhook>();
    let (seen, watch) = first_seen(ns.api::<Service>(), |_| true);
    let (converged_at, watch_status) = first_seen(cwhs.clone(), |cwh: &CommerceWebhook| {
        cwh.status
            .as_ref()
            .is_some_and(|s| s.observed_generation.is_some() && s.url.is_some())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    let params = PatchParams::apply("bench-client").force();
    let audit = Audit::mark();
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

    wait_for(
        "all CommerceWebhooks converged",
        Duration::from_secs(600),
        || async {
            let services = seen.lock().expect("lock").len();
            let statuses = converged_at.lock().expect("lock").len();
            (statuses >= count && services >= count).then_some(())
        },
    )
    .await;
    // The last of either, as the watches saw it.
    let converged = [&seen, &converged_at]
        .iter()
        .filter_map(|times| times.lock().expect("lock").values().max().copied())
        .max()
        .expect("converged");
    let total = converged - started;
    print_audit("operator's burst", audit.as_ref(), None);
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
        let audit = Audit::mark();
        println!(
            "steady state: {} s with nothing changing...",
            steady.as_secs()
        );
        tokio::time::sleep(steady).await;
        let after = api_requests(&ns.client).await;
        print_audit("steady state", audit.as_ref(), Some(steady.as_secs_f64()));
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
    watch_status.abort();

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
            "direct client: {count} CommerceWebhooks with their children, status and Event in {:.2} s; \
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
