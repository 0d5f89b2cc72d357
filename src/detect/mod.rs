//! Detection: pure functions from samples and configuration to verdicts.
//!
//! Nothing in here does I/O or knows about tokio, sqlx or reqwest; the daemon loads samples from
//! the store and hands them over. The rules themselves arrive with the detection issue; this
//! module already owns their tunables so the config format is settled once.

mod config;

pub use config::{SpikeConfig, SpikeMetric};
