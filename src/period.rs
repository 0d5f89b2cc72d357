//! Calendar periods — a day, a week (Monday to Sunday) or a month of an IANA time zone — as UTC
//! instants. The one period computation behind reports (CLI and API), digests, the dashboard
//! and budgets: the period containing an instant, the periods before and after it, the last N
//! periods ending with the current one. DST-correct: a period starts at the first instant of
//! its first local day (local midnight, or the first instant after a DST gap at midnight).

use chrono::{DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// At most this many periods are listed at once; a longer span keeps the latest ones.
pub const MAX_PERIODS: usize = 10_000;

/// Day, week or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
}

impl PeriodKind {
    /// `daily`, `weekly`, `monthly`: how budgets and digests name the period.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "daily",
            Self::Week => "weekly",
            Self::Month => "monthly",
        }
    }

    /// `day`, `week`, `month`.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// `day`, `week` or `month` as a user writes it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    /// How many periods a report shows by default: 7 days, 4 weeks or 3 months.
    /// The most periods one report spans (`--last`, `last=`): 400 days, 5 years of weeks,
    /// 10 years of months.
    pub fn max_last(self) -> u32 {
        match self {
            Self::Day => 400,
            Self::Week => 260,
            Self::Month => 120,
        }
    }

    pub fn default_last(self) -> u32 {
        match self {
            Self::Day => 7,
            Self::Week => 4,
            Self::Month => 3,
        }
    }

    /// The first day of the period containing `date`.
    pub fn first_day(self, date: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => date,
            Self::Week => date
                .checked_sub_signed(Duration::days(i64::from(
                    date.weekday().num_days_from_monday(),
                )))
                .unwrap_or(date),
            Self::Month => date.with_day(1).unwrap_or(date),
        }
    }

    /// The first day of the period after the one starting on `first` (`None` past chrono's
    /// last date).
    fn next_first_day(self, first: NaiveDate) -> Option<NaiveDate> {
        match self {
            Self::Day => first.checked_add_signed(Duration::days(1)),
            Self::Week => first.checked_add_signed(Duration::days(7)),
            Self::Month => first.checked_add_months(Months::new(1)),
        }
    }

    /// The first day of the period before the one starting on `first`.
    fn previous_first_day(self, first: NaiveDate) -> Option<NaiveDate> {
        match self {
            Self::Day => first.checked_sub_signed(Duration::days(1)),
            Self::Week => first.checked_sub_signed(Duration::days(7)),
            Self::Month => first.checked_sub_months(Months::new(1)),
        }
    }
}

/// The UTC instant of local midnight starting `date` in `tz`. Where midnight does not exist
/// (a DST gap at midnight), the first instant of the day that does; where it exists twice,
/// the first.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    local_instant(tz, date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// The UTC instant of the local time `t` in `tz`: the first where it happens twice (a DST
/// fall-back), the first instant after the gap where it does not happen (spring-forward).
pub fn local_instant(tz: Tz, t: chrono::NaiveDateTime) -> DateTime<Utc> {
    let mut t = t;
    for _ in 0..4 {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(d) => return d.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => match t.checked_add_signed(Duration::minutes(30)) {
                Some(later) => t = later,
                None => break,
            },
        }
    }
    Utc.from_utc_datetime(&t)
}

/// One period of a zone: its label and its bounds, `[start, end)` in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    pub zone: Tz,
    /// The local date of its first day.
    pub first_day: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `2026-11-26`, `2026-W48` (ISO week) or `2026-11`.
    pub label: String,
}

impl Period {
    /// The period of `kind` containing `instant` in `zone`.
    pub fn containing(kind: PeriodKind, zone: Tz, instant: DateTime<Utc>) -> Self {
        Self::starting(kind, zone, instant.with_timezone(&zone).date_naive())
    }

    /// The period of `kind` containing the local date `day`.
    pub fn starting(kind: PeriodKind, zone: Tz, day: NaiveDate) -> Self {
        let first = kind.first_day(day);
        let next = kind
            .next_first_day(first)
            .unwrap_or_else(|| first.succ_opt().unwrap_or(first));
        let label = match kind {
            PeriodKind::Day => first.format("%Y-%m-%d").to_string(),
            PeriodKind::Week => {
                let w = first.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            PeriodKind::Month => first.format("%Y-%m").to_string(),
        };
        Self {
            kind,
            zone,
            first_day: first,
            start: local_midnight(zone, first),
            end: local_midnight(zone, next),
            label,
        }
    }

    /// The period right before this one.
    pub fn previous(&self) -> Option<Self> {
        self.kind
            .previous_first_day(self.first_day)
            .map(|d| Self::starting(self.kind, self.zone, d))
    }

    /// The period right after this one.
    pub fn next(&self) -> Option<Self> {
        self.kind
            .next_first_day(self.first_day)
            .map(|d| Self::starting(self.kind, self.zone, d))
    }

    /// `[start, end)` as Unix seconds.
    pub fn span(&self) -> (i64, i64) {
        (self.start.timestamp(), self.end.timestamp())
    }

    /// Whether the period has ended at `now`.
    pub fn closed_at(&self, now: DateTime<Utc>) -> bool {
        self.end <= now
    }
}

/// Exactly `n` periods (at least one, at most [`MAX_PERIODS`]) ending with the one containing
/// `now`, oldest first.
pub fn last_n(kind: PeriodKind, zone: Tz, now: DateTime<Utc>, n: u32) -> Vec<Period> {
    let n = usize::try_from(n)
        .unwrap_or(MAX_PERIODS)
        .clamp(1, MAX_PERIODS);
    let mut out = vec![Period::containing(kind, zone, now)];
    while out.len() < n {
        match out.last().and_then(Period::previous) {
            Some(p) => out.push(p),
            None => break,
        }
    }
    out.reverse();
    out
}

/// The periods from the one containing `first` to the one containing `last` (instants), oldest
/// first; the latest [`MAX_PERIODS`] when there are more. Empty when `first` is after `last`.
pub fn between(
    kind: PeriodKind,
    zone: Tz,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
) -> Vec<Period> {
    periods(
        kind,
        zone,
        first.with_timezone(&zone).date_naive(),
        last.with_timezone(&zone).date_naive(),
    )
}

/// The periods from the one containing the local date `first` to the one containing `last`,
/// oldest first; the latest [`MAX_PERIODS`] when there are more.
pub fn periods(kind: PeriodKind, zone: Tz, first: NaiveDate, last: NaiveDate) -> Vec<Period> {
    if first > last {
        return Vec::new();
    }
    let start = kind.first_day(first);
    let mut out = vec![Period::starting(kind, zone, last)];
    while out.len() < MAX_PERIODS {
        match out.last().and_then(Period::previous) {
            Some(p) if p.first_day >= start => out.push(p),
            _ => break,
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn labels(list: &[Period]) -> Vec<&str> {
        list.iter().map(|p| p.label.as_str()).collect()
    }

    #[test]
    fn the_last_n_months_are_exactly_n_whatever_the_day() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        for now in [
            "2026-12-01T00:30:00+01:00",
            "2026-12-08T12:00:00+01:00",
            "2026-12-31T23:59:00+01:00",
            "2027-03-31T12:00:00+02:00",
        ] {
            let now = utc(now);
            for n in 1..=14 {
                let list = last_n(PeriodKind::Month, tz, now, n);
                assert_eq!(list.len(), n as usize, "{now} --last {n}");
                assert_eq!(
                    list.last().unwrap(),
                    &Period::containing(PeriodKind::Month, tz, now)
                );
                for w in list.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "periods tile time");
                }
            }
        }
        let list = last_n(PeriodKind::Month, tz, utc("2027-03-31T12:00:00+02:00"), 3);
        assert_eq!(labels(&list), ["2027-01", "2027-02", "2027-03"]);
    }

    #[test]
    fn weeks_start_on_monday_and_carry_iso_labels() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let weeks = periods(PeriodKind::Week, tz, d("2026-11-26"), d("2026-11-30"));
        assert_eq!(labels(&weeks), ["2026-W48", "2026-W49"]);
        assert_eq!(weeks[0].start, local_midnight(tz, d("2026-11-23")));
        // 2027-01-01 is a Friday of ISO week 2026-W53.
        let w = Period::containing(PeriodKind::Week, tz, utc("2027-01-01T12:00:00Z"));
        assert_eq!(w.label, "2026-W53");
    }

    #[test]
    fn periods_follow_dst() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // October 2026 in Berlin: 31 days and one 25-hour day (DST ends on the 25th).
        let m = Period::containing(PeriodKind::Month, tz, utc("2026-10-15T00:00:00Z"));
        assert_eq!(m.end - m.start, Duration::hours(31 * 24 + 1));
        let day = Period::containing(PeriodKind::Day, tz, utc("2026-03-29T12:00:00Z"));
        assert_eq!(day.span().1 - day.span().0, 23 * 3_600);
        // America/Santiago springs forward at 24:00 -> 01:00 (2026-09-06).
        let tz: Tz = "America/Santiago".parse().unwrap();
        let day = Period::containing(PeriodKind::Day, tz, utc("2026-09-06T12:00:00Z"));
        assert_eq!(
            day.start.with_timezone(&tz).format("%H:%M").to_string(),
            "01:00"
        );
        assert_eq!(day.previous().unwrap().end, day.start);
    }

    #[test]
    fn huge_spans_are_capped_and_extremes_do_not_panic() {
        let list = between(
            PeriodKind::Day,
            Tz::UTC,
            DateTime::<Utc>::MIN_UTC,
            Utc::now(),
        );
        assert_eq!(list.len(), MAX_PERIODS);
        assert_eq!(
            list.last().unwrap(),
            &Period::containing(PeriodKind::Day, Tz::UTC, Utc::now())
        );
        let _ = last_n(
            PeriodKind::Month,
            Tz::UTC,
            DateTime::<Utc>::MIN_UTC,
            u32::MAX,
        );
        let _ = Period::containing(PeriodKind::Month, Tz::UTC, DateTime::<Utc>::MAX_UTC).next();
        assert!(between(
            PeriodKind::Day,
            Tz::UTC,
            Utc::now(),
            DateTime::<Utc>::MIN_UTC
        )
        .is_empty());
    }
}
