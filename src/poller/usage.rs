//! One usage stream's poll: pages from the cursor to now, each stored with the cursor it
//! justifies. A steady poll stores each page at once. A catch-up (the first backfill, a poll
//! after downtime) whose pages hold less than a day of each key stages them and moves them into
//! the table many hours at a time (`store::staging`, `UsageSink::stages`), fetching the next
//! page while one is stored; the cursor stays with the rows it covers either way.

use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use super::paging::{Next, Stream};
use super::schedule::{floor_to, Cursor};
use super::{PollFailure, Poller, UsageStats};
use crate::config::BucketWidth;
use crate::providers::{Pager, PollError, UsagePage};
use crate::store::{Staging, Store, StoreError, UsageRecord};

/// Rows staged before they are moved into `usage_buckets`: at 10,000 keys with two models each,
/// twenty hours of every key (nine moves for an 8-day backfill, each holding the write lock for
/// 2-4 s on a 2-core machine, well inside the 10 s other writers wait).
const STAGE_ROWS: usize = 400_000;
/// Pages of fewer buckets than this are staged when more follow: below a day of hourly
/// buckets a page holds too few rows of each key to be written where they belong one by one
/// (at 300 keys a page holds ~30 hours and is stored at once; at 10,000 keys, one).
const STAGE_BELOW_BUCKETS: usize = 24;
/// Moves of at least this many rows are logged at info.
const LOGGED_MOVE_ROWS: usize = 10_000;
/// Staged rows are moved at the latest this long after the first of them was staged, so a slow
/// or rate-limited provider does not keep read usage out of detection.
const STAGE_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// The first bucket usage is read from: the stored cursor, or the lookback on first start;
/// never before the lookback nor after the current bucket. A cursor ahead of the clock (the
/// clock went back after running ahead) re-reads the lookback, so nothing is skipped and
/// polling is never stuck waiting for the clock to catch up.
fn usage_window_start(now: i64, lookback: i64, width: i64, cursor: Option<i64>) -> i64 {
    let current = floor_to(now, width);
    let oldest = floor_to(now.saturating_sub(lookback), width).min(current);
    match cursor {
        Some(c) if c <= current.saturating_add(width) => c.max(oldest).min(current),
        Some(c) => {
            tracing::warn!(
                cursor = c,
                "the usage cursor is ahead of the clock (did the clock go back?): re-reading the lookback"
            );
            oldest
        }
        None => oldest,
    }
}

impl Poller {
    /// Reads one usage stream (`width`) from its cursor, at most `lookback` back, page by page;
    /// first the buckets `[from, until)` of `slice` (a slice of the re-read of late usage,
    /// `poller::late`) when given.
    pub(super) async fn poll_usage(
        &self,
        now: DateTime<Utc>,
        width: BucketWidth,
        lookback: std::time::Duration,
        slice: Option<(i64, i64)>,
        cancel: &CancellationToken,
    ) -> Result<UsageStats, PollFailure> {
        let width_secs = width.seconds();
        let state = self
            .store
            .usage_poll_state(&self.source_name, width_secs)
            .await?;
        let backfill = state.cursor.is_none() && width == self.poll.bucket_width;
        let lookback = i64::try_from(lookback.as_secs()).unwrap_or(i64::MAX / 2);
        let from = usage_window_start(now.timestamp(), lookback, width_secs, state.cursor);
        let window = (now.timestamp() - from).div_euclid(width_secs) + 1;
        let mut sink = UsageSink::new(&self.store, &self.source_name, width_secs, now.timestamp());
        // A catch-up by the cursor, not a re-read of buckets already stored (mostly unchanged
        // rows, which a direct store does not write).
        sink.catch_up = window >= STAGE_BELOW_BUCKETS as i64;
        // A slice of the late re-read first. The cursor it stores never goes back past where
        // this poll starts (everything before that is stored already); a slice that fails is
        // logged and read again by the next poll, and the poll goes on.
        let mut late = None;
        if let Some((slice_from, until)) = slice {
            let mut slice_sink =
                UsageSink::new(&self.store, &self.source_name, width_secs, now.timestamp());
            slice_sink.cursor_floor = Some(from);
            let read = self
                .read_usage(
                    now,
                    width,
                    slice_from,
                    false,
                    Some(until),
                    &mut slice_sink,
                    cancel,
                )
                .await;
            match read {
                Ok(stats) => late = Some(stats.changed),
                Err(e) if e.is_cancelled() => return Err(e),
                Err(e) => tracing::warn!(error = %e,
                    "a slice of the re-read of late usage failed; the next poll reads it again"),
            }
        }
        let read = self
            .read_usage(now, width, from, backfill, None, &mut sink, cancel)
            .await
            .map(|stats| UsageStats { late, ..stats });
        // What was staged before a failure or shutdown is stored with its cursor all the same.
        let moved = sink.flush().await;
        match (read, moved) {
            (Ok(mut stats), Ok(changed)) => {
                stats.changed += changed;
                Ok(stats)
            }
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), Ok(_)) => Err(e),
            (Err(e), Err(store)) => {
                tracing::warn!(error = %store, "staged usage could not be stored; the next poll reads it again");
                Err(e)
            }
        }
    }

    /// Reads pages of one usage stream from `from` (Unix seconds) to now, or to the bucket
    /// before `until`, into `sink`.
    #[allow(clippy::too_many_arguments)]
    async fn read_usage(
        &self,
        now: DateTime<Utc>,
        width: BucketWidth,
        from: i64,
        backfill: bool,
        until: Option<i64>,
        sink: &mut UsageSink<'_>,
        cancel: &CancellationToken,
    ) -> Result<UsageStats, PollFailure> {
        let width_secs = width.seconds();
        let from_time = Utc.timestamp_opt(from, 0).single().unwrap_or(now);
        let settle_cutoff = now.timestamp() - self.poll.settle.0.as_secs() as i64;
        let mut cursor = Cursor::new(from);
        let mut stats = UsageStats::default();
        let mut pager = Pager::new("usage report");
        // A chain of pages follows the provider's tokens with the same start and size. A page
        // refused for its size (or too slow) starts a new chain from the end of the last stored
        // bucket (pages hold whole buckets) with fewer buckets per page.
        let mut start = from_time;
        let mut resume = from_time;
        let mut token: Option<String> = None;
        let mut limit = 1;
        let mut prefetched = None;
        loop {
            if token.is_none() {
                let needed = match until {
                    Some(u) => (u - resume.timestamp() + width_secs - 1).div_euclid(width_secs),
                    None => (now.timestamp() - resume.timestamp()).div_euclid(width_secs) + 1,
                };
                limit = self.page_sizes.next(Stream::Usage(width), needed);
            }
            let (fetched, took) = match prefetched.take() {
                Some(fetched) => fetched,
                None => {
                    self.fetch_page(start, width, limit, token.as_deref(), cancel)
                        .await
                }
            };
            let stream = Stream::Usage(width);
            let page = match self.page_sizes.outcome(
                stream,
                limit,
                fetched,
                |p: &UsagePage| p.buckets.len(),
                took,
                self.poll.timeout.0,
            ) {
                Next::Page(page) => page,
                // Asked again from the end of the last stored bucket, a new chain of pages.
                Next::Smaller => {
                    (start, token) = (resume, None);
                    continue;
                }
                Next::Fail(e) => return Err(e.into()),
            };
            let fetch_ms = took.as_millis() as u64;
            let (records, splits) = self.records(&page, width_secs);
            for b in &page.buckets {
                let start = floor_to(b.start.timestamp(), width_secs);
                cursor.see(start, b.end.timestamp(), settle_cutoff);
            }
            if let Some(last) = page.buckets.iter().map(|b| b.end).max() {
                resume = resume.max(last);
            }
            stats.pages += 1;
            stats.buckets += page.buckets.len();
            let stage = sink.stages(page.buckets.len(), page.next_page.is_some());
            // The decoded page is not needed once its records are made: dropped before the
            // next one arrives, so at most one decoded page is held at a time.
            let UsagePage {
                buckets,
                next_page: next,
            } = page;
            drop(buckets);
            let more = pager.advance(next.clone());
            // In a staged catch-up the next page is asked for while this one is stored (a
            // 10,000-key backfill spends ~40 ms a page fetching and decoding, beside ~200 ms
            // storing); a small organisation's few pages are not worth a second page in memory.
            let prefetch = async {
                match (&more, next.as_deref()) {
                    (Ok(true), Some(next)) if stage && !cancel.is_cancelled() => Some(
                        self.fetch_page(start, width, limit, Some(next), cancel)
                            .await,
                    ),
                    _ => None,
                }
            };
            let store = async {
                let storing = std::time::Instant::now();
                // Splits first (sparse, never staged): a crash between leaves splits whose rows
                // the next poll stores, never rows whose splits are stale.
                if let Err(e) = self
                    .store
                    .store_splits(
                        &self.source_name,
                        width_secs,
                        &records,
                        &splits,
                        now.timestamp(),
                    )
                    .await
                {
                    return (Err(e), storing.elapsed().as_millis() as u64);
                }
                let stored = sink.page(&records, cursor.value(), stage).await;
                (stored, storing.elapsed().as_millis() as u64)
            };
            let ((stored, store_ms), fetched) = tokio::join!(store, prefetch);
            stats.changed += stored?;
            if backfill {
                tracing::info!(
                    pages = stats.pages,
                    buckets = stats.buckets,
                    rows = records.len(),
                    fetch_ms,
                    store_ms,
                    "backfill progress"
                );
            } else {
                tracing::debug!(
                    pages = stats.pages,
                    buckets = stats.buckets,
                    rows = records.len(),
                    fetch_ms,
                    store_ms,
                    "usage page stored"
                );
            }
            if !more? || until.is_some_and(|u| resume.timestamp() >= u) {
                return Ok(stats);
            }
            token = next;
            prefetched = fetched;
            if cancel.is_cancelled() {
                return Err(PollError::Cancelled.into());
            }
        }
    }

    /// One usage page, and how long it took.
    async fn fetch_page(
        &self,
        start: DateTime<Utc>,
        width: BucketWidth,
        limit: u32,
        token: Option<&str>,
        cancel: &CancellationToken,
    ) -> (Result<(UsagePage, usize), PollError>, std::time::Duration) {
        let asked_at = std::time::Instant::now();
        let fetched = self
            .client
            .usage_page(start, width, limit, token, cancel)
            .await;
        (fetched, asked_at.elapsed())
    }
}

/// Where a poll's pages go (see the module's doc).
struct UsageSink<'a> {
    store: &'a Store,
    source: &'a str,
    width_secs: i64,
    now: i64,
    /// The poll reads at least [`STAGE_BELOW_BUCKETS`] buckets (a backfill, a poll after
    /// downtime), not the few unsettled buckets a steady poll re-reads.
    catch_up: bool,
    staging: Option<Staging>,
    /// The cursor the staged rows justify, and when the first of them was staged, until they
    /// are moved.
    cursor: Option<(i64, std::time::Instant)>,
    /// The least cursor a page stores (a re-read of late usage: where the poll would have
    /// started without it).
    cursor_floor: Option<i64>,
}

impl<'a> UsageSink<'a> {
    fn new(store: &'a Store, source: &'a str, width_secs: i64, now: i64) -> Self {
        Self {
            store,
            source,
            width_secs,
            now,
            catch_up: false,
            staging: None,
            cursor: None,
            cursor_floor: None,
        }
    }

    /// Whether a page of `buckets` buckets is staged: once a poll stages, the rest of its pages
    /// are staged too (a page stored at once would move the cursor past staged rows); before,
    /// a catch-up's page is staged when another follows and it holds less than a day of each
    /// key, so storing it at once would rewrite every key's last leaf for a few rows each. A
    /// steady poll's pages (mostly unchanged rows, which a direct store does not write) are
    /// stored at once.
    fn stages(&self, buckets: usize, more: bool) -> bool {
        self.staging.is_some() || (self.catch_up && more && buckets < STAGE_BELOW_BUCKETS)
    }

    /// Stores one page's `rows` with the `cursor` they justify, at once or staged (see
    /// [`UsageSink::stages`]). Returns the rows new or changed so far (staged rows count when
    /// moved).
    async fn page(
        &mut self,
        rows: &[UsageRecord],
        cursor: i64,
        stage: bool,
    ) -> Result<u64, StoreError> {
        let cursor = self.cursor_floor.map_or(cursor, |f| cursor.max(f));
        if !stage {
            return self
                .store
                .store_usage(self.source, self.width_secs, rows, Some(cursor), self.now)
                .await;
        }
        let mut changed = 0;
        if self.staging.as_ref().is_some_and(|s| s.overlaps(rows)) {
            changed += self.flush().await?;
        }
        let staging = match &mut self.staging {
            Some(staging) => staging,
            None => self
                .staging
                .insert(self.store.staging(self.source, self.width_secs).await?),
        };
        staging.add(rows, self.now).await?;
        let since = self
            .cursor
            .map_or_else(std::time::Instant::now, |(_, at)| at);
        self.cursor = Some((cursor, since));
        if staging.rows() >= STAGE_ROWS || since.elapsed() >= STAGE_AGE {
            changed += self.flush().await?;
        }
        Ok(changed)
    }

    /// Moves what is staged into the table with its cursor.
    async fn flush(&mut self) -> Result<u64, StoreError> {
        match (&mut self.staging, self.cursor.take()) {
            (Some(staging), Some((cursor, _))) => {
                let moved = staging.merge(cursor).await?;
                // A backfill's moves at info (a few per backfill), a short catch-up's at debug.
                if moved.rows >= LOGGED_MOVE_ROWS {
                    tracing::info!(?moved, "staged usage moved");
                } else {
                    tracing::debug!(?moved, "staged usage moved");
                }
                Ok(moved.changed)
            }
            _ => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_window_starts_within_the_lookback_and_never_in_the_future() {
        let (h, now) = (3600, 1_000 * 3600 + 120);
        assert_eq!(usage_window_start(now, 48 * h, h, None), 952 * h);
        assert_eq!(usage_window_start(now, 48 * h, h, Some(990 * h)), 990 * h);
        assert_eq!(usage_window_start(now, 48 * h, h, Some(10 * h)), 952 * h);
        assert_eq!(
            usage_window_start(now, 48 * h, h, Some(1_001 * h)),
            1_000 * h
        );
        // Left far ahead by a clock that ran ahead: the lookback is read again.
        assert_eq!(usage_window_start(now, 48 * h, h, Some(9_000 * h)), 952 * h);
    }
}
