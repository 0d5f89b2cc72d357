//! Delivers the outbox and queues digests.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Signals;
use crate::config::Config;
use crate::notify::{Mode, Outbox};
use crate::poller::next_delay;
use crate::store::Store;

/// How often the daemon looks for deliveries whose retry came due.
const DELIVERY_TICK: Duration = Duration::from_secs(15);

/// Delivers due notifications right after detection records state changes, and every
/// `DELIVERY_TICK` for retries that come due; queues digests as they come due (the outbox
/// sends them).
pub struct DeliverTask {
    pub store: Store,
    pub config: Arc<Config>,
    pub outbox: Outbox,
    pub signals: Signals,
}

impl DeliverTask {
    pub async fn run(self, cancel: CancellationToken) {
        let mut failures = 0u32;
        loop {
            if self.signals.judged.load(Ordering::SeqCst) {
                queue_digests(&self.store, &self.config).await;
            }
            match self.outbox.deliver(&self.store, Mode::Due).await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(error = %e, "the outbox could not be read");
                }
            }
            let pause = next_delay(tick(&self.config), failures);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.signals.detected.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// How often the outbox runs: every `DELIVERY_TICK`, or more often when an `alertmanager`
/// notifier's `resend_every` is shorter.
fn tick(config: &Config) -> Duration {
    config
        .notifiers
        .iter()
        .filter_map(|n| match n {
            crate::config::Notifier::Webhook(w) => w.alertmanager.as_ref(),
            crate::config::Notifier::Email(_) => None,
        })
        .map(|o| o.resend_every)
        .fold(DELIVERY_TICK, Duration::min)
}

/// Queues the digests whose period came due (the outbox sends them). Errors are logged: the
/// digest is queued on the next pass.
pub async fn queue_digests(store: &Store, config: &Config) {
    if config.digests.is_empty() {
        return;
    }
    if let Err(e) = crate::digest::queue_due(store, config, Utc::now()).await {
        tracing::error!(error = %e, "digests could not be prepared");
    }
}
