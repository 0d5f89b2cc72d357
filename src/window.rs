//! The one parser and bound for every time, window and range keywatch reads: `--since`/`--until`
//! of `history`, `report`, `backtest` and `export`, the `since`/`until` of `/api/v1/*`, and the
//! dashboard's `window`. Nothing that reads buckets reaches back more than [`MAX_DAYS`] days (the
//! default retention of hourly usage), a report (daily rollup) more than [`REPORT_MAX_DAYS`],
//! and nothing more than a day ahead, so no input can make a read, a period list or the calendar
//! arithmetic behind them unbounded.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest window, and the furthest back any time may lie, in days.
pub const MAX_DAYS: u64 = 400;
/// [`MAX_DAYS`] as a duration.
pub const MAX_WINDOW: Duration = Duration::from_secs(MAX_DAYS * 86_400);
/// How far ahead of now a time may lie (an end in a zone east of UTC, a clock slightly behind).
pub const MAX_AHEAD: Duration = Duration::from_secs(86_400);
/// The maximum as users write it, for messages and error answers.
pub const MAX_TEXT: &str = "400d";
/// How far back a report's `--since`/`--until` may lie, in days: reports read whole days from
/// the daily rollup, which keeps daily usage for ever; ten years bounds the period list.
pub const REPORT_MAX_DAYS: u64 = 3_650;
const REPORT_MAX_TEXT: &str = "3650d";

/// How far back a time may lie, and how users write that bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    window: Duration,
    pub text: &'static str,
}

/// Reads of buckets: history, backtest, export, the API's usage and the key page.
pub const BUCKETS: Reach = Reach {
    window: MAX_WINDOW,
    text: MAX_TEXT,
};
/// Reports, which read the daily rollup.
pub const REPORTS: Reach = Reach {
    window: Duration::from_secs(REPORT_MAX_DAYS * 86_400),
    text: REPORT_MAX_TEXT,
};

/// A time or window that cannot be read: each message names the value and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{0:?} is neither a duration (\"48h\", \"7d\"), a date (\"2026-11-26\") nor an RFC 3339 time (\"2026-11-26T14:00:00Z\")")]
    NotATime(String),
    #[error("{0:?} is not a duration such as \"6h\" or \"7d\"")]
    NotADuration(String),
    #[error("{0:?} is longer than the {1} keywatch reads at most; give a shorter window")]
    TooLong(String, &'static str),
    #[error("{0:?} lies more than {1} back; keywatch reads at most the last {1}")]
    TooOld(String, &'static str),
    #[error("{0:?} lies more than a day ahead of now")]
    TooFarAhead(String),
    #[error("the start ({since}) must be before the end ({until})")]
    Empty { since: String, until: String },
}

/// A point in time given as an RFC 3339 time, a date, or a duration before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    At(DateTime<Utc>),
    Ago(Duration),
    /// The start of a day: midnight in the zone the command reports in
    /// ([`TimeArg::resolve_in`]), in UTC where none applies.
    Date(chrono::NaiveDate),
}

impl TimeArg {
    /// The instant, relative to `now` (a date is its UTC midnight). Parsed values are bounded,
    /// so this never saturates in practice; an unbounded one saturates at the earliest
    /// representable time.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.resolve_in(now, chrono_tz::Tz::UTC)
    }

    /// As [`TimeArg::resolve`], a date being the first instant of that day in `zone` (the
    /// zone's midnight, or the first instant after it where a clock change skips midnight).
    pub fn resolve_in(self, now: DateTime<Utc>, zone: chrono_tz::Tz) -> DateTime<Utc> {
        match self {
            Self::At(t) => t,
            Self::Ago(d) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            Self::Date(d) => crate::period::local_midnight(zone, d),
        }
    }
}

/// A window length such as `"7d"`: at most [`MAX_WINDOW`], more than zero.
pub fn parse_window(s: &str) -> Result<Duration, WindowError> {
    let d = humantime::parse_duration(s).map_err(|_| WindowError::NotADuration(s.to_owned()))?;
    if d > MAX_WINDOW {
        return Err(WindowError::TooLong(s.to_owned(), MAX_TEXT));
    }
    if d.is_zero() {
        return Err(WindowError::NotADuration(s.to_owned()));
    }
    Ok(d)
}

/// A time as the CLI and the API take it for reading buckets, checked against the current time.
pub fn parse_time(s: &str) -> Result<TimeArg, WindowError> {
    parse_time_at(s, Utc::now())
}

/// A time as `report` and `/api/v1/report` take it (at most [`REPORT_MAX_DAYS`] back).
pub fn parse_report_time(s: &str) -> Result<TimeArg, WindowError> {
    parse_time_within(s, Utc::now(), REPORTS)
}

/// A time: a duration ago (at most [`MAX_WINDOW`]) or an RFC 3339 time at most
/// [`MAX_WINDOW`] before `now` and [`MAX_AHEAD`] after it.
pub fn parse_time_at(s: &str, now: DateTime<Utc>) -> Result<TimeArg, WindowError> {
    parse_time_within(s, now, BUCKETS)
}

/// A time at most `reach` before `now` and [`MAX_AHEAD`] after it.
pub fn parse_time_within(
    s: &str,
    now: DateTime<Utc>,
    reach: Reach,
) -> Result<TimeArg, WindowError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        let t = t.with_timezone(&Utc);
        let earliest = TimeArg::Ago(reach.window).resolve(now);
        let latest = chrono::Duration::from_std(MAX_AHEAD)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if t < earliest {
            return Err(WindowError::TooOld(s.to_owned(), reach.text));
        }
        if t > latest {
            return Err(WindowError::TooFarAhead(s.to_owned()));
        }
        return Ok(TimeArg::At(t));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        // Bounded as its UTC midnight, with a day's slack for zones either side of UTC.
        let midnight = d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let earliest = TimeArg::Ago(reach.window + MAX_AHEAD).resolve(now);
        return match midnight {
            Some(t) if t < earliest => Err(WindowError::TooOld(s.to_owned(), reach.text)),
            Some(t) if t > now + chrono::Duration::days(1) => {
                Err(WindowError::TooFarAhead(s.to_owned()))
            }
            Some(_) => Ok(TimeArg::Date(d)),
            None => Err(WindowError::NotATime(s.to_owned())),
        };
    }
    let d = humantime::parse_duration(s).map_err(|_| WindowError::NotATime(s.to_owned()))?;
    if d > reach.window {
        return Err(WindowError::TooLong(s.to_owned(), reach.text));
    }
    Ok(TimeArg::Ago(d))
}

/// `[since, until)` resolved against `now` (`until` defaults to now); refuses an empty range.
/// Both ends are bounded by [`parse_time_at`], so the range spans at most
/// [`MAX_WINDOW`] + [`MAX_AHEAD`].
pub fn range(
    since: TimeArg,
    until: Option<TimeArg>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), WindowError> {
    let since = since.resolve(now);
    let until = until.map_or(now, |u| u.resolve(now));
    if since >= until {
        return Err(WindowError::Empty {
            since: since.to_rfc3339(),
            until: until.to_rfc3339(),
        });
    }
    Ok((since, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_are_bounded_both_ways() {
        let at = |s| parse_time_at(s, now());
        assert_eq!(
            at("48h").unwrap().resolve(now()).to_rfc3339(),
            "2026-11-24T14:00:00+00:00"
        );
        assert!(at("400d").is_ok());
        assert_eq!(at("401d"), Err(WindowError::TooLong("401d".into(), "400d")));
        assert!(matches!(at("999999999d"), Err(WindowError::TooLong(..))));
        assert!(matches!(at("1000000y"), Err(WindowError::TooLong(..))));
        // Reports reach ten years back (the daily rollup), and no further.
        let report = |s| parse_time_within(s, now(), REPORTS);
        assert!(report("2020-01-01T00:00:00Z").is_ok());
        assert!(report("3650d").is_ok());
        assert_eq!(
            report("3651d"),
            Err(WindowError::TooLong("3651d".into(), "3650d"))
        );
        assert!(at("2025-11-01T00:00:00Z").is_ok());
        assert!(matches!(
            at("2020-01-01T00:00:00Z"),
            Err(WindowError::TooOld(..))
        ));
        assert!(matches!(
            at("9999-01-01T00:00:00Z"),
            Err(WindowError::TooFarAhead(_))
        ));
        assert!(at("2026-11-27T10:00:00+01:00").is_ok());
        let e = at("yesterday").unwrap_err().to_string();
        assert!(e.contains("yesterday") && e.contains("RFC 3339"), "{e}");
        assert!(at("401d").unwrap_err().to_string().contains("400d"));
    }

    #[test]
    fn windows_are_bounded_and_not_empty() {
        assert_eq!(parse_window("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_window("400d").is_ok());
        assert!(matches!(
            parse_window("1000000y"),
            Err(WindowError::TooLong(..))
        ));
        assert!(matches!(
            parse_window("0s"),
            Err(WindowError::NotADuration(_))
        ));
        assert!(matches!(
            parse_window("soon"),
            Err(WindowError::NotADuration(_))
        ));
    }

    #[test]
    fn a_date_is_the_start_of_that_day_in_the_zone_reported_in() {
        let t = parse_time_within("2026-11-25", now(), REPORTS).unwrap();
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            t.resolve_in(now(), berlin).to_rfc3339(),
            "2026-11-24T23:00:00+00:00"
        );
        assert_eq!(t.resolve(now()).to_rfc3339(), "2026-11-25T00:00:00+00:00");
        assert!(matches!(
            parse_time_within("1999-01-01", now(), BUCKETS),
            Err(WindowError::TooOld(..))
        ));
        assert!(matches!(
            parse_time_within("2026-13-01", now(), BUCKETS),
            Err(WindowError::NotATime(_))
        ));
    }

    #[test]
    fn ranges_must_not_be_empty() {
        let since = TimeArg::Ago(Duration::from_secs(3_600));
        assert!(range(since, None, now()).is_ok());
        assert!(matches!(
            range(since, Some(TimeArg::Ago(Duration::from_secs(7_200))), now()),
            Err(WindowError::Empty { .. })
        ));
    }
}
