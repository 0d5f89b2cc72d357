//! The provider's daily cost report, polled as a stream of its own.

use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use super::paging::{Next, Stream};
use super::schedule::floor_to;
use super::{PollFailure, Poller};
use crate::providers::{CostPage, Pager, PollError};
use crate::store::CostDay;

const DAY: i64 = 86_400;

/// The first day the cost report is read from: the stored cursor, or the lookback's first day
/// on first start; never after yesterday (the last two days are re-read until the provider
/// closes them), whatever the lookback (a lookback shorter than the time since midnight
/// still reads yesterday). A cursor after yesterday means the clock went back: the lookback is
/// read again so nothing is skipped.
pub(super) fn cost_window_start(now: i64, lookback: i64, stored: Option<i64>) -> i64 {
    let yesterday = floor_to(now, DAY) - DAY;
    let oldest = floor_to(now.saturating_sub(lookback), DAY).min(yesterday);
    match stored {
        Some(c) if c <= yesterday => c.max(oldest),
        Some(_) => {
            tracing::warn!(
                "the cost cursor is ahead of the clock (did the clock go back?): re-reading the lookback"
            );
            oldest
        }
        None => oldest,
    }
}

impl Poller {
    /// The provider's daily cost report — per key where it has one (OpenAI), per workspace and
    /// cost type (Anthropic) — from [`cost_window_start`] to the end of today.
    pub(super) async fn poll_billed(
        &self,
        now: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<(), PollFailure> {
        let lookback = i64::try_from(self.poll.lookback.0.as_secs()).unwrap_or(i64::MAX / 2);
        let yesterday = floor_to(now.timestamp(), DAY) - DAY;
        let stored = self.store.billed_cursor(&self.source_name).await?;
        let from = cost_window_start(now.timestamp(), lookback, stored);
        let from_time = Utc.timestamp_opt(from, 0).single().unwrap_or(now);
        let today_time = Utc
            .timestamp_opt(yesterday + DAY, 0)
            .single()
            .unwrap_or(now);
        // Pages hold whole days. A page refused for its size starts a new chain of pages from
        // the end of the last stored day with fewer days per page (`poller::paging`).
        let (mut chain_start, mut resume) = (from_time, from_time);
        let mut pager = Pager::new("cost report");
        let mut limit = 1;
        loop {
            if pager.token().is_none() {
                chain_start = resume;
                let needed = (yesterday + DAY - chain_start.timestamp()).div_euclid(DAY);
                limit = self.page_sizes.next(Stream::Costs, needed);
            }
            let asked_at = std::time::Instant::now();
            let fetched = self
                .client
                .cost_page(chain_start, today_time, limit, pager.token(), cancel)
                .await;
            let page = match self.page_sizes.outcome(
                Stream::Costs,
                limit,
                fetched,
                |p: &CostPage| p.buckets.len(),
                asked_at.elapsed(),
                self.poll.timeout.0,
            ) {
                Next::Page(page) => page,
                Next::Smaller => {
                    pager = Pager::new("cost report");
                    continue;
                }
                Next::Fail(e) => return Err(e.into()),
            };
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
            if let Some(t) = Utc.timestamp_opt(last_end, 0).single() {
                resume = resume.max(t);
            }
            if !pager.advance(page.next_page)? {
                return Ok(());
            }
            if cancel.is_cancelled() {
                return Err(PollError::Cancelled.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_window_never_starts_after_yesterday() {
        let noon = 20_000 * DAY + 12 * 3600;
        let yesterday = 19_999 * DAY;
        // A one-hour lookback in the afternoon used to panic (clamp with min > max).
        assert_eq!(cost_window_start(noon, 3600, None), yesterday);
        assert_eq!(cost_window_start(noon, 3600, Some(yesterday)), yesterday);
        assert_eq!(cost_window_start(noon, 8 * DAY, None), 19_992 * DAY);
        assert_eq!(
            cost_window_start(noon, 8 * DAY, Some(19_995 * DAY)),
            19_995 * DAY
        );
        // A cursor from a clock that was ahead: read the lookback again.
        assert_eq!(
            cost_window_start(noon, 8 * DAY, Some(20_400 * DAY)),
            19_992 * DAY
        );
    }
}
