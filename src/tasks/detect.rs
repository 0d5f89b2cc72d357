//! Runs detection after each poll.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Signals;
use crate::alerts::Detector;
use crate::config::Config;
use crate::store::Store;

/// Runs a detection pass each time a poll finishes; a failing pass is retried after the next
/// poll.
pub struct DetectTask {
    pub store: Store,
    pub config: Arc<Config>,
    pub signals: Signals,
}

impl DetectTask {
    pub async fn run(self, cancel: CancellationToken) {
        // Keeps each key's window between passes; the first pass reads it whole.
        let mut detector = Detector::for_config(&self.config);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.signals.polled.notified() => {}
            }
            match detector
                .evaluate(&self.store, &self.config, Utc::now())
                .await
            {
                Ok(r) => {
                    let first = !self.signals.judged.swap(true, Ordering::SeqCst);
                    if first || !r.changes.is_empty() {
                        self.signals.detected.notify_one();
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "detection failed; it runs again after the next poll")
                }
            }
        }
    }
}
