//! The daemon's long-lived tasks, one struct each with `run(self, cancel)`: [`PollTask`] per
//! source, [`DetectTask`], [`DeliverTask`], [`RetentionTask`] and [`WatchdogTask`].
//! [`crate::app`] only builds and wires them; each finishes its current step when `cancel`
//! fires and returns.
//!
//! ```text
//! PollTask (per source) --polled--> DetectTask --detected--> DeliverTask (outbox, digests)
//! ```

mod deliver;
mod detect;
mod lead;
mod poll;
mod retention;
mod watchdog;

pub use deliver::{queue_digests, DeliverTask};
pub use detect::DetectTask;
pub use lead::{LeadTask, LeaderWork};
pub use poll::PollTask;
pub use retention::RetentionTask;
pub use watchdog::WatchdogTask;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::Notify;

/// The wakeups the tasks pass along the pipeline.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// A poll finished (failed ones too: source health is a rule).
    pub polled: Arc<Notify>,
    /// Detection recorded state changes (or judged the data for the first time).
    pub detected: Arc<Notify>,
    /// Set once a detection pass has judged the polled data: digests are composed only after,
    /// so the first one after a start counts the alerts that pass fired.
    pub judged: Arc<AtomicBool>,
}
