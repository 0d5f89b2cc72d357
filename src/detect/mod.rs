//! Detection: pure functions from samples and configuration to verdicts.
//!
//! Nothing in here does I/O or knows about tokio, sqlx or reqwest; `crate::alerts` loads the
//! samples from the store, calls these, and turns verdicts into alert state. This is the only
//! user of statrs.

pub mod burn;
mod config;
pub mod hygiene;
pub mod projection;
pub mod spike;

pub use burn::FastConfig;
pub use config::{SpikeConfig, SpikeMetric};
