//! A budget's periods and limits: the current day and month of its time zone, the limit it
//! sets for each, the percentage thresholds its spend has crossed and their severity. Pure.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::Budget;
use crate::model::Severity;
use crate::period::{Period, PeriodKind};

/// The day and the month containing `now` in `tz` (one period computation: [`crate::period`]).
pub fn current_periods(tz: Tz, now: DateTime<Utc>) -> [Period; 2] {
    [
        Period::containing(PeriodKind::Day, tz, now),
        Period::containing(PeriodKind::Month, tz, now),
    ]
}

/// The limit of `b` for a period of this kind, if it sets one.
pub fn limit_for(b: &Budget, period: &Period) -> Option<f64> {
    match period.kind {
        PeriodKind::Day => b.daily_usd,
        PeriodKind::Month => b.monthly_usd,
        PeriodKind::Week => None,
    }
}

/// Every threshold (percent) that `spent` has reached of `limit`, ascending.
pub fn crossed(spent: f64, limit: f64, thresholds: &[u32]) -> Vec<u32> {
    thresholds
        .iter()
        .copied()
        .filter(|t| spent >= limit * f64::from(*t) / 100.0)
        .collect()
}

/// Below 75 % info, 75-99 % warning, 100 % and above critical.
pub fn severity(threshold: u32) -> Severity {
    match threshold {
        0..=74 => Severity::Info,
        75..=99 => Severity::Warning,
        _ => Severity::Critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn crossing_50_and_75_in_one_poll_fires_both() {
        assert_eq!(crossed(80.0, 100.0, &[50, 75, 90, 100]), [50, 75]);
        assert_eq!(crossed(49.99, 100.0, &[50, 75, 90, 100]), Vec::<u32>::new());
        assert_eq!(crossed(100.0, 100.0, &[50, 75, 90, 100]), [50, 75, 90, 100]);
        assert_eq!(
            (severity(50), severity(75), severity(90), severity(100)),
            (
                Severity::Info,
                Severity::Warning,
                Severity::Warning,
                Severity::Critical
            )
        );
    }

    #[test]
    fn berlin_day_across_the_october_dst_change_is_25_hours() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-10-25: clocks go back at 03:00 CEST.
        let [day, month] = current_periods(tz, utc("2026-10-25T12:00:00Z"));
        assert_eq!(day.label, "2026-10-25");
        assert_eq!(day.start, utc("2026-10-24T22:00:00Z"));
        assert_eq!(day.end, utc("2026-10-25T23:00:00Z"));
        assert_eq!(month.start, utc("2026-09-30T22:00:00Z"));
        assert_eq!(month.end, utc("2026-10-31T23:00:00Z"));
    }

    #[test]
    fn local_midnight_is_the_boundary_not_utc_midnight() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // 03:30 UTC on the 1st is still the previous day (and month) in New York.
        let [day, month] = current_periods(tz, utc("2026-12-01T03:30:00Z"));
        assert_eq!(day.label, "2026-11-30");
        assert_eq!(month.label, "2026-11");
        assert_eq!(month.end, utc("2026-12-01T05:00:00Z"));
    }

    #[test]
    fn a_dst_gap_at_midnight_starts_the_day_at_the_first_real_instant() {
        // America/Santiago springs forward at 24:00 -> 01:00 (2026-09-06).
        let tz: Tz = "America/Santiago".parse().unwrap();
        let [day, _] = current_periods(tz, utc("2026-09-06T12:00:00Z"));
        assert_eq!(
            day.start.with_timezone(&tz).format("%H:%M").to_string(),
            "01:00"
        );
    }
}
