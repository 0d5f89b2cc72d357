//! Polls one source on its own schedule.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use super::Signals;
use crate::poller::{next_delay, PollOutcome, Poller};

/// Polls one source every `interval`, backing off while it fails.
pub struct PollTask {
    pub poller: Arc<Poller>,
    pub interval: Duration,
    pub signals: Signals,
    /// Told once the first poll was attempted (readiness waits for every source's).
    pub first: Option<Sender<()>>,
}

impl PollTask {
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let outcome = self.poller.poll_once(Utc::now(), &cancel).await;
            if let Some(first) = self.first.take() {
                let _ = first.send(()).await;
            }
            match outcome {
                PollOutcome::Done { .. } => failures = 0,
                PollOutcome::Failed(_) => failures = failures.saturating_add(1),
                PollOutcome::Cancelled => return,
            }
            // Detection runs after every poll, failed ones too (source health is a rule).
            self.signals.polled.notify_one();
            let delay = next_delay(self.interval, failures);
            if failures > 0 {
                tracing::info!(source = self.poller.source(), failures, retry_in = ?delay, "backing off after failed poll");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}
