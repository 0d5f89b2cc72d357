//! Polling one source: the key inventory, usage from the stored cursor to now page by page,
//! and the provider's cost report. Each is a stream of its own: its outcome is recorded apart
//! and a failing key listing or cost report backs off on its own, so it never slows usage
//! polling (leak detection). Usage rows are stored with the cursor they justify in one
//! transaction (`poller::usage`), so a failure part-way leaves a consistent store and the next
//! poll resumes where the stored rows end.

mod costs;
mod late;
mod paging;
mod records;
mod schedule;
mod usage;

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use paging::PageSizes;
pub use schedule::next_delay;
use schedule::StreamSchedule;

use crate::config::{BucketWidth, PollConfig, SourceConfig};
use crate::prices::PriceTable;
use crate::providers::{PollError, ProviderClient, RetryPolicy};
use crate::store::{Store, StoreError, COSTS_STREAM, KEYS_STREAM};

/// Why one poll did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PollFailure {
    #[error(transparent)]
    Provider(#[from] PollError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PollFailure {
    /// The provider's HTTP status, when it answered the failed request with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Provider(e) => e.status(),
            Self::Store(_) => None,
        }
    }

    fn is_cancelled(&self) -> bool {
        matches!(self, Self::Provider(PollError::Cancelled))
    }
}

#[derive(Debug, Default)]
struct UsageStats {
    pages: usize,
    buckets: usize,
    changed: u64,
    /// Rows a slice of the late re-read changed, when one was read and stored.
    late: Option<u64>,
}

/// How one poll ended; the loop picks its next sleep from this (usage only).
#[derive(Debug)]
pub enum PollOutcome {
    /// Usage was polled. `changed` counts usage rows that were new or different; `keys` is
    /// the listing's size when it was polled and succeeded; `failed_streams` names the other
    /// streams (`keys`, `costs`) that failed this time (each backs off on its own).
    Done {
        pages: usize,
        buckets: usize,
        changed: u64,
        keys: Option<usize>,
        failed_streams: Vec<&'static str>,
    },
    /// Stopped by shutdown between pages; what was read is stored.
    Cancelled,
    /// A usage request or write failed after its retries; data stored before it is kept.
    Failed(PollFailure),
}

/// Polls one source into the store.
pub struct Poller {
    source_name: String,
    client: ProviderClient,
    store: Store,
    prices: PriceTable,
    poll: PollConfig,
    /// Models already reported as unpriced, so each is logged once per process.
    warned_unpriced: Mutex<HashSet<String>>,
    keys_schedule: Mutex<StreamSchedule>,
    costs_schedule: Mutex<StreamSchedule>,
    /// Buckets per usage page, per stream (adaptive: `poller::paging`).
    page_sizes: PageSizes,
}

impl Poller {
    pub fn new(
        source: &SourceConfig,
        poll: &PollConfig,
        prices: PriceTable,
        store: Store,
    ) -> Result<Self, PollError> {
        let retry = RetryPolicy {
            retries: poll.retries,
            backoff: poll.retry_backoff.0,
        };
        let max_body = poll.max_page_mib as usize * 1024 * 1024;
        Ok(Self {
            source_name: source.name.clone(),
            client: ProviderClient::new(source, poll.timeout.0, retry, max_body)?,
            store,
            prices,
            poll: poll.clone(),
            warned_unpriced: Mutex::new(HashSet::new()),
            keys_schedule: Mutex::new(StreamSchedule::default()),
            costs_schedule: Mutex::new(StreamSchedule::default()),
            page_sizes: PageSizes::new(max_body),
        })
    }

    pub fn source(&self) -> &str {
        &self.source_name
    }

    /// One poll: the key listing and the cost report when due, and usage every time. Each
    /// stream's outcome is logged and recorded in its own poll state.
    #[tracing::instrument(name = "poll", skip_all, fields(source = %self.source_name))]
    pub async fn poll_once(&self, now: DateTime<Utc>, cancel: &CancellationToken) -> PollOutcome {
        let started = std::time::Instant::now();
        let mut failed_streams = Vec::new();
        let mut keys = None;
        if self.due(&self.keys_schedule, now) {
            match self.poll_inventory(now, cancel).await {
                Err(e) if e.is_cancelled() => return PollOutcome::Cancelled,
                r => {
                    let ok = self
                        .finish_stream(
                            KEYS_STREAM,
                            "the key listing",
                            &self.keys_schedule,
                            now,
                            r.as_ref().err(),
                        )
                        .await;
                    if !ok {
                        failed_streams.push("keys");
                    }
                    keys = r.ok();
                }
            }
        }
        let slice = self.late_slice_due(now).await;
        let usage = self
            .poll_usage(
                now,
                self.poll.bucket_width,
                self.poll.lookback.0,
                slice.as_ref().map(|s| (s.from, s.until)),
                cancel,
            )
            .await;
        if let (
            Some(slice),
            Ok(UsageStats {
                late: Some(changed),
                ..
            }),
        ) = (slice, &usage)
        {
            self.late_slice_done(now, slice, *changed).await;
        }
        if usage.as_ref().is_err_and(PollFailure::is_cancelled) {
            return PollOutcome::Cancelled;
        }
        // The minute stream reads the same endpoint: after a failed hourly read it waits for
        // the next poll rather than doubling the load on a failing provider.
        if let (Some(recent), Ok(_)) = (self.poll.recent, &usage) {
            match self.poll_recent(now, recent.0, cancel).await {
                Err(e) if e.is_cancelled() => return PollOutcome::Cancelled,
                Err(_) => failed_streams.push("usage:1m"),
                Ok(()) => {}
            }
        }
        if self.due(&self.costs_schedule, now) {
            match self.poll_billed(now, cancel).await {
                Err(e) if e.is_cancelled() => return PollOutcome::Cancelled,
                r => {
                    let ok = self
                        .finish_stream(
                            COSTS_STREAM,
                            "the cost report",
                            &self.costs_schedule,
                            now,
                            r.as_ref().err(),
                        )
                        .await;
                    if !ok {
                        failed_streams.push("costs");
                    }
                }
            }
        }
        let outcome = match usage {
            Err(e) => PollOutcome::Failed(e),
            Ok(u) => PollOutcome::Done {
                pages: u.pages,
                buckets: u.buckets,
                changed: u.changed,
                keys,
                failed_streams,
            },
        };
        let (error, status) = match &outcome {
            PollOutcome::Failed(e) => (Some(e.to_string()), e.status()),
            _ => (None, None),
        };
        let width = self.poll.bucket_width.seconds();
        if let Err(e) = self
            .store
            .record_usage_poll(
                &self.source_name,
                width,
                now.timestamp(),
                error.as_deref(),
                status,
            )
            .await
        {
            tracing::error!(error = %e, "could not record the poll's outcome");
        }
        let took_ms = started.elapsed().as_millis() as u64;
        let changed = match &outcome {
            PollOutcome::Done { changed, .. } => *changed,
            _ => 0,
        };
        let ok = matches!(outcome, PollOutcome::Done { .. });
        crate::metrics::poll_finished(
            &self.source_name,
            ok,
            started.elapsed().as_secs_f64(),
            changed,
            now.timestamp(),
        );
        match &outcome {
            PollOutcome::Done {
                pages,
                buckets,
                changed,
                keys,
                failed_streams,
            } => {
                let failed = (!failed_streams.is_empty()).then(|| failed_streams.join(", "));
                tracing::info!(
                    pages,
                    buckets,
                    changed,
                    keys,
                    failed,
                    took_ms,
                    "poll finished"
                );
            }
            PollOutcome::Failed(e) => tracing::error!(error = %e, took_ms,
                "usage poll failed; stored data is kept and the next poll resumes from the cursor"),
            PollOutcome::Cancelled => {}
        }
        outcome
    }

    /// The recent minute stream of the fast spike check: every poll, from its cursor (the
    /// oldest minute not settled yet) and at most `lookback` back. Its outcome is recorded
    /// apart; a failure never fails the hourly stream.
    async fn poll_recent(
        &self,
        now: DateTime<Utc>,
        lookback: std::time::Duration,
        cancel: &CancellationToken,
    ) -> Result<(), PollFailure> {
        let width = BucketWidth::Minute;
        let result = self.poll_usage(now, width, lookback, None, cancel).await;
        if result.as_ref().is_err_and(PollFailure::is_cancelled) {
            return result.map(|_| ());
        }
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error {
            tracing::error!(error = %e, "the minute stream failed; the hourly stream goes on");
        }
        if let Err(e) = self
            .store
            .record_usage_poll(
                &self.source_name,
                width.seconds(),
                now.timestamp(),
                error.as_deref(),
                result.as_ref().err().and_then(PollFailure::status),
            )
            .await
        {
            tracing::error!(error = %e, "could not record the minute stream's outcome");
        }
        result.map(|stats| {
            tracing::debug!(
                pages = stats.pages,
                buckets = stats.buckets,
                changed = stats.changed,
                "minute stream polled"
            );
        })
    }

    fn due(&self, schedule: &Mutex<StreamSchedule>, now: DateTime<Utc>) -> bool {
        schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due(now.timestamp(), self.poll.interval.0)
    }

    /// Records one secondary stream's outcome in the store and its schedule, and logs a failure.
    /// Returns whether the stream succeeded and its outcome was stored.
    async fn finish_stream(
        &self,
        stream: &str,
        what: &str,
        schedule: &Mutex<StreamSchedule>,
        now: DateTime<Utc>,
        error: Option<&PollFailure>,
    ) -> bool {
        let failures = schedule.lock().unwrap_or_else(|p| p.into_inner()).record(
            now.timestamp(),
            self.poll.interval.0,
            error.is_none(),
        );
        if let Some(e) = error {
            tracing::error!(error = %e, failures,
                "{what} failed; it backs off on its own and usage polling goes on unchanged");
        }
        let message = error.map(ToString::to_string);
        if let Err(e) = self
            .store
            .record_poll(
                &self.source_name,
                stream,
                now.timestamp(),
                message.as_deref(),
                error.and_then(PollFailure::status),
            )
            .await
        {
            tracing::error!(error = %e, stream, "could not record the poll's outcome");
            return false;
        }
        error.is_none()
    }

    async fn poll_inventory(
        &self,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<usize, PollFailure> {
        let keys = self.client.list_keys(cancel).await?;
        self.page_sizes.keys_listed(keys.len());
        self.store
            .store_inventory(&self.source_name, &keys, now.timestamp())
            .await?;
        Ok(keys.len())
    }
}
