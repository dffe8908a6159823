//! `commerce-webhook`: Adobe Commerce's synchronous check-stock webhook as a small,
//! fast HTTP service.
//!
//! # Layout
//!
//! Each module below only uses the ones listed before it.
//!
//! The contract, compiled in every build (it is all the operator depends on):
//!
//! * [`answers`]: the failure policy and the fixed parts of every answer.
//! * [`contract`]: the environment interface: variable names, defaults, the
//!   [`contract::Args`] parser, the paths the service reserves.
//! * [`events`]: the Commerce events understood and the hook fields read of each.
//! * [`ops`]: what both binaries do alike: stop on SIGTERM, render metrics.
//!
//! The service, behind the default `server` feature:
//!
//! * [`payload`], [`operation`]: Commerce's request and answer documents.
//! * `deadline`, `metrics`, `auth`: a lazy deadline timer, the Prometheus
//!   registry, who may call.
//! * [`stock`]: where stock levels come from ([`stock::StockSource`], the
//!   back-office, inventory files) and the comparison with the cart.
//! * `check_stock`: one call, from raw request to Commerce operation.
//! * `routes`: what each request goes to: one axum router for the webhook path and
//!   the operational paths.
//! * [`server`]: connections, their limits, and the graceful shutdown.
//! * [`config`]: [`config::Config`], the checked configuration built from
//!   [`contract::Args`] in one place.
//! * [`startup`]: from a `Config` to the state the server runs with.
//!
//! `main.rs` parses the arguments, starts logging, and runs the server until a
//! shutdown signal. Tests and integrators use the modules directly, for example to
//! plug in their own [`stock::StockSource`].

#![forbid(unsafe_code)]

pub mod answers;
pub mod contract;
pub mod events;
pub mod ops;

#[cfg(feature = "server")]
pub(crate) mod auth;
#[cfg(feature = "server")]
pub(crate) mod check_stock;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub(crate) mod deadline;
#[cfg(feature = "server")]
pub(crate) mod metrics;
#[cfg(feature = "server")]
pub mod operation;
#[cfg(feature = "server")]
pub mod payload;
#[cfg(feature = "server")]
pub(crate) mod routes;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod startup;
#[cfg(feature = "server")]
pub mod stock;
