//! Late usage (#17): providers publish some rows after `settle` ("delays may occasionally be
//! longer"), when the cursor has moved past their bucket. Every `poll.late_every`, one usage
//! poll reads again from `poll.late_window` back; rows that changed are stored (the rollup and
//! budgets follow) and counted in the log. When the last re-read happened is kept in the
//! stream's poll state (`late:<width>`), so `run --once` from cron re-reads too.

use chrono::{DateTime, Utc};

use super::schedule::floor_to;
use super::Poller;

/// The poll-state stream that records the re-reads of one width.
pub fn late_stream(width_secs: i64) -> String {
    format!("late:{width_secs}")
}

impl Poller {
    /// The bucket a re-read of late usage starts from, when one is due at `now`.
    pub(super) async fn late_reread_due(&self, now: DateTime<Utc>) -> Option<i64> {
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
        due.then(|| floor_to(now.timestamp() - window, width))
    }

    /// Records a re-read from `from` that changed `changed` rows.
    pub(super) async fn late_reread_done(&self, now: DateTime<Utc>, from: i64, changed: u64) {
        let width = self.poll.bucket_width.seconds();
        tracing::info!(
            from,
            changed,
            "re-read the last {} of usage for rows published late",
            humantime::format_duration(self.poll.late_window.0)
        );
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
