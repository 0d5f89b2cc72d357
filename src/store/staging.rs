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

use super::batch_rollup::{add_excluded, last_of_each, rollup_counters, BatchRollup};
use super::db::{on_tx, Tx};
use super::usage::{insert_values, note_keys, upsert_clause, ROWS_PER_STATEMENT};
use super::{tokens, Store, StoreError, UsageRecord};

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
    rollup: BatchRollup,
    rows: usize,
}

impl Store {
    /// Starts staging usage of `source` and `width_secs`, discarding rows a crash left staged
    /// (their cursor was never stored, so they are read again).
    pub async fn staging(&self, source: &str, width_secs: i64) -> Result<Staging, StoreError> {
        let mut tx = self.begin().await?;
        discard(&mut tx, source, width_secs).await?;
        let rollup = BatchRollup::new(&mut tx, source, width_secs, None).await?;
        tx.commit().await?;
        Ok(Staging {
            store: self.clone(),
            source: source.to_owned(),
            width_secs,
            rollup,
            rows: 0,
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
        matches!((first, self.rollup.span()), (Some(f), Some((_, last))) if f <= last)
    }

    /// Appends one page's `rows` to the staging table (of two rows with one natural key the
    /// later), records keys first seen in them, and adds them to the rollup sums. Nothing is
    /// visible as usage until [`Staging::merge`].
    pub async fn add(&mut self, rows: &[UsageRecord], now: i64) -> Result<(), StoreError> {
        let rows = last_of_each(rows);
        let mut tx = self.store.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let qb = insert_values("usage_staging", &self.source, self.width_secs, chunk, now);
            qb.execute(&mut tx).await?;
        }
        // Keys already staged in this catch-up were noted then (10,000 a page at 10,000 keys).
        let unseen = rows
            .iter()
            .map(|r| r.key_id.as_str())
            .filter(|k| !self.rollup.knows_key(k));
        note_keys(&mut tx, &self.source, unseen, now).await?;
        tx.commit().await?;
        self.rollup.add(&rows);
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
        let mut tx = self.store.begin().await?;
        let span = self.rollup.span();
        if span.is_some() {
            on_tx!(&mut tx, |e| sqlx::query(
                "INSERT INTO rollup_paused (paused) VALUES (1)"
            )
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
            if self.rollup.overwrites(&mut tx).await? {
                subtract_overwritten(&mut tx, source, width).await?;
            }
            moved.subtract_ms = ms();
            moved.changed = move_rows(&mut tx, source, width).await?;
            moved.move_ms = ms();
            self.rollup.write(&mut tx).await?;
            on_tx!(&mut tx, |e| sqlx::query("DELETE FROM rollup_paused")
                .execute(e)
                .await
                .map(|r| r.rows_affected()))?;
            discard(&mut tx, source, width).await?;
            moved.rollup_ms = ms();
        }
        let stream = super::poll_state::usage_stream(width);
        super::poll_state::set_cursor(&mut tx, source, &stream, cursor).await?;
        tx.commit().await?;
        moved.commit_ms = ms();
        if let Some((earliest, _)) = span {
            self.store.usage_written(width, earliest);
        }
        self.rows = 0;
        Ok(moved)
    }
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
    tx: &mut Tx,
    source: &str,
    width_secs: i64,
) -> Result<(), StoreError> {
    let backend = tx.backend();
    let (join, no_limit) = (backend.driving_join(), backend.no_limit());
    on_tx!(tx, |e| sqlx::query(&backend.real_sums(&format!(
        "INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model, {})
         SELECT l.zone, $2, l.t / 86400 - CASE WHEN l.t % 86400 < 0 THEN 1 ELSE 0 END AS d,
                $1, l.key_id, l.model,
                {}, -COALESCE(SUM(l.requests), 0), -COUNT(l.requests),
                -SUM_REAL(COALESCE(l.cost_usd, 0.0)),
                -SUM(CASE WHEN l.cost_usd IS NULL THEN {} ELSE 0 END), -COUNT(*)
         FROM (SELECT z.zone AS zone, u.*,
                      u.bucket_start + (SELECT o.offset_secs FROM zone_offsets o
                                         WHERE o.zone = z.zone AND o.from_ts <= u.bucket_start
                                         ORDER BY o.from_ts DESC LIMIT 1) AS t
               FROM (SELECT key_id, bucket_start, model FROM usage_staging
                     WHERE source = $1 AND bucket_width = $2
                     ORDER BY key_id, bucket_start, model {no_limit}) s
               {join} usage_buckets u
                 ON u.source = $1 AND u.key_id = s.key_id AND u.bucket_width = $2
                AND u.bucket_start = s.bucket_start AND u.model = s.model
               CROSS JOIN rollup_zones z
               {no_limit}) l
         WHERE true
         GROUP BY l.zone, d, l.key_id, l.model
         ON CONFLICT (zone, bucket_width, day, source, key_id, model) DO UPDATE SET {}",
        rollup_counters().collect::<Vec<_>>().join(", "),
        tokens::each(|c| format!("-SUM(l.{c})"), ", "),
        tokens::total("l."),
        add_excluded(),
    )))
    .bind(source)
    .bind(width_secs)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Upserts the staged rows into `usage_buckets` in its key order; the number of rows new or
/// changed.
async fn move_rows(tx: &mut Tx, source: &str, width_secs: i64) -> Result<u64, StoreError> {
    let columns = format!(
        "source, key_id, bucket_width, bucket_start, model, {}, web_search_requests, \
         requests, cost_usd, updated_at",
        tokens::list()
    );
    Ok(on_tx!(tx, |e| sqlx::query(&format!(
        "INSERT INTO usage_buckets ({columns})
         SELECT {columns} FROM usage_staging WHERE source = $1 AND bucket_width = $2
         ORDER BY key_id, bucket_start, model
         {}",
        upsert_clause()
    ))
    .bind(source)
    .bind(width_secs)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?)
}

async fn discard(tx: &mut Tx, source: &str, width_secs: i64) -> Result<u64, StoreError> {
    Ok(on_tx!(tx, |e| sqlx::query(
        "DELETE FROM usage_staging WHERE source = $1 AND bucket_width = $2"
    )
    .bind(source)
    .bind(width_secs)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?)
}
