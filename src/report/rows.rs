//! Report rows: the pure rollup of usage and each key's best known spend into groups and
//! periods, with the change against the period before (like for like while a period is not
//! over), and the row as JSON and CSV.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{Dim, Period};
use crate::prices::TokenCounts;
use crate::store::{PeriodUsage, Spend};

/// A sum of USD amounts: 0.00 (never -0.00) when there are none.
pub fn sum_usd(amounts: impl IntoIterator<Item = f64>) -> f64 {
    amounts.into_iter().fold(0.0, |a, b| a + b)
}

/// What a row's `spend_usd` rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Every dollar is from the provider's cost report (closed UTC days it billed per key).
    Billed,
    /// Some or all of it is keywatch's estimate from list prices (the rest, if any, billed).
    Estimated,
    /// An estimate that leaves out tokens on models without a price: the spend is at least this.
    Floor,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Billed => "billed",
            Self::Estimated => "estimated",
            Self::Floor => "floor",
        }
    }
}

/// What a rollup sums, per index into its periods.
#[derive(Debug, Default)]
pub struct Figures {
    pub usage: Vec<PeriodUsage>,
    /// Each key's best known spend per period; `None` when reports cannot use the bill (split
    /// by model or tier: cost reports carry neither), and the estimate is the spend.
    pub spend: Option<Vec<(usize, String, String, Spend)>>,
    /// The parts of `usage` at a price class other than standard, with the class; read only
    /// when split by tier.
    pub splits: Option<Vec<(PeriodUsage, String)>>,
}

impl Figures {
    /// Adds `other`'s rows, all as period `index`.
    pub fn absorb(&mut self, other: Figures, index: usize) {
        self.usage.extend(other.usage.into_iter().map(|mut u| {
            u.period = index;
            u
        }));
        if let (Some(mine), Some(theirs)) = (self.spend.as_mut(), other.spend) {
            mine.extend(theirs.into_iter().map(|(_, s, k, v)| (index, s, k, v)));
        }
        if let (Some(mine), Some(theirs)) = (self.splits.as_mut(), other.splits) {
            mine.extend(theirs.into_iter().map(|(mut u, class)| {
                u.period = index;
                (u, class)
            }));
        }
    }
}

/// One report row: a group in a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub period: String,
    /// (column, value) for each grouping dimension, in the order asked.
    pub group: Group,
    pub tokens: TokenCounts,
    pub requests: Option<i64>,
    /// The best known cost: billed where the provider billed the key's closed UTC days,
    /// estimated for the rest. See `basis`.
    pub spend_usd: f64,
    pub basis: Basis,
    /// keywatch's estimate from list prices, for every day.
    pub cost_usd: f64,
    /// The part of `spend_usd` from the provider's bill, when any.
    pub billed_usd: Option<f64>,
    /// `spend_usd` against the same group in the period before (`None` when it had no usage);
    /// while the period is not over, against the period before up to the same point.
    pub change_usd: Option<f64>,
    pub change_pct: Option<f64>,
    /// Percent of the period's total spend.
    pub share_pct: f64,
    pub unpriced_tokens: i64,
    /// The period is not over yet: its figures are to date.
    pub partial: bool,
}

/// One object per row, the same for `report --format json` and `/api/v1/report`: `period`, the
/// group's columns, the token classes (and their input sum), requests, the spend and its basis,
/// the estimate and the billed part, change, share and unpriced tokens.
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = &self.tokens;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("period", &self.period)?;
        for (k, v) in &self.group {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry("input_tokens", &input_tokens(t))?;
        for (name, count) in t.named() {
            m.serialize_entry(name, &count)?;
        }
        m.serialize_entry("requests", &self.requests)?;
        m.serialize_entry("spend_usd", &self.spend_usd)?;
        m.serialize_entry("cost_basis", self.basis.as_str())?;
        m.serialize_entry("currency", "USD")?;
        m.serialize_entry("cost_usd", &self.cost_usd)?;
        m.serialize_entry("billed_usd", &self.billed_usd)?;
        m.serialize_entry("change_usd", &self.change_usd)?;
        m.serialize_entry("change_pct", &self.change_pct)?;
        m.serialize_entry("share_pct", &self.share_pct)?;
        m.serialize_entry("unpriced_tokens", &self.unpriced_tokens)?;
        m.serialize_entry("partial", &self.partial)?;
        m.end()
    }
}

/// Input tokens of every class.
pub fn input_tokens(t: &TokenCounts) -> i64 {
    t.uncached_input
        .saturating_add(t.cache_read)
        .saturating_add(t.cache_write_5m)
        .saturating_add(t.cache_write_1h)
}

/// A group's (column, value) pairs.
pub type Group = Vec<(&'static str, String)>;

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
    /// Best known spend, when the figures carry it.
    spend: Option<f64>,
    billed: Option<f64>,
    estimated_part: f64,
    unpriced: i64,
}

impl Sums {
    fn spend(&self) -> f64 {
        self.spend.unwrap_or(self.cost)
    }

    fn basis(&self) -> Basis {
        // A thousandth of a cent of estimate left is rounding in the bill's attribution.
        if self.billed.is_some() && self.estimated_part.abs() < 1e-5 {
            Basis::Billed
        } else if self.unpriced > 0 {
            Basis::Floor
        } else {
            Basis::Estimated
        }
    }
}

fn group_of(
    dims: &[Dim],
    source: &str,
    key: &str,
    (model, tier): (Option<&str>, &str),
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
            Dim::Tier => g.push(("tier", tier.to_owned())),
        }
    }
    g
}

/// The usage rows with their price class: without splits, every row as `standard`; with
/// them, each row less its splits as `standard` (request counts are not split: a tier row has
/// none) and each split as its own class.
fn by_tier(figures: &Figures) -> Vec<(PeriodUsage, String)> {
    let standard = |u: &PeriodUsage| (u.clone(), "standard".to_owned());
    let Some(splits) = &figures.splits else {
        return figures.usage.iter().map(standard).collect();
    };
    let mut part: HashMap<(usize, &str, &str, &str), PeriodUsage> = HashMap::new();
    for (s, _) in splits {
        let p = part
            .entry((s.period, &s.source, &s.key_id, &s.model))
            .or_insert_with(|| PeriodUsage {
                tokens: TokenCounts::default(),
                requests: None,
                cost_usd: 0.0,
                unpriced_tokens: 0,
                ..s.clone()
            });
        p.tokens = add(&p.tokens, &s.tokens, 1);
        p.cost_usd += s.cost_usd;
        p.unpriced_tokens = p.unpriced_tokens.saturating_add(s.unpriced_tokens);
    }
    let mut out: Vec<(PeriodUsage, String)> = figures
        .usage
        .iter()
        .filter_map(|u| {
            let mut rest = u.clone();
            if let Some(p) = part.get(&(
                u.period,
                u.source.as_str(),
                u.key_id.as_str(),
                u.model.as_str(),
            )) {
                rest.tokens = add(&u.tokens, &p.tokens, -1);
                rest.cost_usd = (u.cost_usd - p.cost_usd).max(0.0);
                rest.unpriced_tokens = u.unpriced_tokens.saturating_sub(p.unpriced_tokens).max(0);
                // All of it at other classes: no standard row.
                if rest.tokens == TokenCounts::default() && rest.cost_usd < 1e-9 {
                    return None;
                }
            }
            Some((rest, "standard".to_owned()))
        })
        .collect();
    out.extend(splits.iter().cloned());
    out
}

/// `a + sign × b` per class, never below 0 (a split can outlive a row that shrank, briefly).
fn add(a: &TokenCounts, b: &TokenCounts, sign: i64) -> TokenCounts {
    let f = |x: i64, y: i64| x.saturating_add(y.saturating_mul(sign)).max(0);
    TokenCounts {
        uncached_input: f(a.uncached_input, b.uncached_input),
        cache_read: f(a.cache_read, b.cache_read),
        cache_write_5m: f(a.cache_write_5m, b.cache_write_5m),
        cache_write_1h: f(a.cache_write_1h, b.cache_write_1h),
        output: f(a.output, b.output),
    }
}

/// Rolls `figures` up by `dims`. `periods[0]` is only the baseline for the change column; rows
/// are returned for the others, largest spend first within each period. `like_for_like`:
/// (period, index) where a period not over yet is compared with figures at `index` (the
/// period before, up to the same point) instead of the whole period before.
pub fn rollup(
    periods: &[Period],
    figures: &Figures,
    dims: &[Dim],
    facts: &dyn Fn(&str, &str) -> KeyFacts,
    like_for_like: Option<(usize, usize)>,
) -> Vec<Row> {
    let mut sums: BTreeMap<(usize, Group), Sums> = BTreeMap::new();
    for (u, tier) in by_tier(figures) {
        let s = sums
            .entry((
                u.period,
                group_of(dims, &u.source, &u.key_id, (Some(&u.model), &tier), facts),
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
    if let Some(spend) = &figures.spend {
        for s in sums.values_mut() {
            s.spend = Some(0.0);
        }
        for (period, source, key, v) in spend {
            let s = sums
                .entry((
                    *period,
                    group_of(dims, source, key, (None, "standard"), facts),
                ))
                .or_default();
            s.spend = Some(s.spend.unwrap_or(0.0) + v.usd);
            s.estimated_part += v.estimated_part();
            if let Some(b) = v.billed {
                s.billed = Some(s.billed.unwrap_or(0.0) + b);
            }
        }
    }
    let mut totals: BTreeMap<usize, f64> = BTreeMap::new();
    for ((p, _), s) in &sums {
        *totals.entry(*p).or_default() += s.spend();
    }
    let mut rows: Vec<Row> = sums
        .iter()
        .filter(|((p, _), _)| *p > 0 && *p < periods.len())
        .map(|((p, group), s)| {
            let before = match like_for_like {
                Some((q, index)) if q == *p => index,
                _ => p - 1,
            };
            let previous = sums.get(&(before, group.clone())).map(Sums::spend);
            let (spend, total) = (s.spend(), totals.get(p).copied().unwrap_or(0.0));
            Row {
                period: periods[*p].label.clone(),
                group: group.clone(),
                tokens: s.tokens,
                requests: s.requests,
                spend_usd: spend,
                basis: s.basis(),
                cost_usd: s.cost,
                billed_usd: s.billed,
                change_usd: previous.map(|prev| spend - prev),
                change_pct: previous
                    .filter(|prev| *prev > 0.0)
                    .map(|prev| (spend - prev) / prev * 100.0),
                share_pct: if total > 0.0 {
                    spend / total * 100.0
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
            .then(b.spend_usd.total_cmp(&a.spend_usd))
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
            Dim::Tier => columns.push("tier"),
        }
    }
    columns.extend(TokenCounts::NAMES);
    columns.extend([
        "requests",
        "spend_usd",
        "cost_basis",
        "currency",
        "cost_usd",
        "billed_usd",
        "change_usd",
        "change_pct",
        "share_pct",
        "unpriced_tokens",
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
            format!("{:.6}", r.spend_usd),
            r.basis.as_str().to_owned(),
            "USD".to_owned(),
            format!("{:.6}", r.cost_usd),
            fmt_opt(r.billed_usd, 6),
            fmt_opt(r.change_usd, 6),
            fmt_opt(r.change_pct, 2),
            format!("{:.2}", r.share_pct),
            r.unpriced_tokens.to_string(),
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

    fn row() -> Row {
        Row {
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
            spend_usd: 1.5,
            basis: Basis::Estimated,
            cost_usd: 1.5,
            billed_usd: None,
            change_usd: Some(-0.5),
            change_pct: None,
            share_pct: 100.0,
            unpriced_tokens: 0,
            partial: false,
        }
    }

    #[test]
    fn a_row_serializes_its_group_and_every_figure() {
        let v = serde_json::to_value(row()).unwrap();
        assert_eq!(v["key_id"], "apikey_a");
        assert_eq!(v["key_name"], "alpha");
        assert_eq!(v["input_tokens"], 10);
        assert_eq!(v["cache_write_1h_tokens"], 4);
        assert_eq!(v["spend_usd"], 1.5);
        assert_eq!(v["cost_basis"], "estimated");
        assert_eq!(v["currency"], "USD");
        assert_eq!(v["billed_usd"], serde_json::Value::Null);
        assert_eq!(v["change_usd"], -0.5);
    }

    #[test]
    fn an_empty_sum_is_positive_zero() {
        assert_eq!(format!("{:.2}", sum_usd([])), "0.00");
        assert_eq!(format!("{:.2}", sum_usd([-0.0])), "0.00");
    }

    #[test]
    fn a_row_is_billed_only_when_no_estimate_is_left_and_a_floor_only_outside_the_bill() {
        let billed = Sums {
            billed: Some(2.0),
            unpriced: 10,
            ..Sums::default()
        };
        assert_eq!(billed.basis(), Basis::Billed, "the bill counts every model");
        let mixed = Sums {
            billed: Some(2.0),
            estimated_part: 0.5,
            unpriced: 10,
            ..Sums::default()
        };
        assert_eq!(mixed.basis(), Basis::Floor);
        let plain = Sums {
            estimated_part: 0.5,
            ..Sums::default()
        };
        assert_eq!(plain.basis(), Basis::Estimated);
    }
}
