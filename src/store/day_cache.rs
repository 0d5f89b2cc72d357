//! Spend per key over whole local days, served from memory for the HTTP endpoint (#16).
//!
//! The overview ranks every key by its spend over 30 local days; the budgets (on the overview,
//! in the key list) sum each key's month to date. Summed in SQLite, each sorts the span's
//! rollup rows by key: at 10,000 keys × 30 days the ranking took 180–350 ms of the overview's
//! 310–370 ms on this machine (2 cores), and a 30-day budget sum 156 ms (an index by key avoided
//! the sort but slowed the backfill by 16 % and rewrote index pages on every poll: rejected).
//! Here the rollup rows of each local day are read once, in the table's key order (nothing is
//! sorted), kept as (key, USD) pairs, and summed in memory on each call: the overview answers
//! in 62–73 ms, 73–115 ms right after a poll, and the 30-day sum takes 2 ms. The first call
//! after a start reads every day (30 days: 206 ms in SQLite, 450 ms for that first overview);
//! 10,000 keys × 30 days with one model each hold about 6 MB (300,000 rows of 16 bytes, and
//! the key names).
//!
//! A day is read again only when it changed: the store's [`UsageWatch`] says which buckets were
//! written or deleted since the last call, so after a steady poll only today is read again, a
//! late write into a past day re-reads that day and the ones after it (114–138 ms for a write
//! two days back), and retention re-reads the days it deleted from. A day read more than
//! [`STALE`] ago is read again too (one per call), in case a row was written past the store (a
//! repair by hand with sqlite3); a day no call asked for in [`UNUSED`] is dropped.
//!
//! The sums are SQLite's to the bit: `day_sums` adds as SQLite's `SUM` does, over the same rows
//! in the same order (the rollup's key order; SQLite's sorter keeps the order of rows with
//! equal keys, so a key's rows reach its `SUM` by day, then model). Adding each day's sums
//! instead differs in the last bits (enough to swap keys of near-equal spend); the test in
//! `tests/integration/day_cache.rs` compares every answer with the SQL one bit for bit.

use super::db::on;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use serde::Deserialize;

use super::day_sums::{key_spend, top_of, Day, Keys};
use super::packed::{packed, real, unpack, Real};
use super::rollup::{local_day, TopSpend};
use super::{Store, StoreError, UsageWatch};

/// How long a day read from the store is trusted without a write reported by the watch.
const STALE: Duration = Duration::from_secs(3_600);

/// How long a day no call asked for stays in memory.
const UNUSED: Duration = Duration::from_secs(86_400);

/// The longest span served from memory, in days (a budget's month, the overview's 30 days);
/// longer ones are summed in SQLite.
const MAX_DAYS: i64 = 62;

/// The days read so far of one zone and bucket width.
#[derive(Debug, Default)]
struct Zone {
    keys: Keys,
    /// By local day number.
    days: BTreeMap<i64, Day>,
}

/// Spend per key and local day, read from the rollup only where it changed.
#[derive(Debug)]
pub(super) struct DaySpendCache {
    watch: UsageWatch,
    zones: tokio::sync::Mutex<HashMap<(Tz, i64), Zone>>,
}

impl Store {
    /// This store, with its reads of spend per key over whole local days of the rollup
    /// ([`Store::top_daily_spend`], [`Store::rolled_key_spend`]) kept in memory between calls
    /// and re-read only where usage was written since: for the HTTP endpoint, whose overview,
    /// budgets and key list read the same days on every request. The clone shares the pool.
    pub fn with_day_cache(&self) -> Store {
        let mut store = self.clone();
        store.days = Some(Arc::new(DaySpendCache {
            watch: self.watch_usage(),
            zones: tokio::sync::Mutex::new(HashMap::new()),
        }));
        store
    }

    /// The cache, when this store has one and days `[first, end)` are a span it serves.
    pub(super) fn day_cache(&self, first: i64, end: i64) -> Option<&DaySpendCache> {
        self.days
            .as_deref()
            .filter(|_| first <= end && end - first <= MAX_DAYS)
    }
}

impl DaySpendCache {
    /// [`Store::top_daily_spend`] over local days `[first, end)` of a rolled-up zone.
    pub(super) async fn top_daily_spend(
        &self,
        store: &Store,
        zone: Tz,
        width_secs: i64,
        (first, end): (i64, i64),
        n: usize,
    ) -> Result<TopSpend, StoreError> {
        let mut zones = self.zones.lock().await;
        let z = self
            .refresh(&mut zones, store, zone, width_secs, first, end)
            .await?;
        Ok(top_of(&z.keys, &z.days, first, end, n))
    }

    /// [`Store::rolled_key_spend`] over local days `[first, end)` of a rolled-up zone.
    pub(super) async fn key_spend(
        &self,
        store: &Store,
        zone: Tz,
        width_secs: i64,
        (first, end): (i64, i64),
    ) -> Result<Vec<(String, String, f64)>, StoreError> {
        let mut zones = self.zones.lock().await;
        let z = self
            .refresh(&mut zones, store, zone, width_secs, first, end)
            .await?;
        Ok(key_spend(&z.keys, &z.days, first, end))
    }

    /// The zone's days with `[first, end)` read where they are missing, changed or stale.
    async fn refresh<'z>(
        &self,
        zones: &'z mut HashMap<(Tz, i64), Zone>,
        store: &Store,
        zone: Tz,
        width: i64,
        first: i64,
        end: i64,
    ) -> Result<&'z Zone, StoreError> {
        // Taken before reading: a write committed after this is reported by the next take.
        // The marks are per width, so they apply to every zone of the width at once.
        let changed = self.watch.take(width);
        for (&(z, _), cached) in zones.iter_mut().filter(|((_, w), _)| *w == width) {
            let written = changed.written_from.map(|t| local_day(z, t));
            let deleted = changed
                .deleted_before
                .map(|t| local_day(z, t.saturating_sub(1)));
            cached.days.retain(|&day, d| {
                written.is_none_or(|w| day < w)
                    && deleted.is_none_or(|del| day > del)
                    && d.used_at.elapsed() < UNUSED
            });
        }
        zones.retain(|_, z| !z.days.is_empty());
        let cached = zones.entry((zone, width)).or_default();
        let mut wanted: Vec<i64> = (first..end)
            .filter(|d| !cached.days.contains_key(d))
            .collect();
        let stalest = cached
            .days
            .iter()
            .filter(|(_, d)| d.read_at.elapsed() >= STALE)
            .min_by_key(|(_, d)| d.read_at)
            .map(|(&day, _)| day);
        wanted.extend(stalest);
        wanted.sort_unstable();
        for (lo, hi) in runs(&wanted) {
            // A failed read leaves the days out; the next call reads them again.
            read_days(store, cached, zone, width, lo, hi).await?;
        }
        // Keys no longer used stay in the key list until the zone is read anew: then, once they
        // are many more than the keys of the busiest day (a key costs its two strings).
        let busiest = cached.days.values().map(|d| d.rows.len()).max();
        if cached.keys.len() > 2 * busiest.unwrap_or(0) + 1_000 {
            let days = std::mem::take(&mut cached.days);
            cached.keys = Keys::default();
            for (lo, hi) in runs(&days.into_keys().collect::<Vec<_>>()) {
                read_days(store, cached, zone, width, lo, hi).await?;
            }
        }
        let now = Instant::now();
        for (_, d) in cached.days.range_mut(first..end) {
            d.used_at = now;
        }
        Ok(cached)
    }
}

/// Contiguous runs `[lo, hi)` of sorted day numbers.
fn runs(days: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &d in days {
        match out.last_mut() {
            Some(run) if run.1 == d => run.1 = d + 1,
            _ => out.push((d, d + 1)),
        }
    }
    out
}

/// A rollup row as read: local day, source, key id, model, USD.
#[derive(Deserialize)]
struct Row<'a>(
    i64,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    Real,
);

impl Row<'_> {
    fn order(&self) -> (i64, &str, &str, &str) {
        (self.0, &self.1, &self.2, &self.3)
    }
}

/// Reads the rollup rows of local days `[lo, hi)` into `cached`, replacing what it held of
/// them. One row per key, model and day: read packed (see `packed`), in the table's order.
async fn read_days(
    store: &Store,
    cached: &mut Zone,
    zone: Tz,
    width: i64,
    lo: i64,
    hi: i64,
) -> Result<(), StoreError> {
    let backend = store.db.backend();
    let sql = packed(
        backend,
        &format!("day, source, key_id, model, {}", real(backend, "cost_usd")),
        "SELECT day, source, key_id, model, cost_usd FROM usage_daily
         WHERE zone = $1 AND bucket_width = $2 AND day >= $3 AND day < $4 AND buckets > 0",
    );
    let text: String = on!(store.db, |e| sqlx::query_scalar(&sql)
        .bind(zone.name())
        .bind(width)
        .bind(lo)
        .bind(hi)
        .fetch_one(e)
        .await)?;
    let mut rows: Vec<Row> = unpack(&text)?;
    // SQLite hands the rows over as it scans the primary key; should a plan ever differ, the
    // sums still need that order.
    if !rows.is_sorted_by(|a, b| a.order() <= b.order()) {
        rows.sort_by(|a, b| a.order().cmp(&b.order()));
    }
    let read_at = Instant::now();
    let mut days: BTreeMap<i64, Day> = (lo..hi).map(|day| (day, Day::new(read_at))).collect();
    let mut name = String::new();
    for row in &rows {
        let Some(day) = days.get_mut(&row.0) else {
            continue;
        };
        name.clear();
        let _ = write!(name, "{}:{}{}", row.1.len(), row.1, row.2);
        let key = cached.keys.intern(&name, &row.1, &row.2);
        day.rows.push((key, (row.4).0));
    }
    cached.days.extend(days);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_days() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[3, 4, 5, 9, 11, 12]), vec![(3, 6), (9, 10), (11, 13)]);
    }
}
