//! The status the operator reports: a `Ready` condition whose reason says why not,
//! a `Secured` condition saying who can call the webhook and learn from it
//! ([`exposure`]), the ready replica count, and the URLs.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use commerce_webhook::answers::{DEFAULT_SHORTAGE_MESSAGE, ShortageMessage};

use crate::resource::{CommerceWebhookSpec, CommerceWebhookStatus};

pub const READY: &str = "Ready";
/// False when anyone who reaches the webhook can call it, or its token travels in
/// clear text; the reason says which ([`Exposure`]).
pub const SECURED: &str = "Secured";

/// Who can call the webhook and read its answers, judged from the spec alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A Commerce signature or a bearer token is required, and a token is not sent
    /// over plain HTTP.
    Authenticated,
    /// Neither `signaturePublicKey` nor `authToken`: anyone who reaches the webhook
    /// may call it. `shows_stock`: its shortage message tells the exact stock
    /// (the starter kit's default `available N` does).
    Unauthenticated { shows_stock: bool },
    /// The bearer token goes through an Ingress without TLS: whoever is on the path
    /// reads it, and, without a signature key too, calls the webhook with it.
    TokenOverPlainHttp { signed: bool },
}

/// How exposed the webhook a spec declares is. The starter kit's message stays
/// available: this only reports it.
pub fn exposure(spec: &CommerceWebhookSpec) -> Exposure {
    let signed = spec.signature_public_key.is_some();
    if !signed && spec.auth_token.is_none() {
        let template = spec
            .commerce
            .shortage_message
            .as_deref()
            .unwrap_or(DEFAULT_SHORTAGE_MESSAGE);
        return Exposure::Unauthenticated {
            shows_stock: shows_stock(template),
        };
    }
    let plain_http = spec
        .ingress
        .as_ref()
        .is_some_and(|ingress| ingress.tls_secret_name.is_none());
    if spec.auth_token.is_some() && plain_http {
        return Exposure::TokenOverPlainHttp { signed };
    }
    Exposure::Authenticated
}

/// Whether a shortage message template puts the available quantity in the answer,
/// as the webhook renders it (an invalid template is refused by `validation`, and
/// counted as showing it here).
fn shows_stock(template: &str) -> bool {
    const MARK: &str = "\u{0}available\u{0}";
    let mut rendered = String::new();
    ShortageMessage::parse(template)
        .map(|message| {
            message.render(&mut rendered, "", "", MARK).is_ok() && rendered.contains(MARK)
        })
        .unwrap_or(true)
}

impl Exposure {
    pub fn is_secured(self) -> bool {
        self == Exposure::Authenticated
    }

    /// The condition's reason.
    pub fn reason(self) -> &'static str {
        match self {
            Exposure::Authenticated => "Authenticated",
            Exposure::Unauthenticated { .. } => "Unauthenticated",
            Exposure::TokenOverPlainHttp { .. } => "TokenOverPlainHttp",
        }
    }

    /// What it means and what to do, for the condition and `commerce-config`.
    pub fn message(self) -> String {
        match self {
            Exposure::Authenticated => {
                "calls need Commerce's signature or the bearer token".to_owned()
            }
            Exposure::Unauthenticated { shows_stock } => format!(
                "neither spec.signaturePublicKey nor spec.authToken is set: anyone who reaches \
                 the webhook can call it{}; set spec.signaturePublicKey (Commerce's signature) \
                 or spec.authToken",
                if shows_stock {
                    " and read the exact stock of any SKU from its shortage message \
                     (leave {available} out of spec.commerce.shortageMessage to hide it)"
                } else {
                    " and learn whether a SKU is in stock"
                }
            ),
            Exposure::TokenOverPlainHttp { signed } => format!(
                "spec.authToken is sent as a bearer header through an Ingress without TLS: \
                 anyone on the path reads it{}; set spec.ingress.tlsSecretName",
                if signed {
                    ""
                } else {
                    " and can call the webhook with it (set spec.signaturePublicKey too)"
                }
            ),
        }
    }
}

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
    /// Who can call the webhook (not reported for a disabled one).
    pub exposure: Exposure,
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

/// One condition; it keeps its last transition time when its status did not
/// change, so a steady state produces an equal status.
fn condition(
    type_: &str,
    is_true: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&CommerceWebhookStatus>,
) -> Condition {
    let status = if is_true { "True" } else { "False" };
    let previous = previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: bounded(message),
        observed_generation: generation,
        last_transition_time,
    }
}

/// A message within what the CRD stores (`bounds::MAX_CONDITION_MESSAGE`
/// characters), cut on a character boundary with an ellipsis.
fn bounded(mut message: String) -> String {
    const MAX: usize = crate::resource::bounds::MAX_CONDITION_MESSAGE;
    if message.chars().count() > MAX {
        let end = message
            .char_indices()
            .nth(MAX - 1)
            .map_or(message.len(), |(i, _)| i);
        message.truncate(end);
        message.push('…');
    }
    message
}

/// The status for an observation: `Ready` first, then `Secured` unless disabled.
pub fn status(
    observation: Observation,
    previous: Option<&CommerceWebhookStatus>,
) -> CommerceWebhookStatus {
    let generation = observation.generation;
    let mut conditions = vec![condition(
        READY,
        observation.reason == Reason::Available,
        observation.reason.as_str(),
        observation.message,
        generation,
        previous,
    )];
    if observation.reason != Reason::Disabled {
        let exposure = observation.exposure;
        conditions.push(condition(
            SECURED,
            exposure.is_secured(),
            exposure.reason(),
            exposure.message(),
            generation,
            previous,
        ));
    }
    CommerceWebhookStatus {
        observed_generation: generation,
        conditions,
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
            exposure: Exposure::Authenticated,
        }
    }

    fn spec(yaml: &str) -> CommerceWebhookSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_long_message_is_cut_to_what_the_crd_stores() {
        const MAX: usize = crate::resource::bounds::MAX_CONDITION_MESSAGE;
        let long = Observation {
            message: "é".repeat(MAX + 10),
            ..observation(Reason::InvalidSpec)
        };
        let message = &status(long, None).conditions[0].message;
        assert_eq!(message.chars().count(), MAX);
        assert!(message.ends_with('…'));
        assert_eq!(bounded("short".into()), "short");
    }

    #[test]
    fn a_webhook_without_signature_or_token_is_reported_open() {
        let open = exposure(&spec("{}"));
        assert_eq!(open, Exposure::Unauthenticated { shows_stock: true });
        assert!(!open.is_secured());
        assert!(open.message().contains("exact stock"), "{}", open.message());
        let private = exposure(&spec("commerce: {shortageMessage: 'Not enough {sku}'}"));
        assert_eq!(private, Exposure::Unauthenticated { shows_stock: false });
        // `{{available}}` is a literal text, not the quantity.
        let literal = exposure(&spec(
            "commerce: {shortageMessage: 'no {{available}} here'}",
        ));
        assert_eq!(literal, Exposure::Unauthenticated { shows_stock: false });
        let shown = exposure(&spec(
            "commerce: {shortageMessage: 'only {available} left'}",
        ));
        assert_eq!(shown, Exposure::Unauthenticated { shows_stock: true });
    }

    #[test]
    fn a_token_over_a_plain_http_ingress_is_reported() {
        let token = "authToken: {name: t, key: k}\n";
        let plain = exposure(&spec(&format!(
            "{token}ingress: {{host: shop.example.com}}"
        )));
        assert_eq!(plain, Exposure::TokenOverPlainHttp { signed: false });
        assert!(plain.message().contains("tlsSecretName"));
        let signed = exposure(&spec(&format!(
            "{token}signaturePublicKey: {{name: c, key: pem}}\ningress: {{host: shop.example.com}}"
        )));
        assert_eq!(signed, Exposure::TokenOverPlainHttp { signed: true });
        for secured in [
            format!("{token}ingress: {{host: shop.example.com, tlsSecretName: tls}}"),
            token.to_owned(),
            "signaturePublicKey: {name: c, key: pem}\ningress: {host: shop.example.com}".to_owned(),
        ] {
            assert_eq!(
                exposure(&spec(&secured)),
                Exposure::Authenticated,
                "{secured}"
            );
        }
    }

    #[test]
    fn the_secured_condition_follows_ready_unless_disabled() {
        let open = Observation {
            exposure: exposure(&spec("{}")),
            ..observation(Reason::Progressing)
        };
        let reported = status(open.clone(), None);
        let types: Vec<&str> = reported
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, [READY, SECURED]);
        let secured = &reported.conditions[1];
        assert_eq!(
            (secured.status.as_str(), secured.reason.as_str()),
            ("False", "Unauthenticated")
        );
        let mut aged = reported.clone();
        aged.conditions[1].last_transition_time = Time(Timestamp::UNIX_EPOCH);
        assert_eq!(
            status(open, Some(&aged)),
            aged,
            "a steady state is an equal status"
        );
        let fixed = status(observation(Reason::Progressing), Some(&aged));
        assert_eq!(fixed.conditions[1].status, "True");
        assert_ne!(
            fixed.conditions[1].last_transition_time,
            Time(Timestamp::UNIX_EPOCH)
        );
        assert_eq!(
            status(observation(Reason::Disabled), None).conditions.len(),
            1
        );
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
