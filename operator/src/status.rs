//! The status the operator reports: one `Ready` condition whose reason says why not,
//! the ready replica count, and the URLs.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::resource::CommerceWebhookStatus;

pub const READY: &str = "Ready";

/// Why the webhook is (not) ready; the `reason` of the Ready condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Available,
    Progressing,
    ScaledToZero,
    Disabled,
    InvalidSpec,
    MissingReference,
    ApplyFailed,
    ChildConflict,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Available => "Available",
            Reason::Progressing => "Progressing",
            Reason::ScaledToZero => "ScaledToZero",
            Reason::Disabled => "Disabled",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::MissingReference => "MissingReference",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::ChildConflict => "ChildConflict",
        }
    }
}

/// What one reconcile found, before it becomes a status.
#[derive(Debug, Clone)]
pub struct Observation {
    pub generation: Option<i64>,
    pub reason: Reason,
    pub message: String,
    pub ready_replicas: i32,
    pub url: Option<String>,
    pub external_url: Option<String>,
}

/// Readiness of an applied Deployment: all wanted replicas updated and ready, as
/// seen by a Deployment controller that has caught up with the latest spec.
pub fn deployment_readiness(deployment: &Deployment, wanted: i32) -> (Reason, i32, String) {
    let status = deployment.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    if wanted == 0 {
        return (
            Reason::ScaledToZero,
            ready,
            "scaled to 0 replicas".to_owned(),
        );
    }
    let caught_up = status.observed_generation >= deployment.metadata.generation;
    let updated = status.updated_replicas.unwrap_or(0);
    if caught_up && updated >= wanted && ready >= wanted {
        (
            Reason::Available,
            ready,
            format!("{ready}/{wanted} replicas ready"),
        )
    } else {
        (
            Reason::Progressing,
            ready,
            format!("{ready}/{wanted} replicas ready, {updated} up to date"),
        )
    }
}

/// The status for an observation. The condition keeps its last transition time
/// when its status did not change, so a steady state produces an equal status.
pub fn status(
    observation: Observation,
    previous: Option<&CommerceWebhookStatus>,
) -> CommerceWebhookStatus {
    let ready = observation.reason == Reason::Available;
    let condition_status = if ready { "True" } else { "False" };
    let previous_condition = previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous_condition {
        Some(c) if c.status == condition_status => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    CommerceWebhookStatus {
        observed_generation: observation.generation,
        conditions: vec![Condition {
            type_: READY.to_owned(),
            status: condition_status.to_owned(),
            reason: observation.reason.as_str().to_owned(),
            message: observation.message,
            observed_generation: observation.generation,
            last_transition_time,
        }],
        ready_replicas: observation.ready_replicas,
        url: observation.url,
        external_url: observation.external_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn observation(reason: Reason) -> Observation {
        Observation {
            generation: Some(3),
            reason,
            message: "m".into(),
            ready_replicas: 0,
            url: None,
            external_url: None,
        }
    }

    #[test]
    fn the_transition_time_only_moves_when_readiness_flips() {
        let first = status(observation(Reason::Progressing), None);
        let mut aged = first.clone();
        aged.conditions[0].last_transition_time = Time(Timestamp::UNIX_EPOCH);
        let same = status(observation(Reason::MissingReference), Some(&aged));
        assert_eq!(
            same.conditions[0].last_transition_time,
            Time(Timestamp::UNIX_EPOCH),
            "still False: the time is kept, so a steady state writes an equal status"
        );
        let flipped = status(observation(Reason::Available), Some(&aged));
        assert_eq!(flipped.conditions[0].status, "True");
        assert_ne!(
            flipped.conditions[0].last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert_eq!(
            status(observation(Reason::Progressing), Some(&first)),
            first
        );
    }

    fn deployment(generation: i64, observed: i64, updated: i32, ready: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                ..DeploymentStatus::default()
            }),
            spec: None,
        }
    }

    #[test]
    fn available_needs_every_replica_updated_ready_and_observed() {
        assert_eq!(
            deployment_readiness(&deployment(2, 2, 2, 2), 2).0,
            Reason::Available
        );
        assert_eq!(
            deployment_readiness(&deployment(2, 2, 2, 1), 2).0,
            Reason::Progressing
        );
        assert_eq!(
            deployment_readiness(&deployment(3, 2, 2, 2), 2).0,
            Reason::Progressing,
            "new spec not observed yet"
        );
        assert_eq!(
            deployment_readiness(&deployment(2, 2, 1, 2), 2).0,
            Reason::Progressing,
            "old pods still ready"
        );
        assert_eq!(
            deployment_readiness(&deployment(1, 1, 0, 0), 0).0,
            Reason::ScaledToZero
        );
    }
}
