//! `commerce-webhook-operator`: a kube-rs controller that turns `CommerceWebhook`
//! resources into running Adobe Commerce webhooks.
//!
//! # Layout
//!
//! Dependencies point one way: each module only uses the ones listed before it.
//!
//! * [`resource`]: the `CommerceWebhook` custom resource, its CRD, and its URLs.
//! * [`validation`]: what the schema cannot say, checked once per reconcile and
//!   reported whole.
//! * [`references`]: the Secrets and ConfigMaps a resource reads, and the
//!   fingerprint of their versions (never their data) that rolls the pods.
//! * [`children`]: the Deployment, Service and Ingress built from a valid resource,
//!   with the pod environment written from the webhook's contract
//!   (`commerce_webhook::contract`).
//! * [`status`]: the `Ready` condition and what it reports.
//! * [`live`]: what the operator knows of its children without asking: caches of
//!   the live objects and what it last applied.
//! * [`metrics`]: the operator's Prometheus metrics and health endpoints.
//! * [`reconciler`]: one reconcile, from a resource to applied children and a
//!   status; [`reconciler::error_policy`] backs off failures.
//! * [`controller`]: the watches that trigger reconciles.
//! * [`leader`]: Lease-based leader election, so replicas can stand by.
//! * [`commerce_config`]: the Commerce side of a hook (`webhooks.xml`, REST).
//!
//! `main.rs` is the CLI. The end-to-end tests drive these modules directly against
//! a real API server; the unit tests drive the reconciler against a mocked one.

#![forbid(unsafe_code)]

pub mod children;
pub mod commerce_config;
pub mod controller;
#[cfg(test)]
mod fixtures;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod reconciler;
pub mod references;
pub mod resource;
pub mod status;
pub mod validation;
