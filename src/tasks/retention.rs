//! Prunes old data per `[storage.retention]` ([`crate::retention`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::retention::prune;
use crate::store::Store;

const DAY: Duration = Duration::from_secs(86_400);

/// Prunes a minute after start, then daily; an hour after a failure.
pub struct RetentionTask {
    pub store: Store,
    pub config: Arc<Config>,
}

impl RetentionTask {
    pub async fn run(self, cancel: CancellationToken) {
        let mut wait = Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match prune(&self.store, &self.config, &cancel).await {
                Ok(p) => {
                    tracing::info!(
                        usage_rows = p.usage_rows,
                        billed_rows = p.billed_rows,
                        alerts = p.alerts,
                        digest_sends = p.digest_sends,
                        "retention prune done"
                    );
                    wait = DAY;
                }
                Err(e) => {
                    tracing::error!(error = %e, "retention prune failed; retrying in an hour");
                    wait = Duration::from_secs(3_600);
                }
            }
        }
    }
}
