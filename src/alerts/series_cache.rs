//! Each key's window of buckets kept in memory between detection passes.
//!
//! The hourly window (7 days × 10,000 keys is 1.7 million rows) changes by one bucket an hour,
//! and the minute window by the few minutes each poll re-reads: a pass reads only the buckets
//! that entered the window or were written since the last pass (the store's [`UsageWatch`]
//! says which), drops what retention deleted, and reloads the whole window on start, when the
//! window moves back, or when a write reaches before the window.

use crate::detect::SpikeMetric;
use crate::store::{KeySeries, Store, StoreError, UsageWatch};

/// One width's window of per-key series, refreshed by [`SeriesCache::read`].
#[derive(Debug)]
pub struct SeriesCache {
    width: i64,
    metric: SpikeMetric,
    watch: UsageWatch,
    loaded: Option<Loaded>,
    /// What the last read read.
    last: Refresh,
    /// Reads since the last whole read.
    passes: u32,
}

/// Reads between two whole reads of the window (an hour at the default `poll.interval`).
const FULL_READ_EVERY: u32 = 60;

#[derive(Debug)]
struct Loaded {
    from: i64,
    to: i64,
    /// Sorted by (source, key id), as the store returns them; every series non-empty. `None`
    /// while lent to a pass.
    series: Option<Vec<KeySeries>>,
}

/// What [`SeriesCache::read`] read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The whole window.
    Full,
    /// Buckets from this start on.
    From(i64),
    /// Nothing: the window and the data in it are unchanged.
    None,
}

impl SeriesCache {
    /// A cache of `metric` over buckets of `width_secs`; it watches writes from now on.
    pub fn new(store: &Store, width_secs: i64, metric: SpikeMetric) -> Self {
        Self {
            width: width_secs,
            metric,
            watch: store.watch_usage(),
            loaded: None,
            last: Refresh::Full,
            passes: 0,
        }
    }

    /// Whether this cache holds `metric` over buckets of `width_secs`.
    pub fn is(&self, width_secs: i64, metric: SpikeMetric) -> bool {
        self.width == width_secs && self.metric == metric
    }

    /// Every key's buckets starting in `[from, to]`, as [`Store::usage_series`] returns them,
    /// read from the store only where they changed. The series are lent: give them back with
    /// [`SeriesCache::put_back`] (a cache whose series were not given back reloads).
    pub async fn read(
        &mut self,
        store: &Store,
        from: i64,
        to: i64,
    ) -> Result<Vec<KeySeries>, StoreError> {
        let changed = self.watch.take(self.width);
        let cached = self
            .loaded
            .take()
            .and_then(|l| Some((l.from, l.to, l.series?)));
        // The marks keep the earliest write and the furthest deletion, not their order: a write
        // before a deletion's edge may have come after it (the row is stored), so read anew.
        let unordered = matches!(
            (changed.written_from, changed.deleted_before),
            (Some(w), Some(d)) if w < d
        );
        // A whole read now and then, in case a row was written past the store (a repair by
        // hand with sqlite3): the cache never drifts for longer than this many passes.
        self.passes += 1;
        let due = self.passes >= FULL_READ_EVERY;
        let refresh = match &cached {
            Some((l_from, l_to, _)) if from >= *l_from && to >= *l_to && !unordered && !due => {
                let lo = changed.written_from.unwrap_or(i64::MAX).min(l_to + 1);
                if lo <= from {
                    Refresh::Full
                } else if lo > to {
                    Refresh::None
                } else {
                    Refresh::From(lo)
                }
            }
            _ => Refresh::Full,
        };
        // Rows retention deleted leave the cache as they left the store.
        let kept_from = changed.deleted_before.map_or(from, |d| d.max(from));
        let series = match (refresh, cached) {
            (Refresh::Full, _) | (_, None) => {
                store
                    .usage_series(self.width, from, to, self.metric)
                    .await?
            }
            (Refresh::None, Some((_, _, series))) => trim(series, kept_from),
            (Refresh::From(lo), Some((_, _, series))) => {
                let fresh = store.usage_series(self.width, lo, to, self.metric).await?;
                merge(series, fresh, kept_from, lo)
            }
        };
        self.loaded = Some(Loaded {
            from,
            to,
            series: None,
        });
        self.last = refresh;
        if refresh == Refresh::Full {
            self.passes = 0;
        }
        Ok(series)
    }

    /// What the last [`SeriesCache::read`] read from the store.
    pub fn last_refresh(&self) -> Refresh {
        self.last
    }

    /// Gives back the series [`SeriesCache::read`] lent, for the next pass.
    pub fn put_back(&mut self, series: Vec<KeySeries>) {
        if let Some(l) = &mut self.loaded {
            l.series = Some(series);
        }
    }
}

/// Drops points before `from`, and series left empty.
fn trim(mut series: Vec<KeySeries>, from: i64) -> Vec<KeySeries> {
    for s in &mut series {
        s.points.keep_from(from);
    }
    series.retain(|s| !s.points.is_empty());
    series
}

/// `cached` with its points from `lo` on replaced by `fresh` (read from `lo`), trimmed to
/// `from`; both sorted by (source, key id).
fn merge(cached: Vec<KeySeries>, fresh: Vec<KeySeries>, from: i64, lo: i64) -> Vec<KeySeries> {
    let mut out = Vec::with_capacity(cached.len().max(fresh.len()));
    let mut fresh = fresh.into_iter().peekable();
    for mut s in cached {
        s.points.keep_before(lo);
        while let Some(f) = fresh.next_if(|f| key(f) < key(&s)) {
            out.push(f);
        }
        if let Some(f) = fresh.next_if(|f| key(f) == key(&s)) {
            // The hour that left the window makes room for the one that entered: `append`
            // grows by exactly what it adds, as the series are kept for the daemon's life.
            s.points.keep_from(from);
            s.points.append(f.points);
        }
        out.push(s);
    }
    out.extend(fresh);
    trim(out, from)
}

fn key(s: &KeySeries) -> (&str, &str) {
    (&s.source, &s.key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Points;

    fn s(key: &str, points: &[(i64, f64)]) -> KeySeries {
        KeySeries {
            source: "src".to_owned(),
            key_id: key.to_owned(),
            points: Points::from_rows(1, points.iter().copied()),
        }
    }

    #[test]
    fn a_window_that_slides_by_a_bucket_keeps_its_capacity() {
        // Held for the daemon's life: an hour in and an hour out must not double the Vec.
        let hours: Vec<(i64, f64)> = (0..168).map(|h| (h, 1.0)).collect();
        let got = merge(vec![s("k", &hours)], vec![s("k", &[(168, 2.0)])], 1, 168);
        assert_eq!(got[0].points.len(), 168);
        assert_eq!(got[0].points.bytes(), 168 * 8);
        assert_eq!(got[0].points.first(), Some((1, 1.0)));
        assert_eq!(got[0].points.last(), Some((168, 2.0)));
    }

    #[test]
    fn merge_replaces_from_lo_adds_new_keys_in_order_and_trims() {
        let cached = vec![s("b", &[(1, 1.0), (2, 2.0), (3, 3.0)]), s("d", &[(1, 1.0)])];
        let fresh = vec![
            s("a", &[(3, 9.0)]),
            s("b", &[(3, 4.0), (4, 5.0)]),
            s("c", &[(4, 1.0)]),
            s("e", &[(3, 1.0)]),
        ];
        let got = merge(cached, fresh, 2, 3);
        let keys: Vec<&str> = got.iter().map(|s| s.key_id.as_str()).collect();
        // "d" had only a point before the window: it leaves.
        assert_eq!(keys, ["a", "b", "c", "e"]);
        let points: Vec<(i64, f64)> = got[1].points.iter().collect();
        assert_eq!(points, [(2, 2.0), (3, 4.0), (4, 5.0)]);
    }

    fn row(key: &str, hour: i64, cost: f64) -> crate::store::UsageRecord {
        crate::store::UsageRecord {
            key_id: key.to_owned(),
            model: "claude-sonnet-4-20250514".to_owned(),
            bucket_start: hour * H,
            tokens: crate::prices::TokenCounts {
                output: 10,
                ..Default::default()
            },
            web_search_requests: 0,
            requests: None,
            cost_usd: Some(cost),
        }
    }

    const H: i64 = 3_600;

    /// Reads through the cache and checks it against a whole read of the same window.
    async fn check(c: &mut SeriesCache, store: &Store, from: i64, to: i64, read: Refresh) {
        let got = c.read(store, from * H, to * H).await.unwrap();
        let whole = store
            .usage_series(H, from * H, to * H, SpikeMetric::Cost)
            .await
            .unwrap();
        assert_eq!(got, whole, "window {from}..={to}");
        assert_eq!(c.last_refresh(), read, "window {from}..={to}");
        c.put_back(got);
    }

    #[tokio::test]
    async fn reads_only_what_changed_and_matches_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kw.db")).await.unwrap();
        let write = |rows: Vec<crate::store::UsageRecord>| {
            let store = store.clone();
            async move { store.store_usage("src", H, &rows, None, 0).await.unwrap() }
        };
        let rows = (0..10)
            .flat_map(|h| [row("a", h, 1.0 + h as f64), row("b", h, 2.0)])
            .collect();
        write(rows).await;
        let mut c = SeriesCache::new(&store, H, SpikeMetric::Cost);
        check(&mut c, &store, 0, 5, Refresh::Full).await;
        // The next hour: one bucket read, the oldest dropped.
        check(&mut c, &store, 1, 6, Refresh::From(5 * H + 1)).await;
        check(&mut c, &store, 1, 6, Refresh::None).await;
        // A late row of a new key and a re-polled bucket inside the window.
        write(vec![row("c", 3, 5.0), row("a", 4, 40.0)]).await;
        // Buckets after the window are read when they enter it, not before.
        write(vec![row("a", 9, 90.0)]).await;
        check(&mut c, &store, 1, 6, Refresh::From(3 * H)).await;
        // A write before the window's start reloads it.
        write(vec![row("d", 0, 1.0)]).await;
        check(&mut c, &store, 1, 7, Refresh::Full).await;
        // Rows retention deleted leave the cache too.
        assert!(store.prune_usage_batch(H, 2 * H).await.unwrap() > 0);
        check(&mut c, &store, 1, 7, Refresh::None).await;
        // Series not given back are read again.
        let _lent = c.read(&store, H, 7 * H).await.unwrap();
        check(&mut c, &store, 1, 8, Refresh::Full).await;
        // A window moved back (a clock set back) reloads.
        check(&mut c, &store, 0, 7, Refresh::Full).await;
        // A deletion, then a write before its edge: the row is stored, so the window is read
        // anew (trimming to the deletion's edge would lose it).
        assert!(store.prune_usage_batch(H, 3 * H).await.unwrap() > 0);
        write(vec![row("e", 2, 2.0)]).await;
        check(&mut c, &store, 0, 7, Refresh::Full).await;
        // And so does every FULL_READ_EVERY-th read, whatever changed.
        for _ in 1..FULL_READ_EVERY {
            check(&mut c, &store, 0, 7, Refresh::None).await;
        }
        check(&mut c, &store, 0, 7, Refresh::Full).await;
        store.close().await;
    }
}
