//! When things are polled: the usage cursor, the back-off after failures, and each secondary
//! stream's (keys, costs) own schedule.

use std::time::Duration;

/// The longest back-off after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// Where the next poll re-reads from: the start of the oldest bucket that may still change,
/// else the end of the last bucket read.
pub(super) struct Cursor {
    last_end: i64,
    oldest_unsettled: Option<i64>,
}

impl Cursor {
    pub(super) fn new(from: i64) -> Self {
        Self {
            last_end: from,
            oldest_unsettled: None,
        }
    }

    pub(super) fn see(&mut self, start: i64, end: i64, settle_cutoff: i64) {
        if end > settle_cutoff {
            self.oldest_unsettled = Some(self.oldest_unsettled.map_or(start, |o| o.min(start)));
        }
        self.last_end = self.last_end.max(end);
    }

    pub(super) fn value(&self) -> i64 {
        self.oldest_unsettled.unwrap_or(self.last_end)
    }
}

pub(super) fn floor_to(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width) * width
}

/// The sleep after a poll: the interval after success; after `failures` consecutive failures,
/// the interval doubled per failure up to 30 minutes, with jitter, so a broken provider is not
/// hammered and many daemons do not retry in step.
pub fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let cap = MAX_BACKOFF.max(interval);
    let backoff = interval
        .saturating_mul(1 << (failures - 1).min(10))
        .min(cap);
    backoff.mul_f64(0.75 + 0.5 * fastrand::f64())
}

/// The schedule of one secondary stream (the key listing, the cost report): it backs off on
/// its own failures, so a failing one never slows usage polling nor the other.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct StreamSchedule {
    failures: u32,
    /// Unix seconds before which the stream is not polled again.
    next_at: i64,
}

impl StreamSchedule {
    /// Whether the stream is polled at `now`. A `next_at` further ahead than any back-off
    /// (the clock went back) does not hold the stream off.
    pub(super) fn due(&self, now: i64, interval: Duration) -> bool {
        let longest = (MAX_BACKOFF.max(interval).as_secs() as i64).saturating_mul(2);
        now >= self.next_at || self.next_at - now > longest
    }

    /// Records a poll of the stream at `now`; returns the failures in a row.
    pub(super) fn record(&mut self, now: i64, interval: Duration, ok: bool) -> u32 {
        self.failures = if ok {
            0
        } else {
            self.failures.saturating_add(1)
        };
        // Polled again on the first cycle at or after the delay (a cycle may come a bit early).
        let delay = next_delay(interval, self.failures).saturating_sub(interval / 2);
        self.next_at = if ok {
            now
        } else {
            now.saturating_add(delay.as_secs() as i64)
        };
        self.failures
    }
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

    #[test]
    fn a_failing_stream_waits_on_its_own_and_a_clock_jump_back_does_not_hold_it() {
        let i = Duration::from_secs(60);
        let mut s = StreamSchedule::default();
        assert!(s.due(1_000, i));
        for _ in 0..6 {
            s.record(1_000, i, false);
        }
        assert!(!s.due(1_060, i), "backing off after six failures");
        assert!(s.due(1_000 + 40 * 60, i));
        // The clock went back a day: the stream is not held off for a day.
        s.record(100_000, i, false);
        assert!(s.due(100_000 - 86_400, i));
        s.record(2_000, i, true);
        assert!(s.due(2_000, i));
    }
}
