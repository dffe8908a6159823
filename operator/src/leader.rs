//! Lease-based leader election (`coordination.k8s.io/v1`), so that two operator
//! replicas can run safely: only the holder of the Lease reconciles.
//!
//! The holder renews the Lease every `duration / 3`; another replica takes it over
//! once `renewTime + leaseDurationSeconds` has passed. Updates use the Lease's
//! resourceVersion, so two candidates can never both win the same round.
//!
//! Each round's decision is the pure function [`decide`] of the Lease read and the
//! time, so the state machine is tested with a made-up clock; `LeaseLock` only
//! reads and writes.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

/// Where the current time comes from: the system clock, or a test's.
pub type Clock = fn() -> Timestamp;

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    clock: Clock,
}

/// What one election round does with the Lease it read.
#[derive(Debug, Clone, PartialEq)]
pub enum Round {
    /// There is no Lease: create it, held by this replica.
    Create(LeaseSpec),
    /// It is this replica's, or expired, or released: write this spec.
    Take(LeaseSpec),
    /// Another replica holds it and renewed it in time.
    StandBy,
}

/// One round of the election, for the replica `identity` at time `now`.
pub fn decide(
    current: Option<&LeaseSpec>,
    identity: &str,
    duration: Duration,
    now: Timestamp,
) -> Round {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1);
    let Some(current) = current else {
        return Round::Create(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
    };
    let mut spec = current.clone();
    let ours = spec.holder_identity.as_deref() == Some(identity);
    let held_for =
        SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(seconds)));
    let expired = match (&spec.holder_identity, &spec.renew_time) {
        (Some(_), Some(renewed)) => renewed.0 + held_for < now,
        _ => true,
    };
    if !ours && !expired {
        return Round::StandBy;
    }
    if !ours {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(MicroTime(now));
    Round::Take(spec)
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
            clock: Timestamp::now,
        }
    }

    /// The same lock reading the time from `clock`.
    pub fn with_clock(self, clock: Clock) -> Self {
        LeaseLock { clock, ..self }
    }

    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(false) if !announced => {
                    tracing::info!(lease = %self.name, "another replica leads; standing by");
                    announced = true;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "leader election: cannot read or write the Lease")
                }
            }
            tokio::time::sleep(self.renew_interval()).await;
        }
    }

    /// Renews the Lease until it is lost (another holder, or no successful renewal
    /// within the lease duration), then returns.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_interval()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "lost the Lease to another replica");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not renew the Lease");
                    if last_renewal.elapsed() >= self.duration {
                        tracing::error!(lease = %self.name, "Lease expired without renewal");
                        return;
                    }
                }
            }
        }
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
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let current = lease
            .as_ref()
            .map(|lease| lease.spec.clone().unwrap_or_default());
        match decide(
            current.as_ref(),
            &self.identity,
            self.duration,
            (self.clock)(),
        ) {
            Round::StandBy => Ok(false),
            Round::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                conflict_is_false(self.api.create(&PostParams::default(), &lease).await)
            }
            Round::Take(spec) => {
                // Written over the Lease as read: its resourceVersion makes a
                // concurrent winner turn this write into a 409.
                let mut lease = lease.unwrap_or_default();
                lease.spec = Some(spec);
                conflict_is_false(
                    self.api
                        .replace(&self.name, &PostParams::default(), &lease)
                        .await,
                )
            }
        }
    }
}

/// Losing a race (409 Conflict) is an answer, not an error.
fn conflict_is_false<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn taken(round: Round) -> LeaseSpec {
        match round {
            Round::Take(spec) | Round::Create(spec) => spec,
            Round::StandBy => panic!("expected to hold the Lease, stood by"),
        }
    }

    #[test]
    fn the_first_candidate_creates_the_lease() {
        let Round::Create(spec) = decide(None, "a", DURATION, at(0)) else {
            panic!("no Lease: create it");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.renew_time, Some(MicroTime(at(0))));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn the_holder_renews_without_a_transition() {
        let held = taken(decide(None, "a", DURATION, at(0)));
        let renewed = taken(decide(Some(&held), "a", DURATION, at(5)));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(5))));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.lease_transitions, Some(0));
    }

    #[test]
    fn another_replica_stands_by_until_the_lease_expires() {
        let held = taken(decide(None, "a", DURATION, at(0)));
        assert_eq!(decide(Some(&held), "b", DURATION, at(10)), Round::StandBy);
        assert_eq!(
            decide(Some(&held), "b", DURATION, at(15)),
            Round::StandBy,
            "exactly at renewTime + duration it is still held"
        );
        let taken_over = taken(decide(Some(&held), "b", DURATION, at(16)));
        assert_eq!(taken_over.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken_over.acquire_time, Some(MicroTime(at(16))));
        assert_eq!(taken_over.lease_transitions, Some(1));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut released = taken(decide(None, "a", DURATION, at(0)));
        released.holder_identity = None;
        released.renew_time = None;
        let next = taken(decide(Some(&released), "b", DURATION, at(1)));
        assert_eq!(next.holder_identity.as_deref(), Some("b"));
        assert_eq!(next.lease_transitions, Some(1));
    }

    #[test]
    fn the_holder_s_duration_counts_not_the_candidate_s() {
        let long = taken(decide(None, "a", Duration::from_secs(60), at(0)));
        assert_eq!(
            decide(Some(&long), "b", DURATION, at(30)),
            Round::StandBy,
            "the Lease says 60 s; a candidate with 15 s must still wait"
        );
    }

    #[test]
    fn conflicts_are_lost_rounds_not_errors() {
        let conflict: Result<(), kube::Error> = Err(kube::Error::Api(
            kube::core::Status::failure("conflict", "Conflict")
                .with_code(409)
                .boxed(),
        ));
        assert!(matches!(conflict_is_false(conflict), Ok(false)));
        assert!(matches!(conflict_is_false(Ok(())), Ok(true)));
    }
}
