//! `commerce-webhook`: Adobe Commerce's synchronous check-stock webhook as a small,
//! fast HTTP service. `main.rs` wires these modules together; tests and integrators
//! use them directly (for example to plug in their own [`stock::StockSource`]).

pub mod auth;
pub mod check_stock;
pub mod config;
pub mod deadline;
pub mod metrics;
pub mod operation;
pub mod payload;
pub mod server;
pub mod startup;
pub mod stock;
