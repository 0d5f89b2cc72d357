//! keywatch: watches each LLM API key's usage and spend, and alerts on leaks, spikes and budgets.
//!
//! Data flows one way: `providers` → `store` → `detect` → `alerts` → `notify`, with `config`,
//! `cli` and `telemetry` beside them, and `model` (the shared vocabulary, importing nothing from
//! the crate) beneath them all. `app` is the one entry point that builds and runs it.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod app;
pub mod budget;
pub mod cli;
pub mod commands;
pub mod config;
pub mod containment;
pub mod csv;
pub mod demo;
pub mod detect;
pub mod digest;
pub mod exit;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod period;
pub mod poller;
pub mod prices;
pub mod providers;
pub mod replica;
pub mod report;
pub mod retention;
pub mod signals;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod text;
pub mod window;
