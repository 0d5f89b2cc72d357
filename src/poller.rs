//! Polling one source: the key inventory, then usage from the stored cursor to now, page by
//! page. Each page is stored with the cursor it justifies in one transaction, so a failure
//! part-way leaves a consistent store and the next poll resumes where this one stopped.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{PollConfig, SourceConfig};
use crate::prices::PriceTable;
use crate::providers::{PollError, ProviderClient, RetryPolicy, UsagePage};
use crate::store::{CostDay, Store, StoreError, UsageRecord};

/// Why one poll did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PollFailure {
    #[error(transparent)]
    Provider(#[from] PollError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PollFailure {
    fn is_cancelled(&self) -> bool {
        matches!(self, Self::Provider(PollError::Cancelled))
    }
}

#[derive(Debug, Default)]
struct UsageStats {
    pages: usize,
    buckets: usize,
    changed: u64,
}

/// How one poll ended; the loop picks its next sleep from this.
#[derive(Debug)]
pub enum PollOutcome {
    /// Every request succeeded. `changed` counts usage rows that were new or different.
    Done {
        pages: usize,
        buckets: usize,
        changed: u64,
        keys: usize,
    },
    /// Stopped by shutdown between pages; what was read is stored.
    Cancelled,
    /// A request or a write failed after its retries; data stored before it is kept.
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
        Ok(Self {
            source_name: source.name.clone(),
            client: ProviderClient::new(source, poll.timeout.0, retry)?,
            store,
            prices,
            poll: poll.clone(),
            warned_unpriced: Mutex::new(HashSet::new()),
        })
    }

    pub fn source(&self) -> &str {
        &self.source_name
    }

    /// One poll: inventory, then usage. Failures are logged and recorded in the poll state.
    #[tracing::instrument(name = "poll", skip_all, fields(source = %self.source_name))]
    pub async fn poll_once(&self, now: DateTime<Utc>, cancel: &CancellationToken) -> PollOutcome {
        let started = std::time::Instant::now();
        let inventory = self.poll_inventory(now, cancel).await;
        if let Err(e) = &inventory {
            if !e.is_cancelled() {
                tracing::error!(error = %e, "key inventory poll failed; usage is still polled");
            }
        }
        let mut usage = self.poll_usage(now, cancel).await;
        if usage.is_ok() {
            if let Err(e) = self.poll_billed(now, cancel).await {
                usage = Err(e);
            }
        }
        let outcome = match (usage, inventory) {
            (Err(e), _) | (Ok(_), Err(e)) if e.is_cancelled() => return PollOutcome::Cancelled,
            (Err(e), _) | (Ok(_), Err(e)) => PollOutcome::Failed(e),
            (Ok(u), Ok(keys)) => PollOutcome::Done {
                pages: u.pages,
                buckets: u.buckets,
                changed: u.changed,
                keys,
            },
        };
        let error = match &outcome {
            PollOutcome::Failed(e) => Some(e.to_string()),
            _ => None,
        };
        let width = self.poll.bucket_width.seconds();
        if let Err(e) = self
            .store
            .record_usage_poll(&self.source_name, width, now.timestamp(), error.as_deref())
            .await
        {
            tracing::error!(error = %e, "could not record the poll's outcome");
        }
        let took_ms = started.elapsed().as_millis() as u64;
        if !matches!(outcome, PollOutcome::Cancelled) {
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
        }
        match &outcome {
            PollOutcome::Done {
                pages,
                buckets,
                changed,
                keys,
            } => {
                tracing::info!(pages, buckets, changed, keys, took_ms, "poll finished");
            }
            PollOutcome::Failed(e) => tracing::error!(error = %e, took_ms,
                "poll failed; stored data is kept and the next poll resumes from the cursor"),
            PollOutcome::Cancelled => {}
        }
        outcome
    }

    async fn poll_inventory(
        &self,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<usize, PollFailure> {
        let keys = self.client.list_keys(cancel).await?;
        self.store
            .store_inventory(&self.source_name, &keys, now.timestamp())
            .await?;
        Ok(keys.len())
    }

    async fn poll_usage(
        &self,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<UsageStats, PollFailure> {
        let width = self.poll.bucket_width;
        let width_secs = width.seconds();
        let state = self
            .store
            .usage_poll_state(&self.source_name, width_secs)
            .await?;
        let backfill = state.cursor.is_none();
        let lookback = i64::try_from(self.poll.lookback.0.as_secs()).unwrap_or(i64::MAX / 2);
        let oldest = floor_to(now.timestamp() - lookback, width_secs);
        // Never ask for the future (a clock that went back) nor before the lookback window.
        let from = state
            .cursor
            .unwrap_or(oldest)
            .clamp(oldest, floor_to(now.timestamp(), width_secs));
        let from_time = Utc.timestamp_opt(from, 0).single().unwrap_or(now);
        let settle_cutoff = now.timestamp() - self.poll.settle.0.as_secs() as i64;
        let mut cursor = Cursor::new(from);
        let mut stats = UsageStats::default();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .usage_page(from_time, width, token.as_deref(), cancel)
                .await?;
            let records = self.records(&page);
            for b in &page.buckets {
                let start = floor_to(b.start.timestamp(), width_secs);
                cursor.see(start, b.end.timestamp(), settle_cutoff);
            }
            stats.changed += self
                .store
                .store_usage(
                    &self.source_name,
                    width_secs,
                    &records,
                    Some(cursor.value()),
                    now.timestamp(),
                )
                .await?;
            stats.pages += 1;
            stats.buckets += page.buckets.len();
            if backfill {
                tracing::info!(
                    pages = stats.pages,
                    buckets = stats.buckets,
                    rows = records.len(),
                    "backfill progress"
                );
            } else {
                tracing::debug!(
                    pages = stats.pages,
                    buckets = stats.buckets,
                    rows = records.len(),
                    "usage page stored"
                );
            }
            match page.next_page {
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                Some(_) => {
                    return Err(PollError::Paging {
                        endpoint: "usage_report".to_owned(),
                        message: "next_page repeats the current page".to_owned(),
                    }
                    .into())
                }
                None => return Ok(stats),
            }
            if cancel.is_cancelled() {
                return Err(PollError::Cancelled.into());
            }
        }
    }

    /// The provider's daily cost report — per key where it has one (OpenAI), per workspace and
    /// cost type (Anthropic) — from the cost cursor, or the lookback on first start. The last
    /// two days are re-read on every poll until the provider has closed them.
    async fn poll_billed(
        &self,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<(), PollFailure> {
        const DAY: i64 = 86_400;
        let lookback = i64::try_from(self.poll.lookback.0.as_secs()).unwrap_or(i64::MAX / 2);
        let oldest = floor_to(now.timestamp() - lookback, DAY);
        let yesterday = floor_to(now.timestamp(), DAY) - DAY;
        let stored = self.store.billed_cursor(&self.source_name).await?;
        let from = stored.unwrap_or(oldest).clamp(oldest, yesterday);
        let from_time = Utc.timestamp_opt(from, 0).single().unwrap_or(now);
        let today_time = Utc
            .timestamp_opt(yesterday + DAY, 0)
            .single()
            .unwrap_or(now);
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .cost_page(from_time, today_time, token.as_deref(), cancel)
                .await?;
            let days: Vec<CostDay> = page
                .buckets
                .iter()
                .map(|b| CostDay {
                    day: floor_to(b.start.timestamp(), DAY),
                    per_key: b.rows.clone(),
                    lines: b.lines.clone(),
                })
                .collect();
            let last_end = page
                .buckets
                .iter()
                .map(|b| b.end.timestamp())
                .max()
                .unwrap_or(from);
            self.store
                .store_billed(
                    &self.source_name,
                    &days,
                    last_end.min(yesterday).max(from),
                    now.timestamp(),
                )
                .await?;
            match page.next_page {
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                Some(_) => {
                    return Err(PollError::Paging {
                        endpoint: "costs".to_owned(),
                        message: "next_page repeats the current page".to_owned(),
                    }
                    .into())
                }
                None => return Ok(()),
            }
            if cancel.is_cancelled() {
                return Err(PollError::Cancelled.into());
            }
        }
    }

    fn records(&self, page: &UsagePage) -> Vec<UsageRecord> {
        let width = self.poll.bucket_width.seconds();
        let mut out = Vec::new();
        for bucket in &page.buckets {
            for row in &bucket.rows {
                let cost = self.prices.cost(&row.model, &row.tokens);
                if cost.is_none() {
                    self.warn_unpriced(&row.model);
                }
                out.push(UsageRecord {
                    key_id: row.key_id.clone(),
                    model: row.model.clone(),
                    // Snapped: a provider may start the first bucket at the raw start time.
                    bucket_start: floor_to(bucket.start.timestamp(), width),
                    tokens: row.tokens,
                    web_search_requests: row.web_search_requests,
                    requests: row.requests,
                    cost_usd: cost,
                });
            }
        }
        out
    }

    fn warn_unpriced(&self, model: &str) {
        let mut warned = self
            .warned_unpriced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if warned.insert(model.to_owned()) {
            tracing::warn!(model, "model has no price: its tokens are stored but its cost is unknown; add [prices.\"{model}\"] to the config");
        }
    }
}

/// Where the next poll re-reads from: the start of the oldest bucket that may still change,
/// else the end of the last bucket read.
struct Cursor {
    last_end: i64,
    oldest_unsettled: Option<i64>,
}

impl Cursor {
    fn new(from: i64) -> Self {
        Self {
            last_end: from,
            oldest_unsettled: None,
        }
    }

    fn see(&mut self, start: i64, end: i64, settle_cutoff: i64) {
        if end > settle_cutoff {
            self.oldest_unsettled = Some(self.oldest_unsettled.map_or(start, |o| o.min(start)));
        }
        self.last_end = self.last_end.max(end);
    }

    fn value(&self) -> i64 {
        self.oldest_unsettled.unwrap_or(self.last_end)
    }
}

fn floor_to(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width) * width
}

/// The sleep after a poll: the interval after success; after `failures` consecutive failures,
/// the interval doubled per failure up to 30 minutes, with jitter, so a broken provider is not
/// hammered and many daemons do not retry in step.
pub fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let cap = Duration::from_secs(30 * 60).max(interval);
    let backoff = interval
        .saturating_mul(1 << (failures - 1).min(10))
        .min(cap);
    backoff.mul_f64(0.75 + 0.5 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_stops_at_oldest_unsettled_bucket() {
        let mut c = Cursor::new(0);
        c.see(0, 3600, 5000);
        assert_eq!(c.value(), 3600);
        c.see(3600, 7200, 5000);
        c.see(7200, 10800, 5000);
        assert_eq!(c.value(), 3600);
    }

    #[test]
    fn failure_delay_grows_and_is_capped() {
        let i = Duration::from_secs(120);
        assert_eq!(next_delay(i, 0), i);
        assert!(next_delay(i, 1) >= Duration::from_secs(90));
        assert!(next_delay(i, 20) <= Duration::from_secs(30 * 60 * 5 / 4));
    }
}
