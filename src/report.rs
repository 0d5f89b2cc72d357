//! Spend reports: periods in a time zone, usage rolled up by key, workspace, model or source,
//! with the change against the previous period and each group's share. Pure: the command loads
//! [`PeriodUsage`] from the store and prints what this returns.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{Datelike, Duration, NaiveDate};
use chrono_tz::Tz;

use crate::detect::budget::local_midnight;
use crate::prices::TokenCounts;
use crate::store::PeriodUsage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Dim {
    Source,
    Workspace,
    Key,
    Model,
}

/// One report period: its label and its bounds in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPeriod {
    /// `2026-11-26`, `2026-W48` or `2026-11`.
    pub label: String,
    pub start: i64,
    pub end: i64,
}

/// The first day of the period containing `date`.
pub fn period_start(kind: PeriodKind, date: NaiveDate) -> NaiveDate {
    match kind {
        PeriodKind::Day => date,
        PeriodKind::Week => date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
        PeriodKind::Month => date.with_day(1).unwrap_or(date),
    }
}

fn next_start(kind: PeriodKind, start: NaiveDate) -> NaiveDate {
    match kind {
        PeriodKind::Day => start + Duration::days(1),
        PeriodKind::Week => start + Duration::days(7),
        PeriodKind::Month => {
            let (y, m) = if start.month() == 12 {
                (start.year() + 1, 1)
            } else {
                (start.year(), start.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(start + Duration::days(31))
        }
    }
}

/// The periods from the one containing `first` to the one containing `last`, in `tz`.
pub fn periods(kind: PeriodKind, tz: Tz, first: NaiveDate, last: NaiveDate) -> Vec<ReportPeriod> {
    let mut out = Vec::new();
    let mut start = period_start(kind, first);
    while start <= last && out.len() < 10_000 {
        let next = next_start(kind, start);
        let label = match kind {
            PeriodKind::Day => start.format("%Y-%m-%d").to_string(),
            PeriodKind::Week => {
                let w = start.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            PeriodKind::Month => start.format("%Y-%m").to_string(),
        };
        out.push(ReportPeriod {
            label,
            start: local_midnight(tz, start).timestamp(),
            end: local_midnight(tz, next).timestamp(),
        });
        start = next;
    }
    out
}

/// One report row: a group in a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub period: String,
    /// (column, value) for each grouping dimension, in the order asked.
    pub group: Group,
    pub tokens: TokenCounts,
    pub requests: Option<i64>,
    pub cost_usd: f64,
    pub billed_usd: Option<f64>,
    /// Against the same group in the previous period (`None` when it had no usage).
    pub change_usd: Option<f64>,
    pub change_pct: Option<f64>,
    /// Percent of the period's estimated total.
    pub share_pct: f64,
    pub unpriced_tokens: i64,
}

/// A group's (column, value) pairs.
type Group = Vec<(&'static str, String)>;

/// What the rollup needs to know about a key.
pub struct KeyFacts {
    pub name: Option<String>,
    pub workspace: Option<String>,
}

#[derive(Default, Clone)]
struct Sums {
    tokens: TokenCounts,
    requests: Option<i64>,
    cost: f64,
    billed: Option<f64>,
    unpriced: i64,
}

fn group_of(
    dims: &[Dim],
    source: &str,
    key: &str,
    model: Option<&str>,
    facts: &dyn Fn(&str, &str) -> KeyFacts,
) -> Group {
    let f = facts(source, key);
    let mut g = Vec::new();
    for d in dims {
        match d {
            Dim::Source => g.push(("source", source.to_owned())),
            Dim::Workspace => g.push((
                "workspace_id",
                f.workspace.clone().unwrap_or_else(|| "default".to_owned()),
            )),
            Dim::Key => {
                g.push(("key_id", key.to_owned()));
                g.push(("key_name", f.name.clone().unwrap_or_default()));
            }
            Dim::Model => g.push(("model", model.unwrap_or("(billed)").to_owned())),
        }
    }
    g
}

/// Rolls usage up by `dims`. `periods[0]` is only the baseline for the change column; rows are
/// returned for the others, largest cost first within each period.
pub fn rollup(
    periods: &[ReportPeriod],
    usage: &[PeriodUsage],
    billed: &[(usize, String, String, f64)],
    dims: &[Dim],
    facts: &dyn Fn(&str, &str) -> KeyFacts,
) -> Vec<Row> {
    let mut sums: BTreeMap<(usize, Group), Sums> = BTreeMap::new();
    for u in usage {
        let s = sums
            .entry((
                u.period,
                group_of(dims, &u.source, &u.key_id, Some(&u.model), facts),
            ))
            .or_default();
        let t = &mut s.tokens;
        t.uncached_input += u.tokens.uncached_input;
        t.cache_read += u.tokens.cache_read;
        t.cache_write_5m += u.tokens.cache_write_5m;
        t.cache_write_1h += u.tokens.cache_write_1h;
        t.output += u.tokens.output;
        if let Some(r) = u.requests {
            s.requests = Some(s.requests.unwrap_or(0) + r);
        }
        s.cost += u.cost_usd;
        s.unpriced += u.unpriced_tokens;
    }
    // Billed cost has no model: it joins the groups only when they are not split by model.
    if !dims.contains(&Dim::Model) {
        for (period, source, key, usd) in billed {
            let s = sums
                .entry((*period, group_of(dims, source, key, None, facts)))
                .or_default();
            s.billed = Some(s.billed.unwrap_or(0.0) + usd);
        }
    }
    let mut totals = vec![0.0; periods.len()];
    for ((p, _), s) in &sums {
        totals[*p] += s.cost;
    }
    let mut rows: Vec<Row> = sums
        .iter()
        .filter(|((p, _), _)| *p > 0)
        .map(|((p, group), s)| {
            let previous = sums.get(&(p - 1, group.clone())).map(|s| s.cost);
            Row {
                period: periods[*p].label.clone(),
                group: group.clone(),
                tokens: s.tokens,
                requests: s.requests,
                cost_usd: s.cost,
                billed_usd: s.billed,
                change_usd: previous.map(|prev| s.cost - prev),
                change_pct: previous
                    .filter(|prev| *prev > 0.0)
                    .map(|prev| (s.cost - prev) / prev * 100.0),
                share_pct: if totals[*p] > 0.0 {
                    s.cost / totals[*p] * 100.0
                } else {
                    0.0
                },
                unpriced_tokens: s.unpriced,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        a.period
            .cmp(&b.period)
            .then(b.cost_usd.total_cmp(&a.cost_usd))
    });
    rows
}

/// The rows as CSV with a header: plain numbers, no currency symbols.
pub fn to_csv(rows: &[Row], by: &[Dim]) -> String {
    let mut columns: Vec<&str> = vec!["period"];
    for d in by {
        match d {
            Dim::Source => columns.push("source"),
            Dim::Workspace => columns.push("workspace_id"),
            Dim::Key => columns.extend(["key_id", "key_name"]),
            Dim::Model => columns.push("model"),
        }
    }
    columns.extend([
        "uncached_input_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "cache_read_input_tokens",
        "output_tokens",
        "requests",
        "cost_usd",
        "billed_usd",
        "change_usd",
        "change_pct",
        "share_pct",
        "unpriced_tokens",
    ]);
    let mut o = columns.join(",") + "\n";
    for r in rows {
        let mut f: Vec<String> = vec![r.period.clone()];
        f.extend(r.group.iter().map(|(_, v)| csv_field(v)));
        let t = &r.tokens;
        f.extend([
            t.uncached_input.to_string(),
            t.cache_write_5m.to_string(),
            t.cache_write_1h.to_string(),
            t.cache_read.to_string(),
            t.output.to_string(),
            r.requests.map(|n| n.to_string()).unwrap_or_default(),
            format!("{:.6}", r.cost_usd),
            fmt_opt(r.billed_usd, 6),
            fmt_opt(r.change_usd, 6),
            fmt_opt(r.change_pct, 2),
            format!("{:.2}", r.share_pct),
            r.unpriced_tokens.to_string(),
        ]);
        let _ = writeln!(o, "{}", f.join(","));
    }
    o
}

/// An optional number with `decimals` decimals, empty when absent.
pub fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}")).unwrap_or_default()
}

/// A CSV text field, quoted and neutralised against formula injection ([`crate::csv::text`]).
pub fn csv_field(s: &str) -> String {
    crate::csv::text(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_months_follow_the_zone() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let weeks = periods(PeriodKind::Week, tz, d("2026-11-26"), d("2026-11-30"));
        assert_eq!(
            weeks.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(),
            ["2026-W48", "2026-W49"]
        );
        assert_eq!(
            weeks[0].start,
            local_midnight(tz, d("2026-11-23")).timestamp()
        );
        let months = periods(PeriodKind::Month, tz, d("2026-10-15"), d("2026-10-31"));
        // October 2026 in Berlin has 31 days and one 25-hour day (DST ends on the 25th).
        assert_eq!(months[0].end - months[0].start, 31 * 86_400 + 3_600);
    }
}
