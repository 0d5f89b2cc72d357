//! The one way to build keywatch and run it: `App::build` opens the store and makes a poller per
//! source; `run_once` does one full cycle; `run_until_stopped` is the daemon. Tests call the same
//! functions the binary does.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::poller::{next_delay, PollOutcome, Poller};
use crate::store::Store;

/// How long shutdown waits for the tasks to finish their current step; shorter than systemd's
/// default stop timeout (90 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub struct App {
    store: Store,
    pollers: Vec<Arc<Poller>>,
    interval: Duration,
}

/// What `run --once` did.
#[derive(Debug, Default)]
pub struct CycleReport {
    /// Sources whose poll failed and was left for the next run.
    pub failed_sources: Vec<String>,
}

impl App {
    /// Opens the database (running migrations) and prepares a poller per source.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        if let Some(dir) = config
            .database
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            if !dir.exists() {
                anyhow::bail!(
                    "the database folder {} does not exist (storage.url); create it or change storage.url",
                    dir.display()
                );
            }
        }
        let store = Store::open(&config.database)
            .await
            .with_context(|| format!("opening the database {}", config.database.display()))?;
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
            store,
            pollers,
            interval: config.poll.interval.0,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One full cycle: poll every source (concurrently). Detection and delivery join this cycle
    /// as they arrive.
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
                Ok((_, PollOutcome::Done { .. })) => {}
                Ok((source, _)) => report.failed_sources.push(source),
                Err(e) => report
                    .failed_sources
                    .push(format!("(a poll task failed: {e})")),
            }
        }
        report.failed_sources.sort();
        report
    }

    /// The daemon: each source polls on its own schedule until `cancel` fires; then the current
    /// step finishes, the tasks are awaited (under a deadline) and the pool is closed last.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        for poller in &self.pollers {
            let poller = Arc::clone(poller);
            let cancel = cancel.clone();
            let interval = self.interval;
            tracker.spawn(async move { poll_loop(&poller, interval, &cancel).await });
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
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn poll_loop(poller: &Poller, interval: Duration, cancel: &CancellationToken) {
    let mut failures = 0u32;
    loop {
        match poller.poll_once(Utc::now(), cancel).await {
            PollOutcome::Done { .. } => failures = 0,
            PollOutcome::Failed(_) => failures = failures.saturating_add(1),
            PollOutcome::Cancelled => return,
        }
        let delay = next_delay(interval, failures);
        if failures > 0 {
            tracing::info!(source = poller.source(), failures, retry_in = ?delay, "backing off after failed poll");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Resolves when SIGTERM or SIGINT arrives, then cancels `cancel`.
pub async fn cancel_on_signal(cancel: CancellationToken) {
    let sigterm = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = sigterm => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = cancel.cancelled() => return,
    }
    cancel.cancel();
}
