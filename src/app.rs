//! The one way to build keywatch and run it: `App::build` opens the store and makes a poller per
//! source; `run_once` does one full cycle; `run_until_stopped` is the daemon, which only wires
//! the long-lived tasks of [`crate::tasks`]. Tests call the same functions the binary does.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::evaluate;
use crate::config::Config;
use crate::lease::Leadership;
use crate::notify::{Mode, Outbox};
use crate::poller::{PollOutcome, Poller};
use crate::replica::Replica;
use crate::store::Store;
use crate::tasks::{LeadTask, LeaderWork, WatchdogTask};

/// How long shutdown waits for the tasks to finish their current step (a poll page's write, a
/// delivery); well inside the unit's TimeoutStopSec and the 10 s the operator expects.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

pub struct App {
    /// Held for the App's life: one polling and delivering process per database.
    _lock: Option<crate::store::InstanceLock>,
    config: Arc<Config>,
    store: Store,
    pollers: Vec<Arc<Poller>>,
}

/// What `run --once` did.
#[derive(Debug, Default)]
pub struct CycleReport {
    /// Sources whose poll failed and was left for the next run.
    pub failed_sources: Vec<String>,
    /// Alert state changes recorded by detection.
    pub alert_changes: usize,
    /// Detection could not run (a storage error); retried on the next run.
    pub detection_failed: bool,
    /// Notifications still pending after the run's attempts; retried on the next run.
    pub undelivered: i64,
}

impl CycleReport {
    /// Whether everything succeeded (exit 0) or something was kept for the next run (exit 75).
    pub fn all_done(&self) -> bool {
        self.failed_sources.is_empty() && !self.detection_failed && self.undelivered == 0
    }
}

/// Pauses between the quick delivery retries of `run --once`.
const QUICK_RETRIES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::ZERO,
];

impl App {
    /// Opens the database (running migrations) and prepares a poller per source.
    pub async fn build(config: Arc<Config>) -> anyhow::Result<Self> {
        if let Some(dir) = config
            .storage
            .sqlite_path()
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
        {
            if !dir.exists() {
                anyhow::bail!(
                    "the database folder {} does not exist (storage.url); create it or change storage.url",
                    dir.display()
                );
            }
        }
        // One `keywatch run` per SQLite file; PostgreSQL replicas share theirs under a lease.
        let lock = match config.storage.sqlite_path() {
            Some(path) => Some(crate::store::InstanceLock::acquire(path)?),
            None => None,
        };
        let store = Store::connect(&config.storage)
            .await
            .with_context(|| format!("opening the database {}", config.storage.describe()))?;
        store
            .ensure_rollup_zones(&config.rollup_zones(), true)
            .await
            .context("setting up the daily spend rollup")?;
        let pollers = config
            .sources
            .iter()
            .map(|s| {
                Poller::new(s, &config.poll, config.prices.clone(), store.clone())
                    .map(Arc::new)
                    .with_context(|| format!("setting up source {:?}", s.name))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            _lock: lock,
            config,
            store,
            pollers,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One full cycle: poll every source (concurrently), then detect.
    pub async fn run_once(&self, cancel: &CancellationToken) -> CycleReport {
        let now = Utc::now();
        let mut polls = tokio::task::JoinSet::new();
        for poller in &self.pollers {
            let poller = Arc::clone(poller);
            let cancel = cancel.clone();
            polls.spawn(async move {
                let outcome = poller.poll_once(now, &cancel).await;
                (poller.source().to_owned(), outcome)
            });
        }
        let mut report = CycleReport::default();
        while let Some(joined) = polls.join_next().await {
            match joined {
                Ok((_, PollOutcome::Done { failed_streams, .. })) if failed_streams.is_empty() => {}
                Ok((source, _)) => report.failed_sources.push(source),
                Err(e) => report
                    .failed_sources
                    .push(format!("(a poll task failed: {e})")),
            }
        }
        report.failed_sources.sort();
        match evaluate(&self.store, &self.config, Utc::now()).await {
            Ok(r) => report.alert_changes = r.changes.len(),
            Err(e) => {
                tracing::error!(error = %e, "detection failed");
                report.detection_failed = true;
            }
        }
        crate::tasks::queue_digests(&self.store, &self.config).await;
        // Every pending delivery and digest, due or not, with a few quick retries within this run.
        let outbox = Outbox::new(Arc::clone(&self.config));
        for pause in QUICK_RETRIES {
            match outbox.deliver(&self.store, Mode::All).await {
                Ok(r) if r.failed == 0 => break,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "the outbox could not be read"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        report.undelivered = match (
            self.store.outbox_counts().await,
            self.store.pending_digests().await,
        ) {
            (Ok(c), Ok(digests)) => c.pending + digests.len() as i64,
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "the outbox could not be read");
                1
            }
        };
        report
    }

    /// The daemon: each source polls on its own schedule until `cancel` fires; then the current
    /// step finishes, the tasks are awaited (under a deadline) and the pool is closed last.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        crate::metrics::handle();
        crate::metrics::preset(&self.store, &self.config).await;
        let tracker = TaskTracker::new();
        // The elector outlives the leader's tasks: it releases the lease only after they
        // stopped, so a follower never starts while this process still writes.
        let lease_cancel = CancellationToken::new();
        let lease_tracker = TaskTracker::new();
        let replica = Replica::start(&self.config, &lease_tracker, &lease_cancel)
            .await
            .context("starting the leader election")?;
        lease_tracker.close();
        if let Some(http) = &self.config.http {
            let listener = tokio::net::TcpListener::bind(http.listen)
                .await
                .with_context(|| format!("listening on {} (http.listen)", http.listen))?;
            tracing::info!(listen = %http.listen, "serving /healthz, /readyz and /metrics");
            let (store, config, cancel) =
                (self.store.clone(), Arc::clone(&self.config), cancel.clone());
            let replica = replica.clone();
            tracker.spawn(async move {
                if let Err(e) =
                    crate::http::serve(listener, store, config, replica, cancel.clone()).await
                {
                    tracing::error!(error = %e, "the HTTP endpoint failed; stopping");
                    cancel.cancel();
                }
            });
        }
        let work = LeaderWork {
            config: Arc::clone(&self.config),
        };
        match &replica {
            // SQLite: this process leads for its whole life (the file lock made sure).
            None => {
                let mut first_polls_done = work.spawn(&tracker, &self.store, &cancel);
                // Ready once migrations ran (App::build) and every source's first poll was
                // attempted.
                let mut attempted = 0;
                while attempted < self.pollers.len() {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        got = first_polls_done.recv() => match got {
                            Some(()) => attempted += 1,
                            None => break,
                        },
                    }
                }
            }
            // PostgreSQL: ready once the election has an answer; the leader's work runs while
            // this replica holds the lease.
            Some(r) => {
                let mut role = r.role.clone();
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = role.wait_for(|l| *l != Leadership::Unknown) => {}
                }
                let lead = LeadTask {
                    work,
                    store: self.store.clone(),
                    instance: r.instance.clone(),
                    role,
                };
                tracker.spawn(lead.run(cancel.clone()));
            }
        }
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "could not tell systemd the service is ready");
        }
        if let Some(every) = sd_notify::watchdog_enabled() {
            tracker.spawn(WatchdogTask { every: every / 2 }.run(cancel.clone()));
        }
        tracker.close();
        cancel.cancelled().await;
        tracing::info!("shutting down: letting the current step finish");
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "tasks did not finish in time; exiting anyway");
        }
        lease_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), lease_tracker.wait()).await;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
