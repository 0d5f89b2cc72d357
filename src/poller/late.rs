//! Late usage (#17): providers publish some rows after `settle` ("delays may occasionally be
//! longer"), when the cursor has moved past their bucket. Every `poll.late_every`, usage is
//! read again from `poll.late_window` back, a slice per poll (so no cycle is much longer than
//! a steady one: at 10,000 keys a 48-hour re-read in one poll took 9.5 s); rows that changed
//! are stored (the rollup and budgets follow) and what arrived late is kept per UTC day for
//! `report --reconcile`. The stream `late:<width>` in the poll state keeps where the re-read
//! stands (its cursor) and when the last one ended (its last success), so `run --once` from
//! cron re-reads too.

use chrono::{DateTime, Utc};

use super::schedule::floor_to;
use super::Poller;
use crate::store::{changed_days, DayUsage};

/// The poll-state stream that records the re-reads of one width.
pub fn late_stream(width_secs: i64) -> String {
    format!("late:{width_secs}")
}

/// The slice of a re-read one poll reads: `[from, until)`, and what those buckets held before
/// (`None`: nothing is counted as late this time, see [`Poller::late_slice_due`]).
#[derive(Debug)]
pub(super) struct Slice {
    pub from: i64,
    pub until: i64,
    /// The last slice of the re-read (it reaches the usage cursor).
    last: bool,
    before: Option<Vec<DayUsage>>,
}

/// Buckets per slice: the re-read ends within a quarter of `late_every` (at the defaults, 48
/// hourly buckets every 6 hours with a 2-minute interval: 2 buckets a poll).
fn slice_buckets(window_buckets: i64, interval_secs: i64, every_secs: i64) -> i64 {
    let polls = (every_secs / 4 / interval_secs.max(1)).max(1);
    (window_buckets + polls - 1).div_euclid(polls).max(1)
}

impl Poller {
    /// The slice of the re-read of late usage this poll reads at `now`, if any.
    pub(super) async fn late_slice_due(&self, now: DateTime<Utc>) -> Option<Slice> {
        let window = self.poll.late_window.0.as_secs() as i64;
        if window == 0 {
            return None;
        }
        let width = self.poll.bucket_width.seconds();
        let stream = late_stream(width);
        let (state, usage) = match tokio::try_join!(
            self.store.poll_state(&self.source_name, &stream),
            self.store.usage_poll_state(&self.source_name, width),
        ) {
            Ok(states) => states,
            Err(e) => {
                tracing::warn!(error = %e, "could not read where the re-read of late usage stands");
                return None;
            }
        };
        // A first backfill reads everything anyway.
        let cursor = usage.cursor?;
        let oldest = floor_to(now.timestamp() - window, width);
        let from = match (state.cursor, state.last_success_at) {
            // A re-read under way goes on where it stands.
            (Some(position), _) => position.max(oldest),
            (None, Some(t))
                if now.timestamp() - t < self.poll.late_every.0.as_secs() as i64
                    && t <= now.timestamp() =>
            {
                return None
            }
            (None, _) => oldest,
        };
        let buckets = slice_buckets(
            window / width,
            self.poll.interval.0.as_secs() as i64,
            self.poll.late_every.0.as_secs() as i64,
        );
        let until = (from + buckets * width).min(cursor);
        // Nothing is counted as late on a database's first re-read (after an upgrade the
        // buckets are read again under new prices and groupings, which is not late usage) or
        // when the snapshot cannot be read (an empty one would count everything as late).
        let before = match state.last_success_at {
            Some(_) if until > from => {
                match self
                    .store
                    .usage_by_day(&self.source_name, width, from, until)
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
        Some(Slice {
            from,
            until: until.max(from),
            last: until >= cursor,
            before,
        })
    }

    /// Records a slice read whole that changed `changed` rows: what arrived late in it (per
    /// UTC day, for `report --reconcile`), and where the re-read stands.
    pub(super) async fn late_slice_done(&self, now: DateTime<Utc>, slice: Slice, changed: u64) {
        let width = self.poll.bucket_width.seconds();
        let stream = late_stream(width);
        let mut late = Vec::new();
        if let Some(before) = &slice.before {
            match self
                .store
                .usage_by_day(&self.source_name, width, slice.from, slice.until)
                .await
            {
                Ok(after) => late = changed_days(before, &after),
                Err(e) => tracing::warn!(error = %e, "could not tell what arrived late"),
            }
        }
        let late_usd: f64 = late.iter().map(|d| d.usd).sum();
        let late_tokens: i64 = late.iter().fold(0, |a, d| a.saturating_add(d.tokens));
        tracing::info!(
            from = slice.from,
            until = slice.until,
            changed,
            late_usd,
            late_tokens,
            done = slice.last,
            "re-read usage for rows published late"
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
        let position = (!slice.last).then_some(slice.until);
        let mut stored = self
            .store
            .set_stream_cursor(&self.source_name, &stream, position)
            .await;
        if slice.last && stored.is_ok() {
            stored = self
                .store
                .record_poll(&self.source_name, &stream, now.timestamp(), None, None)
                .await;
        }
        if let Err(e) = stored {
            tracing::warn!(error = %e, "could not record where the re-read of late usage stands");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reread_is_spread_to_end_within_a_quarter_of_its_period() {
        // 48 hourly buckets every 6 h with a 2-minute interval: 45 polls, 2 buckets each.
        assert_eq!(slice_buckets(48, 120, 6 * 3600), 2);
        // Every poll (late_every = interval): the whole window at once.
        assert_eq!(slice_buckets(48, 60, 60), 48);
        // Minutes: 2,880 of them over 45 polls.
        assert_eq!(slice_buckets(2_880, 120, 6 * 3600), 64);
    }
}
