//! Spend reports: periods in a time zone, usage rolled up by key, workspace, model or source,
//! with the change against the previous period and each group's share. [`load`] reads what a
//! [`Request`] asks for, for the CLI and the API alike; [`rollup`] is the pure part.

mod rows;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

pub use crate::period::{periods, Period, PeriodKind};
use crate::store::{Store, StoreError};
pub use rows::{
    csv_field, fmt_opt, input_tokens, rollup, sum_usd, to_csv, Basis, Figures, Group, KeyFacts, Row,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Dim {
    Source,
    Workspace,
    Key,
    Model,
    /// The price class: service tier, then `/us` (US-only inference) and `/fast` (fast mode)
    /// where they apply.
    Tier,
}

impl Dim {
    /// `source`, `workspace`, `key`, `model` or `tier` as a user writes it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "source" => Some(Self::Source),
            "workspace" => Some(Self::Workspace),
            "key" => Some(Self::Key),
            "model" => Some(Self::Model),
            "tier" => Some(Self::Tier),
            _ => None,
        }
    }
}

/// What a report covers: the same for `keywatch report` and `/api/v1/report`.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: PeriodKind,
    pub zone: Tz,
    /// The first period is the one containing this instant.
    pub since: Option<DateTime<Utc>>,
    /// End (exclusive): the last period is the one containing the instant before it; default
    /// now.
    pub until: Option<DateTime<Utc>>,
    /// Exactly this many periods ending with the last one (default
    /// [`PeriodKind::default_last`]); ignored with `since`.
    pub last: Option<u32>,
    pub by: Vec<Dim>,
}

/// `--last N` within 1 and the kind's maximum; the error names both.
pub fn check_last(kind: PeriodKind, n: u32) -> Result<(), String> {
    let max = kind.max_last();
    if (1..=max).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "--last {n}: give 1 to {max} {}s (the most one report spans)",
            kind.noun()
        ))
    }
}

impl Request {
    /// The periods reported, oldest first, preceded by one more: the baseline of the change
    /// column. Err when `since` is not before `until`.
    pub fn periods(&self, now: DateTime<Utc>) -> Result<Vec<Period>, String> {
        let until = self.until.unwrap_or(now);
        // The end is exclusive: the last period holds the second before it.
        let last_instant = until
            .checked_sub_signed(Duration::seconds(1))
            .unwrap_or(until);
        let mut list = match self.since {
            Some(since) if since >= until => {
                return Err("--since must be before --until".to_owned());
            }
            Some(since) => crate::period::between(self.kind, self.zone, since, last_instant),
            None => {
                let n = self.last.unwrap_or_else(|| self.kind.default_last());
                check_last(self.kind, n)?;
                crate::period::last_n(self.kind, self.zone, last_instant, n)
            }
        };
        if let Some(before) = list.first().and_then(Period::previous) {
            list.insert(0, before);
        }
        Ok(list)
    }

    /// The grouping, sorted and without repeats.
    pub fn dims(&self) -> Vec<Dim> {
        let mut by = self.by.clone();
        by.sort();
        by.dedup();
        by
    }
}

/// A report read from the store: the periods shown (without the baseline) and their rows.
pub struct Report {
    pub periods: Vec<Period>,
    pub rows: Vec<Row>,
    pub dims: Vec<Dim>,
}

/// Reads and rolls up the report `req` asks for, at `now`.
pub async fn load(
    store: &Store,
    width_secs: i64,
    req: &Request,
    now: DateTime<Utc>,
) -> Result<Result<Report, String>, StoreError> {
    let list = match req.periods(now) {
        Ok(list) => list,
        Err(e) => return Ok(Err(e)),
    };
    let spans: Vec<(i64, i64)> = list.iter().map(Period::span).collect();
    let dims = req.dims();
    let mut figures = read(store, width_secs, req.zone, &spans, &dims, now).await?;
    // A period not over yet is spend to date: its change is against the period before up to
    // the same point, read as one more index after the periods.
    let open = list.iter().rposition(|p| p.start <= now && now < p.end);
    let mut like_for_like = None;
    if let Some(p) = open.filter(|p| *p > 0) {
        let before = &list[p - 1];
        let end = same_point(req.zone, now, &list[p], before);
        let index = list.len();
        for part in whole_days_and_rest(req.zone, before.start, end) {
            let more = read(store, width_secs, req.zone, &[part], &dims, now).await?;
            figures.absorb(more, index);
        }
        like_for_like = Some((p, index));
    }
    let keys: std::collections::HashMap<(String, String), (Option<String>, Option<String>)> = store
        .all_keys()
        .await?
        .into_iter()
        .map(|k| ((k.source, k.key_id), (k.name, k.workspace_id)))
        .collect();
    let facts = |source: &str, key: &str| {
        let (name, workspace) = keys
            .get(&(source.to_owned(), key.to_owned()))
            .cloned()
            .unwrap_or_default();
        KeyFacts { name, workspace }
    };
    let mut rows = rollup(&list, &figures, &dims, &facts, like_for_like);
    for r in &mut rows {
        r.partial = open.is_some_and(|p| list[p].label == r.period);
    }
    Ok(Ok(Report {
        periods: list.into_iter().skip(1).collect(),
        rows,
        dims,
    }))
}

/// Usage per period of `spans` (with its price-class splits when grouped `by` tier) and,
/// unless split by model or tier, each key's best known spend (the bill for closed UTC days it
/// covers, the estimate for the rest): the same figures budgets judge. The spend of each span
/// is read side by side on the pool's connections.
pub async fn read(
    store: &Store,
    width_secs: i64,
    zone: Tz,
    spans: &[(i64, i64)],
    by: &[Dim],
    now: DateTime<Utc>,
) -> Result<Figures, StoreError> {
    let usage = store.usage_by_period(width_secs, zone, spans).await?;
    let splits = if by.contains(&Dim::Tier) {
        Some(store.splits_by_period(width_secs, spans).await?)
    } else {
        None
    };
    // Cost reports carry neither model nor tier.
    if by.contains(&Dim::Model) || by.contains(&Dim::Tier) {
        return Ok(Figures {
            usage,
            spend: None,
            splits,
        });
    }
    let today = now.timestamp().div_euclid(86_400) * 86_400;
    let reads = spans.iter().enumerate().map(|(i, &(from, to))| async move {
        let spend = store
            .spend_and_basis_by_key(width_secs, zone, from, to, today)
            .await?;
        Ok::<_, StoreError>(spend.into_iter().map(move |(s, k, v)| (i, s, k, v)))
    });
    let spend = futures_util::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .collect();
    Ok(Figures {
        usage,
        spend: Some(spend),
        splits,
    })
}

/// The instant as far into `before` as `now` is into `current`, in local wall-clock time (so
/// a DST change in either period does not move it by an hour), never past `before`'s end.
fn same_point(zone: Tz, now: DateTime<Utc>, current: &Period, before: &Period) -> DateTime<Utc> {
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).naive_local();
    let elapsed = local(now) - local(current.start);
    local(before.start)
        .checked_add_signed(elapsed)
        .map_or(before.end, |t| crate::period::local_instant(zone, t))
        .clamp(before.start, before.end)
}

/// `[from, to)` as whole local days (read from the daily rollup) and the hours after the last
/// local midnight (read from buckets), leaving out empty parts.
fn whole_days_and_rest(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(i64, i64)> {
    let midnight = crate::period::local_midnight(zone, to.with_timezone(&zone).date_naive());
    let cut = midnight.clamp(from, to);
    [(from, cut), (cut, to)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .map(|(a, b)| (a.timestamp(), b.timestamp()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn like_for_like_is_the_same_wall_clock_time_across_a_dst_change() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Monday 2026-03-30 10:00 in Berlin (08:00 UTC); Sunday the 29th lost an hour.
        let now = Utc.with_ymd_and_hms(2026, 3, 30, 8, 0, 0).unwrap();
        let today = Period::containing(PeriodKind::Day, berlin, now);
        let sunday = today.previous().unwrap();
        assert_eq!(
            same_point(berlin, now, &today, &sunday),
            Utc.with_ymd_and_hms(2026, 3, 29, 8, 0, 0).unwrap(),
            "Sunday 10:00 CEST, not 11:00"
        );
        // The 31st of a month against a 30-day month: the whole month before.
        let now = Utc.with_ymd_and_hms(2026, 12, 31, 12, 0, 0).unwrap();
        let december = Period::containing(PeriodKind::Month, Tz::UTC, now);
        let november = december.previous().unwrap();
        assert_eq!(same_point(Tz::UTC, now, &december, &november), november.end);
    }
}
