//! Sums over the rollup rows a [`DaySpendCache`](super::day_cache) keeps, computed as SQLite
//! computes the same sums in [`Store::top_daily_spend`](super::Store::top_daily_spend) and
//! [`Store::rolled_key_spend`](super::Store::rolled_key_spend). Pure.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::rollup::TopSpend;

/// Every `(source, key_id)` seen, by index.
#[derive(Debug, Default)]
pub(super) struct Keys {
    list: Vec<(String, String)>,
    /// By `"{source.len()}:{source}{key_id}"`, so a lookup needs no pair of strings.
    index: HashMap<String, u32>,
}

impl Keys {
    /// The index of `(source, key_id)`, whose lookup name is `name`.
    pub(super) fn intern(&mut self, name: &str, source: &str, key_id: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push((source.to_owned(), key_id.to_owned()));
        self.index.insert(name.to_owned(), i);
        i
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    fn get(&self, i: usize) -> &(String, String) {
        &self.list[i]
    }
}

/// One local day of the rollup.
#[derive(Debug)]
pub(super) struct Day {
    /// The day's rows (`buckets > 0`) in the table's order (source, key id, model): the key's
    /// index into [`Keys`] and `cost_usd`.
    pub(super) rows: Vec<(u32, f64)>,
    pub(super) read_at: Instant,
    pub(super) used_at: Instant,
}

impl Day {
    pub(super) fn new(read_at: Instant) -> Self {
        Self {
            rows: Vec::new(),
            read_at,
            used_at: read_at,
        }
    }

    /// Each key's spend that day (its rows are adjacent), as `GROUP BY day, source, key_id`.
    fn per_key(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.rows
            .chunk_by(|a, b| a.0 == b.0)
            .map(|rows| (rows[0].0 as usize, Sum::of(rows.iter().map(|r| r.1))))
    }

    /// The day's total, as `GROUP BY day`; `None` without rows.
    fn total(&self) -> Option<f64> {
        (!self.rows.is_empty()).then(|| Sum::of(self.rows.iter().map(|r| r.1)))
    }
}

/// A sum as SQLite's `SUM` adds REALs: Kahan–Babuška–Neumaier, from 0.0 (`sumStep`,
/// `kahanBabuskaNeumaierStep` and `sumFinalize` in SQLite 3.46's func.c).
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    sum: f64,
    err: f64,
}

impl Sum {
    fn add(&mut self, r: f64) {
        let s = self.sum;
        let t = s + r;
        if s.abs() > r.abs() {
            self.err += (s - t) + r;
        } else {
            self.err += (r - t) + s;
        }
        self.sum = t;
    }

    fn value(self) -> f64 {
        if self.err.is_finite() {
            self.sum + self.err
        } else {
            self.sum
        }
    }

    fn of(values: impl Iterator<Item = f64>) -> f64 {
        let mut s = Sum::default();
        values.for_each(|v| s.add(v));
        s.value()
    }
}

/// Each key's sum over days `[first, end)` (as SQLite's `GROUP BY source, key_id` adds them:
/// a key's rows by day, then model), `None` for keys without rows.
fn totals(keys: &Keys, days: &BTreeMap<i64, Day>, first: i64, end: i64) -> Vec<Option<Sum>> {
    let mut totals: Vec<Option<Sum>> = vec![None; keys.len()];
    for day in days.range(first..end).map(|(_, d)| d) {
        for &(k, usd) in &day.rows {
            if let Some(t) = totals.get_mut(k as usize) {
                t.get_or_insert_with(Sum::default).add(usd);
            }
        }
    }
    totals
}

/// [`Store::rolled_key_spend`](super::Store::rolled_key_spend) over days `[first, end)`: one
/// row per key with rows, by (source, key id) as SQLite's `GROUP BY` returns them.
pub(super) fn key_spend(
    keys: &Keys,
    days: &BTreeMap<i64, Day>,
    first: i64,
    end: i64,
) -> Vec<(String, String, f64)> {
    let mut out: Vec<(String, String, f64)> = totals(keys, days, first, end)
        .into_iter()
        .enumerate()
        .filter_map(|(k, t)| {
            let (source, key_id) = keys.get(k).clone();
            Some((source, key_id, t?.value()))
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// [`TopSpend`] over days `[first, end)`, as
/// [`Store::top_daily_spend`](super::Store::top_daily_spend) computes it from its three
/// queries: the `n` keys that spent most (ties by source and key id), their spend per day, and
/// per day the day's total less theirs (added in key order, as the query returns them).
pub(super) fn top_of(
    keys: &Keys,
    days: &BTreeMap<i64, Day>,
    first: i64,
    end: i64,
    n: usize,
) -> TopSpend {
    let n_days = usize::try_from(end - first).unwrap_or(0);
    let totals = totals(keys, days, first, end);
    // As SQLite orders REALs: 0.0 and -0.0 are equal (adding 0.0 makes both 0.0).
    let spent = |k: usize| totals[k].map_or(0.0, Sum::value) + 0.0;
    let mut ranked: Vec<usize> = (0..keys.len()).filter(|&k| totals[k].is_some()).collect();
    ranked.sort_by(|&a, &b| {
        spent(b)
            .total_cmp(&spent(a))
            .then_with(|| keys.get(a).cmp(keys.get(b)))
    });
    let more = ranked.len() > n;
    ranked.truncate(n);
    let mut place = vec![None; keys.len()];
    for (i, &k) in ranked.iter().enumerate() {
        place[k] = Some(i);
    }
    let mut per_day = vec![vec![0.0; n_days]; ranked.len()];
    let span = || {
        days.range(first..end)
            .map(move |(&day, d)| ((day - first) as usize, d))
    };
    for (day, d) in span() {
        for (k, usd) in d.per_key() {
            if let Some(&Some(i)) = place.get(k) {
                per_day[i][day] += usd;
            }
        }
    }
    let other = more.then(|| {
        let mut by_key: Vec<usize> = (0..ranked.len()).collect();
        by_key.sort_by(|&a, &b| keys.get(ranked[a]).cmp(keys.get(ranked[b])));
        let mut other = vec![0.0; n_days];
        for (day, d) in span() {
            if let Some(total) = d.total() {
                // A key without rows that day adds 0.0, which changes no sum started at 0.0.
                let top = by_key.iter().fold(0.0, |acc, &i| acc + per_day[i][day]);
                other[day] = (total - top).max(0.0);
            }
        }
        other
    });
    TopSpend {
        keys: ranked.iter().map(|&k| keys.get(k).clone()).collect(),
        days: per_day,
        other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_as_sqlite() {
        // A plain sum gives 0.
        assert_eq!(Sum::of([1e100, 1.0, -1e100].into_iter()), 1.0);
        assert_eq!(Sum::of([0.1, 0.2].into_iter()), 0.1 + 0.2);
    }

    #[test]
    fn ranks_by_total_then_key_and_leaves_the_rest_as_other() {
        let mut keys = Keys::default();
        let a = keys.intern("1:ak", "a", "k");
        let b = keys.intern("1:bk", "b", "k");
        let c = keys.intern("1:ck", "c", "k");
        let now = Instant::now();
        let mut days = BTreeMap::new();
        let mut d0 = Day::new(now);
        d0.rows = vec![(a, 1.0), (a, 0.5), (b, 1.5), (c, 2.0)];
        let mut d1 = Day::new(now);
        d1.rows = vec![(c, 1.0)];
        days.insert(10, d0);
        days.insert(11, d1);
        days.insert(12, Day::new(now));
        let top = top_of(&keys, &days, 10, 13, 2);
        assert_eq!(
            top.keys,
            [("c".into(), "k".into()), ("a".into(), "k".into())]
        );
        assert_eq!(top.days, [vec![2.0, 1.0, 0.0], vec![1.5, 0.0, 0.0]]);
        assert_eq!(top.other, Some(vec![1.5, 0.0, 0.0]));
        assert_eq!(top_of(&keys, &days, 10, 13, 3).other, None);
        assert_eq!(
            key_spend(&keys, &days, 11, 12),
            [("c".to_owned(), "k".to_owned(), 1.0)]
        );
    }
}
