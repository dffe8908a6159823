//! `commerce-webhook-operator`: a kube-rs controller that turns `CommerceWebhook`
//! resources into running Adobe Commerce webhooks. `main.rs` is the CLI; the
//! end-to-end tests drive these modules directly against a real API server.

pub mod children;
pub mod commerce_config;
pub mod controller;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod reconciler;
pub mod references;
pub mod resource;
pub mod status;

/// The default webhook image; the Helm chart sets the same.
pub const DEFAULT_WEBHOOK_IMAGE: &str = "ghcr.io/commerce-webhook-operator/commerce-webhook:0.1.0";
