//! Late usage (#17): providers publish some rows after `settle` ("delays may occasionally be
//! longer"), when the cursor has moved past their bucket. Every `poll.late_every`, one usage
//! poll reads again from `poll.late_window` back; rows that changed are stored (the rollup and
//! budgets follow) and counted in the log. When the last re-read happened is kept in the
//! stream's poll state (`late:<width>`), so `run --once` from cron re-reads too.

use chrono::{DateTime, Utc};

use super::schedule::floor_to;
use super::Poller;
use crate::store::{changed_days, DayUsage};

/// A re-read about to happen: where it starts, where the cursor stood, and what the buckets
/// between held before (`None`: nothing is counted as late this time, see
/// [`Poller::late_reread_due`]).
#[derive(Debug)]
pub(super) struct Reread {
    pub from: i64,
    /// The stored cursor: the re-read never leaves it further back.
    pub cursor: Option<i64>,
    before: Option<Vec<DayUsage>>,
}

/// The poll-state stream that records the re-reads of one width.
pub fn late_stream(width_secs: i64) -> String {
    format!("late:{width_secs}")
}

impl Poller {
    /// The re-read of late usage due at `now`, if one is.
    pub(super) async fn late_reread_due(&self, now: DateTime<Utc>) -> Option<Reread> {
        let window = self.poll.late_window.0.as_secs() as i64;
        if window == 0 {
            return None;
        }
        let width = self.poll.bucket_width.seconds();
        let last = match self
            .store
            .poll_state(&self.source_name, &late_stream(width))
            .await
        {
            Ok(state) => state.last_success_at,
            Err(e) => {
                tracing::warn!(error = %e, "could not read when late usage was last re-read");
                return None;
            }
        };
        let every = self.poll.late_every.0.as_secs() as i64;
        let due = match last {
            // The first poll of a new database is a backfill: it reads everything anyway.
            None => true,
            Some(t) => now.timestamp() - t >= every || t > now.timestamp(),
        };
        if !due {
            return None;
        }
        let from = floor_to(now.timestamp() - window, width);
        // What the buckets the cursor has passed hold now, to tell what arrives late.
        let cursor = match self.store.usage_poll_state(&self.source_name, width).await {
            Ok(state) => state.cursor,
            Err(_) => None,
        };
        // Nothing is counted as late on the first re-read of a database (after an upgrade the
        // buckets are read again under new prices and groupings, which is not late usage) or
        // when the snapshot cannot be read (an empty one would count everything as late).
        let before = match (cursor, last) {
            (Some(c), Some(_)) if c > from => {
                match self
                    .store
                    .usage_by_day(&self.source_name, width, from, c)
                    .await
                {
                    Ok(days) => Some(days),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read usage before a re-read; \
                            what arrives late is not counted this time");
                        None
                    }
                }
            }
            _ => None,
        };
        Some(Reread {
            from,
            cursor,
            before,
        })
    }

    /// Records a re-read that changed `changed` rows, and what arrived late in the buckets
    /// the cursor had passed (per UTC day, for `report --reconcile`).
    pub(super) async fn late_reread_done(&self, now: DateTime<Utc>, reread: Reread, changed: u64) {
        let width = self.poll.bucket_width.seconds();
        let mut late = Vec::new();
        if let (Some(cursor), Some(before)) =
            (reread.cursor.filter(|c| *c > reread.from), &reread.before)
        {
            match self
                .store
                .usage_by_day(&self.source_name, width, reread.from, cursor)
                .await
            {
                Ok(after) => late = changed_days(before, &after),
                Err(e) => tracing::warn!(error = %e, "could not tell what arrived late"),
            }
        }
        let late_usd: f64 = late.iter().map(|d| d.usd).sum();
        let late_tokens: i64 = late.iter().fold(0, |a, d| a.saturating_add(d.tokens));
        tracing::info!(
            from = reread.from,
            changed,
            late_usd,
            late_tokens,
            "re-read the last {} of usage for rows published late",
            humantime::format_duration(self.poll.late_window.0)
        );
        if !late.is_empty() {
            if let Err(e) = self
                .store
                .add_late_usage(&self.source_name, &late, now.timestamp())
                .await
            {
                tracing::warn!(error = %e, "could not record what arrived late");
            }
        }
        if let Err(e) = self
            .store
            .record_poll(
                &self.source_name,
                &late_stream(width),
                now.timestamp(),
                None,
                None,
            )
            .await
        {
            tracing::warn!(error = %e, "could not record the re-read of late usage");
        }
    }
}
