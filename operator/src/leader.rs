//! Lease-based leader election (`coordination.k8s.io/v1`), so that two operator
//! replicas can run safely: only the holder of the Lease reconciles.
//!
//! It follows client-go's leader election:
//!
//! * A standby judges expiry on its **own monotonic clock**: the Lease is expired
//!   once `leaseDurationSeconds` have passed since this replica last saw the
//!   record change. The holder's timestamps are only written, never compared with
//!   the local wall clock, so clock skew between nodes cannot steal a healthy Lease.
//! * The holder must renew within a **renew deadline** shorter than the lease
//!   (two thirds of it). A failed renewal (an error, a 409 Conflict because the
//!   Lease changed between its read and its write, a timeout) is retried every
//!   retry period until that deadline, as client-go's `renew` does; once the
//!   deadline passes without a successful renewal, however long a call hangs,
//!   [`Leadership`] turns invalid, the reconciler stops writing, and the process
//!   exits. A standby cannot take over before a full lease has passed, so the two
//!   never write at once. Only a Lease read with another holder ends leadership
//!   before the deadline.
//! * Updates use the Lease's resourceVersion, so two candidates can never both win
//!   the same round.
//! * Nothing in the Lease can make it panic: a hostile duration is clamped, counts
//!   saturate.
//!
//! Each round's decision is the pure function [`decide`] of the Lease read, what
//! was observed of it before, and the time, so the state machine is tested with a
//! made-up clock; `LeaseLock` only reads and writes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;

/// The longest lease a holder's record is believed to ask for: a Lease claiming
/// more (or an absurd value) cannot keep standbys out for longer, nor overflow a
/// deadline.
const MAX_LEASE: Duration = Duration::from_secs(3600);

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The Lease record as last read, and when (on this replica's clock).
    observed: Mutex<Option<Observed>>,
    leadership: Leadership,
}

/// A Lease record and the local monotonic time it was first seen with this content.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub record: LeaseSpec,
    pub at: Instant,
}

impl Observed {
    /// What is known after reading `current` at `now`: the time only moves when the
    /// record changed (a holder's renewal changes its renewTime).
    pub fn update(previous: Option<Observed>, current: &LeaseSpec, now: Instant) -> Observed {
        match previous {
            Some(previous) if previous.record == *current => previous,
            _ => Observed {
                record: current.clone(),
                at: now,
            },
        }
    }
}

/// What one election round does with the Lease it read.
#[derive(Debug, Clone, PartialEq)]
pub enum Round {
    /// There is no Lease: create it, held by this replica.
    Create(LeaseSpec),
    /// It is this replica's, or expired, or released: write this spec.
    Take(LeaseSpec),
    /// Another replica holds it and renewed it within its duration, as observed here.
    StandBy,
}

/// The lease a record asks for, within sane bounds.
fn held_for(record: &LeaseSpec, own: Duration) -> Duration {
    match record.lease_duration_seconds {
        Some(seconds) => Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
        None => own,
    }
    .clamp(Duration::from_secs(1), MAX_LEASE)
}

/// One round of the election, for the replica `identity`. `observed` is the record
/// as read this round (see [`Observed::update`]); `now` is the same monotonic clock,
/// `wall` only goes into the timestamps written.
pub fn decide(
    observed: Option<&Observed>,
    identity: &str,
    duration: Duration,
    now: Instant,
    wall: Timestamp,
) -> Round {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1);
    let Some(observed) = observed else {
        return Round::Create(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(wall)),
            renew_time: Some(MicroTime(wall)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
    };
    let mut spec = observed.record.clone();
    let ours = spec.holder_identity.as_deref() == Some(identity);
    let released = spec.holder_identity.as_deref().is_none_or(str::is_empty);
    let expired =
        released || now.saturating_duration_since(observed.at) > held_for(&spec, duration);
    if !ours && !expired {
        return Round::StandBy;
    }
    if !ours {
        spec.acquire_time = Some(MicroTime(wall));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(MicroTime(wall));
    Round::Take(spec)
}

/// A name for this replica in the Lease when `POD_NAME` is not given: the host
/// name (the pod name in Kubernetes) and a random suffix, so that two processes on
/// one host, or pods whose host names collide, never share an identity.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "commerce-webhook-operator".to_owned());
    // RandomState is seeded from the OS's randomness for every instance.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{host}_{:016x}", hasher.finish())
}

/// Whether this replica may still write: true until the renew deadline passes
/// without a successful renewal. Shared by the lock (which extends it) and the
/// reconciler (which checks it before every write).
#[derive(Clone, Debug)]
pub struct Leadership(Option<Arc<Deadline>>);

#[derive(Debug)]
struct Deadline {
    origin: Instant,
    /// Nanoseconds after `origin` until which the Lease is ours.
    until: AtomicU64,
}

impl Leadership {
    /// Without leader election: always leading.
    pub fn unconditional() -> Leadership {
        Leadership(None)
    }

    /// With leader election: not leading until the Lease is acquired.
    pub(crate) fn elected() -> Leadership {
        Leadership(Some(Arc::new(Deadline {
            origin: Instant::now(),
            until: AtomicU64::new(0),
        })))
    }

    pub fn is_valid(&self) -> bool {
        self.0.as_ref().is_none_or(|deadline| {
            let elapsed = Instant::now().saturating_duration_since(deadline.origin);
            let until = deadline.until.load(Ordering::Acquire);
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX) < until
        })
    }

    /// Valid until `until`.
    fn extend(&self, until: Instant) {
        if let Some(deadline) = &self.0 {
            let nanos = until.saturating_duration_since(deadline.origin).as_nanos();
            let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
            deadline.until.store(nanos, Ordering::Release);
        }
    }

    fn revoke(&self) {
        if let Some(deadline) = &self.0 {
            deadline.until.store(0, Ordering::Release);
        }
    }
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: Mutex::new(None),
            leadership: Leadership::elected(),
        }
    }

    /// Whether this replica may write; hand it to the reconciler.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// How often the Lease is retried and renewed.
    pub fn retry_period(&self) -> Duration {
        self.duration / 6
    }

    /// How long the holder may go without a successful renewal before it gives up:
    /// shorter than the lease, so it stops before anyone else may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.renew_deadline(), self.try_acquire_or_renew());
            match attempt.await {
                Ok(Ok(Attempt::Held)) => {
                    self.leadership.extend(started + self.renew_deadline());
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(Ok(Attempt::HeldByOther)) if !announced => {
                    tracing::info!(lease = %self.name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(Ok(Attempt::HeldByOther | Attempt::Conflict)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "leader election: cannot read or write the Lease")
                }
                Err(_) => tracing::warn!("leader election: the Lease call timed out"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Renews the Lease until it is lost (another holder, or no successful renewal
    /// within the renew deadline, however long a call hangs, however many calls
    /// fail), then returns with [`Leadership`] revoked. A failed renewal is retried
    /// every retry period while the deadline has not passed.
    pub async fn hold(&self) {
        loop {
            tokio::time::sleep(self.retry_period()).await;
            // Measured from the send: the Lease may have been written any time after.
            let started = Instant::now();
            let Some(deadline) = self.deadline() else {
                break;
            };
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => self.leadership.extend(started + self.renew_deadline()),
                Ok(Ok(Attempt::HeldByOther)) => {
                    self.leadership.revoke();
                    tracing::error!(lease = %self.name, "lost the Lease to another replica");
                    return;
                }
                // The Lease changed between the read and the write (a 409): read it
                // again next round; the deadline decides, not one answer.
                Ok(Ok(Attempt::Conflict)) => {
                    tracing::warn!(lease = %self.name, "renewing the Lease conflicted; retrying")
                }
                Ok(Err(error)) => tracing::warn!(%error, "could not renew the Lease"),
                Err(_) => tracing::warn!("renewing the Lease timed out"),
            }
            if !self.leadership.is_valid() {
                break;
            }
        }
        self.leadership.revoke();
        tracing::error!(lease = %self.name, "Lease not renewed within the renew deadline: leadership lost");
    }

    /// When the current leadership ends, if it has not yet.
    fn deadline(&self) -> Option<Instant> {
        let deadline = self.leadership.0.as_ref()?;
        let until = Duration::from_nanos(deadline.until.load(Ordering::Acquire));
        let at = deadline.origin + until;
        (at > Instant::now()).then_some(at)
    }

    /// Gives the Lease up so a standby takes over at once (on graceful shutdown).
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                if let Err(error) = self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    tracing::warn!(%error, "could not release the Lease");
                }
            }
        }
    }

    /// One round: create the Lease, renew it, or take it over once expired.
    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let now = Instant::now();
        let observed = lease.as_ref().map(|lease| {
            let record = lease.spec.clone().unwrap_or_default();
            let mut last = self
                .observed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let observed = Observed::update(last.take(), &record, now);
            *last = Some(observed.clone());
            observed
        });
        match decide(
            observed.as_ref(),
            &self.identity,
            self.duration,
            now,
            Timestamp::now(),
        ) {
            Round::StandBy => Ok(Attempt::HeldByOther),
            Round::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                attempt_of(self.api.create(&PostParams::default(), &lease).await)
            }
            Round::Take(spec) => {
                // Written over the Lease as read: its resourceVersion makes a
                // concurrent winner turn this write into a 409.
                let mut lease = lease.unwrap_or_default();
                lease.spec = Some(spec);
                attempt_of(
                    self.api
                        .replace(&self.name, &PostParams::default(), &lease)
                        .await,
                )
            }
        }
    }
}

/// What one round of the election came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The Lease is this replica's, as written.
    Held,
    /// Another replica holds it and has renewed it within its lease.
    HeldByOther,
    /// The write lost a race (409 Conflict): the Lease changed since it was read,
    /// by a candidate taking it over or by anything else writing it. Only the next
    /// read tells which.
    Conflict,
}

/// Losing a race (409 Conflict) is an answer, not an error.
fn attempt_of<T>(result: Result<T, kube::Error>) -> Result<Attempt, kube::Error> {
    match result {
        Ok(_) => Ok(Attempt::Held),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Conflict),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn wall(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    /// A made-up monotonic clock: `second`s after a fixed origin.
    fn clock() -> impl Fn(u64) -> Instant {
        let origin = Instant::now();
        move |second| origin + Duration::from_secs(second)
    }

    fn taken(round: Round) -> LeaseSpec {
        match round {
            Round::Take(spec) | Round::Create(spec) => spec,
            Round::StandBy => panic!("expected to hold the Lease, stood by"),
        }
    }

    fn seen(record: &LeaseSpec, at: Instant) -> Observed {
        Observed {
            record: record.clone(),
            at,
        }
    }

    #[test]
    fn the_first_candidate_creates_the_lease() {
        let t = clock();
        let Round::Create(spec) = decide(None, "a", DURATION, t(0), wall(0)) else {
            panic!("no Lease: create it");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.renew_time, Some(MicroTime(wall(0))));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn the_holder_renews_without_a_transition() {
        let t = clock();
        let held = taken(decide(None, "a", DURATION, t(0), wall(0)));
        let renewed = taken(decide(
            Some(&seen(&held, t(0))),
            "a",
            DURATION,
            t(5),
            wall(5),
        ));
        assert_eq!(renewed.renew_time, Some(MicroTime(wall(5))));
        assert_eq!(renewed.acquire_time, Some(MicroTime(wall(0))));
        assert_eq!(renewed.lease_transitions, Some(0));
    }

    #[test]
    fn a_standby_waits_a_full_lease_from_its_own_last_sight_of_a_change() {
        let t = clock();
        let held = taken(decide(None, "a", DURATION, t(0), wall(0)));
        // b first sees the record at its t(10): the lease runs from there.
        let first_sight = Observed::update(None, &held, t(10));
        assert_eq!(
            decide(Some(&first_sight), "b", DURATION, t(20), wall(20)),
            Round::StandBy
        );
        let unchanged = Observed::update(Some(first_sight), &held, t(25));
        assert_eq!(unchanged.at, t(10), "an unchanged record keeps its time");
        assert_eq!(
            decide(Some(&unchanged), "b", DURATION, t(25), wall(25)),
            Round::StandBy,
            "exactly a lease after it is still held"
        );
        // a renews (the record changes): b's wait starts again.
        let renewed = taken(decide(
            Some(&seen(&held, t(0))),
            "a",
            DURATION,
            t(24),
            wall(24),
        ));
        let changed = Observed::update(Some(unchanged), &renewed, t(26));
        assert_eq!(changed.at, t(26));
        assert_eq!(
            decide(Some(&changed), "b", DURATION, t(40), wall(40)),
            Round::StandBy
        );
        let taken_over = taken(decide(Some(&changed), "b", DURATION, t(42), wall(42)));
        assert_eq!(taken_over.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken_over.acquire_time, Some(MicroTime(wall(42))));
        assert_eq!(taken_over.lease_transitions, Some(1));
    }

    /// The holder's clock is an hour behind (its renewTime looks long expired to
    /// the standby's wall clock): the standby still waits, as it saw it change.
    #[test]
    fn clock_skew_does_not_steal_a_healthy_lease() {
        let t = clock();
        let skewed = taken(decide(None, "a", DURATION, t(0), wall(-3600)));
        let observed = Observed::update(None, &skewed, t(1));
        assert_eq!(
            decide(Some(&observed), "b", DURATION, t(2), wall(2)),
            Round::StandBy
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let t = clock();
        let mut released = taken(decide(None, "a", DURATION, t(0), wall(0)));
        released.holder_identity = None;
        released.renew_time = None;
        let next = taken(decide(
            Some(&seen(&released, t(1))),
            "b",
            DURATION,
            t(1),
            wall(1),
        ));
        assert_eq!(next.holder_identity.as_deref(), Some("b"));
        assert_eq!(next.lease_transitions, Some(1));
    }

    #[test]
    fn the_holder_s_duration_counts_not_the_candidate_s() {
        let t = clock();
        let long = taken(decide(None, "a", Duration::from_secs(60), t(0), wall(0)));
        assert_eq!(
            decide(Some(&seen(&long, t(0))), "b", DURATION, t(30), wall(30)),
            Round::StandBy,
            "the Lease says 60 s; a candidate with 15 s must still wait"
        );
    }

    /// Whatever someone wrote into the Lease, a round decides without panicking:
    /// absurd durations are clamped, counters saturate.
    #[test]
    fn hostile_lease_contents_do_not_panic() {
        let t = clock();
        for seconds in [None, Some(i32::MIN), Some(-1), Some(0), Some(i32::MAX)] {
            let hostile = LeaseSpec {
                holder_identity: Some("x".repeat(10_000)),
                lease_duration_seconds: seconds,
                lease_transitions: Some(i32::MAX),
                renew_time: Some(MicroTime(Timestamp::MAX)),
                acquire_time: Some(MicroTime(Timestamp::MIN)),
                ..LeaseSpec::default()
            };
            let observed = seen(&hostile, t(0));
            let later = t(MAX_LEASE.as_secs() + 1);
            let spec = taken(decide(Some(&observed), "b", DURATION, later, wall(0)));
            assert_eq!(spec.lease_transitions, Some(i32::MAX), "{seconds:?}");
        }
        let negative = LeaseSpec {
            holder_identity: Some("x".into()),
            lease_duration_seconds: Some(-5),
            ..LeaseSpec::default()
        };
        assert!(matches!(
            decide(Some(&seen(&negative, t(0))), "b", DURATION, t(2), wall(0)),
            Round::Take(_)
        ));
    }

    #[test]
    fn identities_without_pod_name_are_unique() {
        let (a, b) = (default_identity(), default_identity());
        assert_ne!(a, b);
        assert!(!a.is_empty() && a.contains('_'), "{a}");
    }

    /// A renew that hangs is cut at the renew deadline: the holder stops leading
    /// (and its writes stop) before a standby may take the Lease over.
    #[tokio::test(start_paused = true)]
    async fn a_hung_renewal_loses_leadership_within_the_renew_deadline() {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        // Nothing ever answers: every call hangs.
        let lock = lock_of_a(service);
        let leadership = lock.leadership();
        assert!(!leadership.is_valid(), "not leading before acquiring");
        lock.leadership
            .extend(Instant::now() + lock.renew_deadline());
        assert!(leadership.is_valid());
        let started = Instant::now();
        lock.hold().await;
        assert!(!leadership.is_valid());
        let held = started.elapsed();
        assert!(
            held <= lock.renew_deadline() + Duration::from_millis(1),
            "gave up after {held:?}, later than the renew deadline"
        );
        assert!(
            held < DURATION,
            "the renew deadline is shorter than the lease"
        );
        assert!(lock.retry_period() < lock.renew_deadline());
        assert!(Leadership::unconditional().is_valid());
    }

    /// Replica "a"'s lock on `ns/lease`, talking to a mocked API server.
    fn lock_of_a(
        service: tower_test::mock::Mock<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >,
    ) -> LeaseLock {
        LeaseLock::new(
            Client::new(service, "default"),
            "ns",
            "lease",
            "a",
            DURATION,
        )
    }

    /// A mocked API server for the Lease: GETs answer `holder`'s Lease, PUTs are
    /// answered by `put` (given the 1-based count of PUTs so far): a status code.
    /// Records, for each PUT, whether the replica was still leading when it came.
    struct LeaseServer {
        puts: Arc<Mutex<Vec<bool>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for LeaseServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn lease_json(holder: &str, version: u32) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "lease", "namespace": "ns", "resourceVersion": version.to_string()},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": DURATION.as_secs(),
                "renewTime": format!("2026-01-01T00:00:{:02}.000000Z", version % 60),
            },
        })
    }

    /// A lock held by "a", talking to a server that answers as `holder` and `put` say.
    fn held_lock(
        holder: impl Fn(usize) -> &'static str + Send + 'static,
        put: impl Fn(usize) -> u16 + Send + 'static,
    ) -> (LeaseLock, LeaseServer) {
        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let lock = lock_of_a(service);
        lock.leadership
            .extend(Instant::now() + lock.renew_deadline());
        let leadership = lock.leadership();
        let puts = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let puts = puts.clone();
            async move {
                let mut version = 1;
                while let Some((request, respond)) = handle.next_request().await {
                    let (status, body) = if request.method() == http::Method::PUT {
                        let mut puts = puts.lock().unwrap();
                        puts.push(leadership.is_valid());
                        let code = put(puts.len());
                        if code == 200 {
                            version += 1;
                            (200, lease_json("a", version))
                        } else {
                            let status = kube::core::Status::failure(
                                "the object has been modified",
                                "Conflict",
                            )
                            .with_code(code);
                            (code, serde_json::to_value(status).unwrap())
                        }
                    } else {
                        let count = puts.lock().unwrap().len();
                        (200, lease_json(holder(count), version))
                    };
                    let response = http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body.to_string().into_bytes()))
                        .unwrap();
                    respond.send_response(response);
                }
            }
        });
        (lock, LeaseServer { puts, task })
    }

    /// One 409 on renewal is retried at the next retry period, and the replica
    /// leads throughout; only a Lease read with another holder ends it early.
    #[tokio::test(start_paused = true)]
    async fn a_conflict_on_renewal_is_retried_while_leading() {
        // PUT 1: 409; PUT 2: renewed; then another holder shows up.
        let (lock, server) = held_lock(
            |puts| if puts >= 2 { "b" } else { "a" },
            |n| if n == 1 { 409 } else { 200 },
        );
        let leadership = lock.leadership();
        let started = Instant::now();
        lock.hold().await;
        assert_eq!(
            *server.puts.lock().unwrap(),
            [true, true],
            "the 409 was retried, and the retry came while still leading"
        );
        assert_eq!(
            started.elapsed(),
            lock.retry_period() * 3,
            "lost at the first read showing another holder, not at the deadline"
        );
        assert!(!leadership.is_valid());
    }

    /// Renewals that keep conflicting are retried every retry period until the
    /// renew deadline, then leadership ends (fenced) before a standby may take over.
    #[tokio::test(start_paused = true)]
    async fn conflicts_until_the_renew_deadline_end_leadership_there() {
        let (lock, server) = held_lock(|_| "a", |_| 409);
        let leadership = lock.leadership();
        let started = Instant::now();
        lock.hold().await;
        let held = started.elapsed();
        assert!(!leadership.is_valid());
        let puts = server.puts.lock().unwrap().clone();
        // Renewals at 1, 2, ... retry periods, strictly before the deadline.
        let retries = usize::try_from(
            (lock.renew_deadline().as_nanos() - 1) / lock.retry_period().as_nanos(),
        )
        .unwrap();
        assert!(retries >= 2);
        assert_eq!(
            puts.len(),
            retries,
            "one renewal per retry period until the deadline: {puts:?}"
        );
        assert!(
            puts.iter().all(|leading| *leading),
            "every renewal was tried while leading"
        );
        assert!(
            held >= lock.renew_deadline() - lock.retry_period()
                && held <= lock.renew_deadline() + lock.retry_period(),
            "gave up after {held:?}"
        );
        assert!(held < DURATION, "before a standby may take the Lease");
    }

    #[test]
    fn conflicts_are_lost_rounds_not_errors() {
        let conflict: Result<(), kube::Error> = Err(kube::Error::Api(
            kube::core::Status::failure("conflict", "Conflict")
                .with_code(409)
                .boxed(),
        ));
        assert!(matches!(attempt_of(conflict), Ok(Attempt::Conflict)));
        assert!(matches!(attempt_of(Ok(())), Ok(Attempt::Held)));
    }
}
