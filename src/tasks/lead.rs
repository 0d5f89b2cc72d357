//! The leader's work and who does it. On SQLite the one process leads for its whole life; on
//! PostgreSQL a [`LeadTask`] starts the work each time this replica's elector wins the lease
//! and stops it the moment the lease is lost, so only one replica polls, detects, contains and
//! delivers at a time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{DeliverTask, DetectTask, PollTask, RetentionTask, Signals};
use crate::config::Config;
use crate::lease::Leadership;
use crate::notify::Outbox;
use crate::poller::Poller;
use crate::store::Store;

/// How long a lost lease waits for the leader's tasks to finish their current step. Their
/// writes are fenced, so one that lands after the loss is refused by the database anyway.
const STEP_DOWN_GRACE: Duration = Duration::from_secs(8);

/// Everything the leader runs: a [`PollTask`] per source, detection, retention and delivery.
pub struct LeaderWork {
    pub config: Arc<Config>,
}

impl LeaderWork {
    /// Spawns the leader's tasks on `tracker`, writing through `store` (fenced on PostgreSQL).
    /// The receiver is told once per source when its first poll was attempted.
    pub fn spawn(
        &self,
        tracker: &TaskTracker,
        store: &Store,
        cancel: &CancellationToken,
    ) -> mpsc::Receiver<()> {
        let signals = Signals::default();
        let config = &self.config;
        let (first_polls, first_polls_done) = mpsc::channel(config.sources.len().max(1));
        for source in &config.sources {
            let poller = match Poller::new(
                source,
                &config.poll,
                config.prices.clone(),
                store.clone(),
            ) {
                Ok(p) => p,
                Err(e) => {
                    // App::build made the same poller already; this cannot fail differently.
                    tracing::error!(source = %source.name, error = %e, "cannot set up the source's poller");
                    continue;
                }
            };
            let task = PollTask {
                poller: Arc::new(poller),
                interval: config.poll.interval.0,
                signals: signals.clone(),
                first: Some(first_polls.clone()),
            };
            tracker.spawn(task.run(cancel.clone()));
        }
        let detect = DetectTask {
            store: store.clone(),
            config: Arc::clone(config),
            signals: signals.clone(),
        };
        tracker.spawn(detect.run(cancel.clone()));
        let retention = RetentionTask {
            store: store.clone(),
            config: Arc::clone(config),
        };
        tracker.spawn(retention.run(cancel.clone()));
        let deliver = DeliverTask {
            store: store.clone(),
            config: Arc::clone(config),
            outbox: Outbox::new(Arc::clone(config)),
            signals,
        };
        tracker.spawn(deliver.run(cancel.clone()));
        first_polls_done
    }
}

/// Runs [`LeaderWork`] while this replica holds the lease (PostgreSQL).
pub struct LeadTask {
    pub work: LeaderWork,
    pub store: Store,
    pub instance: String,
    pub role: watch::Receiver<Leadership>,
}

impl LeadTask {
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let epoch = tokio::select! {
                _ = cancel.cancelled() => return,
                got = self.role.wait_for(Leadership::is_leader) => match got {
                    Ok(role) => match *role {
                        Leadership::Leader { epoch, .. } => epoch,
                        _ => continue,
                    },
                    // The elector stopped: shutdown.
                    Err(_) => return,
                },
            };
            tracing::info!(instance = %self.instance, epoch, "leading: polling, detecting and delivering");
            let term = cancel.child_token();
            let tracker = TaskTracker::new();
            let store = self.store.fenced(&self.instance, epoch);
            drop(self.work.spawn(&tracker, &store, &term));
            tracker.close();
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = self.role.wait_for(|r| !r.is_leader()) => {
                    tracing::warn!(instance = %self.instance, epoch, "lost the leader lease: stopping polls, detection and deliveries");
                }
            }
            term.cancel();
            if tokio::time::timeout(STEP_DOWN_GRACE, tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!(grace = ?STEP_DOWN_GRACE, "the leader's tasks did not stop in time");
            }
            if cancel.is_cancelled() {
                return;
            }
        }
    }
}
