//! Staged usage: the pages of a long catch-up (the first backfill, or the poll after a day of
//! downtime) are appended to `usage_staging` as they arrive and moved into `usage_buckets` many
//! hours at a time, in the table's key order. A page holds one hour of every key, so storing
//! pages one by one rewrites every key's last leaf once per hour (#16: at 10,000 keys each page
//! dirtied about 10,000 pages of the database). Moved in one statement, each key's leaf is
//! written once per move instead.
//!
//! The daily rollup is kept per move, not per row: the staged rows' sums per zone, local day,
//! key and model are added up in memory as pages arrive, and a move (with the row triggers
//! paused inside its transaction) subtracts what the buckets it overwrites held and adds the
//! sums. Staged rows have one row per natural key: a page's repeats are resolved as it is
//! staged (the later wins), and a page that reaches back into staged buckets is staged only
//! after a move (see [`Staging::overlaps`]).
//!
//! The stream's cursor moves only with a move, in its transaction: staged rows are never
//! counted as stored, and rows a crash left staged are discarded and read again.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::usage::{insert_values, note_keys, upsert_clause, ROWS_PER_STATEMENT};
use super::{tokens, Store, StoreError, UsageRecord};

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

/// A rollup row's place: zone (index into the zones), local day, key and model (interned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DayKey {
    zone: u16,
    day: i64,
    key: u32,
    model: u32,
}

/// The counters of one `usage_daily` row, as the row triggers add them.
#[derive(Debug, Clone, Copy, Default)]
struct DaySums {
    tokens: [i64; 5],
    requests: i64,
    requests_buckets: i64,
    cost_usd: f64,
    unpriced_tokens: i64,
    buckets: i64,
}

impl DaySums {
    fn add(&mut self, r: &UsageRecord) {
        let counts = tokens::column_values(&r.tokens);
        for (sum, n) in self.tokens.iter_mut().zip(counts) {
            *sum = sum.saturating_add(n);
        }
        if let Some(n) = r.requests {
            self.requests = self.requests.saturating_add(n);
            self.requests_buckets += 1;
        }
        match r.cost_usd {
            Some(usd) => self.cost_usd += usd,
            None => {
                let total = counts.iter().fold(0_i64, |a, n| a.saturating_add(*n));
                self.unpriced_tokens = self.unpriced_tokens.saturating_add(total);
            }
        }
        self.buckets += 1;
    }
}

/// Strings to small numbers and back.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }
}

/// What one move did: rows moved, how many were new or changed, and where its time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub rows: usize,
    pub changed: u64,
    /// Subtracting what overwritten buckets held from the rollup.
    pub subtract_ms: u64,
    /// Writing the rows into `usage_buckets`.
    pub move_ms: u64,
    /// Adding the rollup sums and emptying the staging table.
    pub rollup_ms: u64,
    /// Setting the cursor and committing.
    pub commit_ms: u64,
}

/// One catch-up's staged rows of a source and bucket width, and their daily rollup so far.
#[derive(Debug)]
pub struct Staging {
    store: Store,
    source: String,
    width_secs: i64,
    /// The rolled-up zones with their offset rows `(from_ts, offset)`, as `zone_offsets`.
    zones: Vec<(String, Vec<(i64, i64)>)>,
    keys: Interner,
    models: Interner,
    sums: HashMap<DayKey, DaySums>,
    rows: usize,
    /// The first and last bucket staged.
    span: Option<(i64, i64)>,
}

impl Store {
    /// Starts staging usage of `source` and `width_secs`, discarding rows a crash left staged
    /// (their cursor was never stored, so they are read again).
    pub async fn staging(&self, source: &str, width_secs: i64) -> Result<Staging, StoreError> {
        let mut tx = self.pool.begin().await?;
        discard(&mut tx, source, width_secs).await?;
        tx.commit().await?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT o.zone, o.from_ts, o.offset_secs FROM zone_offsets o
             JOIN rollup_zones z ON z.zone = o.zone ORDER BY o.zone, o.from_ts",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut zones: Vec<(String, Vec<(i64, i64)>)> = Vec::new();
        for (zone, from, offset) in rows {
            match zones.last_mut() {
                Some((z, offsets)) if *z == zone => offsets.push((from, offset)),
                _ => zones.push((zone, vec![(from, offset)])),
            }
        }
        Ok(Staging {
            store: self.clone(),
            source: source.to_owned(),
            width_secs,
            zones,
            keys: Interner::default(),
            models: Interner::default(),
            sums: HashMap::new(),
            rows: 0,
            span: None,
        })
    }
}

impl Staging {
    /// Rows staged since the last move.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether `rows` hold a bucket at or before the last one staged (a provider that sends a
    /// bucket twice): move what is staged before staging them, so each natural key is staged
    /// once and the later read wins.
    pub fn overlaps(&self, rows: &[UsageRecord]) -> bool {
        let first = rows.iter().map(|r| r.bucket_start).min();
        matches!((first, self.span), (Some(f), Some((_, last))) if f <= last)
    }

    /// Appends one page's `rows` to the staging table (of two rows with one natural key the
    /// later), records keys first seen in them, and adds them to the rollup sums. Nothing is
    /// visible as usage until [`Staging::merge`].
    pub async fn add(&mut self, rows: &[UsageRecord], now: i64) -> Result<(), StoreError> {
        let rows = last_of_each(rows);
        let mut tx = self.store.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb = insert_values("usage_staging", &self.source, self.width_secs, chunk, now);
            qb.build().execute(&mut *tx).await?;
        }
        // Keys already staged in this catch-up were noted then (10,000 a page at 10,000 keys).
        let unseen = rows
            .iter()
            .map(|r| r.key_id.as_str())
            .filter(|k| !self.keys.ids.contains_key(*k));
        note_keys(&mut tx, &self.source, unseen, now).await?;
        tx.commit().await?;
        let mut days: HashMap<(usize, i64), i64> = HashMap::new();
        for r in &rows {
            let key = self.keys.id(&r.key_id);
            let model = self.models.id(&r.model);
            for (z, (_, offsets)) in self.zones.iter().enumerate() {
                let day = *days
                    .entry((z, r.bucket_start))
                    .or_insert_with(|| local_day(offsets, r.bucket_start));
                let at = DayKey {
                    zone: u16::try_from(z).unwrap_or(u16::MAX),
                    day,
                    key,
                    model,
                };
                self.sums.entry(at).or_default().add(r);
            }
            self.span = Some(match self.span {
                Some((lo, hi)) => (lo.min(r.bucket_start), hi.max(r.bucket_start)),
                None => (r.bucket_start, r.bucket_start),
            });
        }
        self.rows += rows.len();
        Ok(())
    }

    /// Moves the staged rows into `usage_buckets` (in its key order), keeps the rollup exact
    /// and sets the stream's cursor to `cursor`, in one transaction.
    pub async fn merge(&mut self, cursor: i64) -> Result<Moved, StoreError> {
        let (source, width) = (self.source.as_str(), self.width_secs);
        let mut moved = Moved {
            rows: self.rows,
            ..Moved::default()
        };
        let mut lap = std::time::Instant::now();
        let mut ms = || {
            let took = lap.elapsed().as_millis() as u64;
            lap = std::time::Instant::now();
            took
        };
        let mut tx = self.store.pool.begin().await?;
        if self.span.is_some() {
            sqlx::query("INSERT INTO rollup_paused (paused) VALUES (1)")
                .execute(&mut *tx)
                .await?;
            if self.overwrites(&mut tx).await? {
                subtract_overwritten(&mut tx, source, width).await?;
            }
            moved.subtract_ms = ms();
            moved.changed = move_rows(&mut tx, source, width).await?;
            moved.move_ms = ms();
            self.write_sums(&mut tx).await?;
            sqlx::query("DELETE FROM rollup_paused")
                .execute(&mut *tx)
                .await?;
            discard(&mut tx, source, width).await?;
            moved.rollup_ms = ms();
        }
        let stream = super::poll_state::usage_stream(width);
        super::poll_state::set_cursor(&mut tx, source, &stream, cursor).await?;
        tx.commit().await?;
        moved.commit_ms = ms();
        if let Some((earliest, _)) = self.span.take() {
            self.store.usage_written(width, earliest);
        }
        self.sums.clear();
        self.sums.shrink_to_fit();
        self.rows = 0;
        Ok(moved)
    }

    /// Whether any stored bucket of a staged key lies in the staged span, so that the move
    /// overwrites rows whose values must leave the rollup. A seek per key: a first backfill
    /// overwrites nothing, and looking up each staged row to find that out took 0.5–0.8 s of
    /// every 400,000-row move at 10,000 keys.
    async fn overwrites(&self, tx: &mut Tx<'_>) -> Result<bool, StoreError> {
        let Some((first, last)) = self.span else {
            return Ok(false);
        };
        let keys = serde_json::to_string(&self.keys.names).unwrap_or_default();
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM json_each(?3) k CROSS JOIN usage_buckets u
                 ON u.source = ?1 AND u.key_id = k.value AND u.bucket_width = ?2
                AND u.bucket_start >= ?4 AND u.bucket_start <= ?5)",
        )
        .bind(&self.source)
        .bind(self.width_secs)
        .bind(keys)
        .bind(first)
        .bind(last)
        .fetch_one(&mut **tx)
        .await?)
    }

    /// Adds the staged rows' sums to `usage_daily`.
    async fn write_sums(&self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let sums: Vec<(&DayKey, &DaySums)> = self.sums.iter().collect();
        for chunk in sums.chunks(ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(format!(
                "INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model, {}) ",
                rollup_counters().collect::<Vec<_>>().join(", ")
            ));
            qb.push_values(chunk, |mut b, (at, s)| {
                b.push_bind(&self.zones[usize::from(at.zone)].0)
                    .push_bind(self.width_secs)
                    .push_bind(at.day)
                    .push_bind(&self.source)
                    .push_bind(&self.keys.names[at.key as usize])
                    .push_bind(&self.models.names[at.model as usize]);
                for n in s.tokens {
                    b.push_bind(n);
                }
                b.push_bind(s.requests)
                    .push_bind(s.requests_buckets)
                    .push_bind(s.cost_usd)
                    .push_bind(s.unpriced_tokens)
                    .push_bind(s.buckets);
            });
            qb.push(format!(
                " ON CONFLICT (zone, bucket_width, day, source, key_id, model) DO UPDATE SET {}",
                add_excluded()
            ));
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// The counter columns of `usage_daily` after the token columns (`tokens::TOKEN_COLUMNS`), in
/// the order [`Staging::write_sums`] binds them.
const OTHER_COUNTERS: [&str; 5] = [
    "requests",
    "requests_buckets",
    "cost_usd",
    "unpriced_tokens",
    "buckets",
];

/// Every counter column of `usage_daily`: the token columns, then [`OTHER_COUNTERS`].
fn rollup_counters() -> impl Iterator<Item = &'static str> {
    tokens::TOKEN_COLUMNS.into_iter().chain(OTHER_COUNTERS)
}

fn add_excluded() -> String {
    rollup_counters()
        .map(|c| format!("{c} = {c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` without repeats of a natural key (the later of two kept), in key order.
fn last_of_each(rows: &[UsageRecord]) -> Vec<&UsageRecord> {
    let mut sorted: Vec<&UsageRecord> = rows.iter().collect();
    let same = |a: &UsageRecord, b: &UsageRecord| {
        a.bucket_start == b.bucket_start && a.key_id == b.key_id && a.model == b.model
    };
    sorted.sort_by(|a, b| {
        (&a.key_id, a.bucket_start, &a.model).cmp(&(&b.key_id, b.bucket_start, &b.model))
    });
    let mut out: Vec<&UsageRecord> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if same(last, r) => *last = r,
            _ => out.push(r),
        }
    }
    out
}

/// The local day of `ts` by a zone's `zone_offsets` rows (the lookup the row triggers make).
fn local_day(offsets: &[(i64, i64)], ts: i64) -> i64 {
    let i = offsets.partition_point(|(from, _)| *from <= ts);
    let offset = i.checked_sub(1).map_or(0, |i| offsets[i].1);
    (ts + offset).div_euclid(86_400)
}

/// Subtracts from `usage_daily` what the buckets the staged rows overwrite hold (re-read
/// buckets; none in a first backfill).
///
/// The staged rows are looked up in the table's key order (`LIMIT -1` keeps SQLite from
/// flattening the sorted subquery, and `CROSS JOIN` keeps the join order): looked up in arrival
/// order, one hour of every key at a time, the lookups missed SQLite's cache and took as long as
/// the move itself (2 s for 400,000 rows at 10,000 keys). The outer `LIMIT -1` computes each
/// row's offset once instead of once per use.
async fn subtract_overwritten(
    tx: &mut Tx<'_>,
    source: &str,
    width_secs: i64,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model, {})
         SELECT l.zone, ?2, l.t / 86400 - (l.t % 86400 < 0) AS d, ?1, l.key_id, l.model,
                {}, -COALESCE(SUM(l.requests), 0), -COUNT(l.requests),
                -SUM(COALESCE(l.cost_usd, 0.0)),
                -SUM(CASE WHEN l.cost_usd IS NULL THEN {} ELSE 0 END), -COUNT(*)
         FROM (SELECT z.zone AS zone, u.*,
                      u.bucket_start + (SELECT o.offset_secs FROM zone_offsets o
                                         WHERE o.zone = z.zone AND o.from_ts <= u.bucket_start
                                         ORDER BY o.from_ts DESC LIMIT 1) AS t
               FROM (SELECT key_id, bucket_start, model FROM usage_staging
                     WHERE source = ?1 AND bucket_width = ?2
                     ORDER BY key_id, bucket_start, model LIMIT -1) s
               CROSS JOIN usage_buckets u
                 ON u.source = ?1 AND u.key_id = s.key_id AND u.bucket_width = ?2
                AND u.bucket_start = s.bucket_start AND u.model = s.model
               CROSS JOIN rollup_zones z
               LIMIT -1) l
         WHERE true
         GROUP BY l.zone, d, l.key_id, l.model
         ON CONFLICT (zone, bucket_width, day, source, key_id, model) DO UPDATE SET {}",
        rollup_counters().collect::<Vec<_>>().join(", "),
        tokens::each(|c| format!("-SUM(l.{c})"), ", "),
        tokens::total("l."),
        add_excluded(),
    ))
    .bind(source)
    .bind(width_secs)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Upserts the staged rows into `usage_buckets` in its key order; the number of rows new or
/// changed.
async fn move_rows(tx: &mut Tx<'_>, source: &str, width_secs: i64) -> Result<u64, StoreError> {
    let columns = format!(
        "source, key_id, bucket_width, bucket_start, model, {}, web_search_requests, \
         requests, cost_usd, updated_at",
        tokens::list()
    );
    Ok(sqlx::query(&format!(
        "INSERT INTO usage_buckets ({columns})
         SELECT {columns} FROM usage_staging WHERE source = ? AND bucket_width = ?
         ORDER BY key_id, bucket_start, model
         {}",
        upsert_clause()
    ))
    .bind(source)
    .bind(width_secs)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

async fn discard(tx: &mut Tx<'_>, source: &str, width_secs: i64) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM usage_staging WHERE source = ? AND bucket_width = ?")
            .bind(source)
            .bind(width_secs)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_day_follows_the_offset_rows_as_the_triggers_do() {
        let offsets = [(i64::MIN, 3_600), (1_000_000, 7_200)];
        assert_eq!(local_day(&offsets, 86_400 - 3_600), 1);
        assert_eq!(local_day(&offsets, 86_400 - 3_601), 0);
        assert_eq!(local_day(&offsets, 1_000_000), (1_000_000 + 7_200) / 86_400);
        assert_eq!(local_day(&offsets, -3_601), -1);
        assert_eq!(local_day(&[], 86_399), 0);
    }
}
