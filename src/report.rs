//! Spend reports: periods in a time zone, usage rolled up by key, workspace, model or source,
//! with the change against the previous period and each group's share. [`load`] reads what a
//! [`Request`] asks for, for the CLI and the API alike; [`rollup`] is the pure part.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::ser::{Serialize, SerializeMap, Serializer};

pub use crate::period::{periods, Period, PeriodKind};
use crate::prices::TokenCounts;
use crate::store::{PeriodUsage, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Dim {
    Source,
    Workspace,
    Key,
    Model,
}

impl Dim {
    /// `source`, `workspace`, `key` or `model` as a user writes it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "source" => Some(Self::Source),
            "workspace" => Some(Self::Workspace),
            "key" => Some(Self::Key),
            "model" => Some(Self::Model),
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
    let usage = store.usage_by_period(width_secs, req.zone, &spans).await?;
    let billed = store.billed_by_period(&spans).await?;
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
    let dims = req.dims();
    let mut rows = rollup(&list, &usage, &billed, &dims, &facts);
    // A period not over yet is spend to date: compared with whole periods, its change says
    // little, so it is marked.
    for r in &mut rows {
        r.partial = list.iter().any(|p| p.label == r.period && p.end > now);
    }
    Ok(Ok(Report {
        periods: list.into_iter().skip(1).collect(),
        rows,
        dims,
    }))
}

/// A sum of USD amounts: 0.00 (never -0.00) when there are none.
pub fn sum_usd(amounts: impl IntoIterator<Item = f64>) -> f64 {
    amounts.into_iter().fold(0.0, |a, b| a + b)
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
    /// The period is not over yet: its figures are to date.
    pub partial: bool,
}

impl Row {
    /// What `cost_usd` is: `estimated` from list prices, or `floor` where tokens on a model
    /// without a price are left out of it.
    pub fn basis(&self) -> &'static str {
        if self.unpriced_tokens > 0 {
            "floor"
        } else {
            "estimated"
        }
    }
}

/// One object per row, the same for `report --format json` and `/api/v1/report`: `period`, the
/// group's columns, the token classes (and their input sum), requests, estimated and billed USD,
/// change, share and unpriced tokens.
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = &self.tokens;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("period", &self.period)?;
        for (k, v) in &self.group {
            m.serialize_entry(k, v)?;
        }
        let input = t
            .uncached_input
            .saturating_add(t.cache_read)
            .saturating_add(t.cache_write_5m)
            .saturating_add(t.cache_write_1h);
        m.serialize_entry("input_tokens", &input)?;
        for (name, count) in t.named() {
            m.serialize_entry(name, &count)?;
        }
        m.serialize_entry("requests", &self.requests)?;
        m.serialize_entry("cost_usd", &self.cost_usd)?;
        m.serialize_entry("billed_usd", &self.billed_usd)?;
        m.serialize_entry("change_usd", &self.change_usd)?;
        m.serialize_entry("change_pct", &self.change_pct)?;
        m.serialize_entry("share_pct", &self.share_pct)?;
        m.serialize_entry("unpriced_tokens", &self.unpriced_tokens)?;
        m.serialize_entry("cost_basis", self.basis())?;
        m.serialize_entry("currency", "USD")?;
        m.serialize_entry("partial", &self.partial)?;
        m.end()
    }
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
    periods: &[Period],
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
        // Saturating: provider counts are bounded at decode, but a sum must never abort.
        t.uncached_input = t.uncached_input.saturating_add(u.tokens.uncached_input);
        t.cache_read = t.cache_read.saturating_add(u.tokens.cache_read);
        t.cache_write_5m = t.cache_write_5m.saturating_add(u.tokens.cache_write_5m);
        t.cache_write_1h = t.cache_write_1h.saturating_add(u.tokens.cache_write_1h);
        t.output = t.output.saturating_add(u.tokens.output);
        if let Some(r) = u.requests {
            s.requests = Some(s.requests.unwrap_or(0).saturating_add(r));
        }
        s.cost += u.cost_usd;
        s.unpriced = s.unpriced.saturating_add(u.unpriced_tokens);
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
                partial: false,
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
    columns.extend(TokenCounts::NAMES);
    columns.extend([
        "requests",
        "cost_usd",
        "billed_usd",
        "change_usd",
        "change_pct",
        "share_pct",
        "unpriced_tokens",
        "cost_basis",
        "currency",
        "partial",
    ]);
    let mut o = columns.join(",") + "\n";
    for r in rows {
        let mut f: Vec<String> = vec![r.period.clone()];
        f.extend(r.group.iter().map(|(_, v)| csv_field(v)));
        let t = &r.tokens;
        f.extend(t.values().map(|v| v.to_string()));
        f.extend([
            r.requests.map(|n| n.to_string()).unwrap_or_default(),
            format!("{:.6}", r.cost_usd),
            fmt_opt(r.billed_usd, 6),
            fmt_opt(r.change_usd, 6),
            fmt_opt(r.change_pct, 2),
            format!("{:.2}", r.share_pct),
            r.unpriced_tokens.to_string(),
            r.basis().to_owned(),
            "USD".to_owned(),
            r.partial.to_string(),
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
    fn a_row_serializes_its_group_and_every_figure() {
        let row = Row {
            period: "2026-11".into(),
            group: vec![("key_id", "apikey_a".into()), ("key_name", "alpha".into())],
            tokens: TokenCounts {
                uncached_input: 1,
                cache_read: 2,
                cache_write_5m: 3,
                cache_write_1h: 4,
                output: 5,
            },
            requests: None,
            cost_usd: 1.5,
            billed_usd: None,
            change_usd: Some(-0.5),
            change_pct: None,
            share_pct: 100.0,
            unpriced_tokens: 0,
            partial: false,
        };
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(v["key_id"], "apikey_a");
        assert_eq!(v["key_name"], "alpha");
        assert_eq!(v["input_tokens"], 10);
        assert_eq!(v["cache_write_1h_tokens"], 4);
        assert_eq!(v["billed_usd"], serde_json::Value::Null);
        assert_eq!(v["change_usd"], -0.5);
    }

    #[test]
    fn an_empty_sum_is_positive_zero() {
        assert_eq!(format!("{:.2}", sum_usd([])), "0.00");
        assert_eq!(format!("{:.2}", sum_usd([-0.0])), "0.00");
    }
}
