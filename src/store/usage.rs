//! Usage buckets: batched idempotent upserts and the reads behind `history`.

use super::batch_rollup::{last_of_each, BatchRollup};
use super::db::{on, on_tx, Builder, Tx};
use super::decode::Count;
use super::poll_state::usage_stream;
use super::{tokens, Store, StoreError};
use crate::prices::TokenCounts;
use crate::providers::WORKBENCH_KEY_ID;

/// Rows per INSERT statement. Plain `?` placeholders (see docs/storage.md): 14 binds a row.
pub(super) const ROWS_PER_STATEMENT: usize = 100;

/// One usage row ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub key_id: String,
    pub model: String,
    /// Bucket start, Unix seconds UTC.
    pub bucket_start: i64,
    pub tokens: TokenCounts,
    pub web_search_requests: i64,
    pub requests: Option<i64>,
    /// `None` when the model has no price.
    pub cost_usd: Option<f64>,
}

/// One stored bucket row, as `history` and `/api/v1/usage` show it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryRow {
    pub source: String,
    pub bucket_start: i64,
    pub bucket_width: i64,
    pub model: String,
    #[sqlx(flatten)]
    pub tokens: TokenCounts,
    #[sqlx(try_from = "Count")]
    pub web_search_requests: i64,
    #[sqlx(try_from = "Count")]
    pub requests: Option<i64>,
    pub cost_usd: Option<f64>,
}

/// A model seen in usage that has no price.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UnpricedModel {
    pub source: String,
    pub model: String,
    pub rows: i64,
    #[sqlx(try_from = "Count")]
    pub tokens: i64,
}

impl Store {
    /// Upserts `rows` of one source and bucket width, records keys first seen in usage, and
    /// moves the source's cursor to `cursor`, all in one transaction: either all of it is
    /// stored or none. Returns how many rows were new or changed.
    pub async fn store_usage(
        &self,
        source: &str,
        width_secs: i64,
        rows: &[UsageRecord],
        cursor: Option<i64>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let changed = if rows.len() >= BATCH_ROLLUP_ROWS {
            upsert_with_batch_rollup(&mut tx, source, width_secs, rows, now).await?
        } else {
            upsert_rows(&mut tx, source, width_secs, rows, now).await?
        };
        note_keys(&mut tx, source, rows.iter().map(|r| r.key_id.as_str()), now).await?;
        if let Some(cursor) = cursor {
            super::poll_state::set_cursor(&mut tx, source, &usage_stream(width_secs), cursor)
                .await?;
        }
        tx.commit().await?;
        // Rows read again unchanged (a re-read of late usage) are not writes: readers that
        // follow the watch (the detection windows, the day cache) need not read them again.
        if changed > 0 {
            if let Some(earliest) = rows.iter().map(|r| r.bucket_start).min() {
                self.usage_written(width_secs, earliest);
            }
        }
        Ok(changed)
    }

    /// A key's stored buckets in `[since, until)`, oldest first; all sources unless one is named.
    pub async fn history(
        &self,
        key_id: &str,
        source: Option<&str>,
        width_secs: i64,
        since: i64,
        until: i64,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let sql = format!(
            "{}
             WHERE key_id = $1 AND ($2 IS NULL OR source = $3) AND bucket_width = $4
               AND bucket_start >= $5 AND bucket_start < $6
             ORDER BY bucket_start, bucket_width, source, model",
            history_select()
        );
        Ok(on!(self.db, |e| sqlx::query_as(&sql)
            .bind(key_id)
            .bind(source)
            .bind(source)
            .bind(width_secs)
            .bind(since)
            .bind(until)
            .fetch_all(e)
            .await)?)
    }

    /// Models stored without a price, with how much usage they carry.
    pub async fn unpriced_models(&self) -> Result<Vec<UnpricedModel>, StoreError> {
        let sql = format!(
            "SELECT source, model, COUNT(*) AS rows, SUM({}) AS tokens
             FROM usage_buckets WHERE cost_usd IS NULL
             GROUP BY source, model ORDER BY source, model",
            tokens::total("")
        );
        Ok(on!(self.db, |e| sqlx::query_as(&sql).fetch_all(e).await)?)
    }

    /// Total number of stored usage rows.
    pub async fn usage_row_count(&self) -> Result<i64, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT COUNT(*) FROM usage_buckets"
        )
        .fetch_one(e)
        .await)?)
    }
}

/// Records the keys in `key_ids` that the inventory does not know yet (the workbench is no
/// key).
pub(super) async fn note_keys<'k>(
    tx: &mut Tx,
    source: &str,
    key_ids: impl IntoIterator<Item = &'k str>,
    now: i64,
) -> Result<(), StoreError> {
    let mut key_ids: Vec<&str> = key_ids
        .into_iter()
        .filter(|k| *k != WORKBENCH_KEY_ID)
        .collect();
    key_ids.sort_unstable();
    key_ids.dedup();
    super::keys::note_usage_keys(tx, source, &key_ids, now).await
}

/// Pages of at least this many rows keep the daily rollup per page, not per row, when they
/// overwrite nothing (see [`upsert_with_batch_rollup`]).
const BATCH_ROLLUP_ROWS: usize = 1_000;

/// Upserts `rows` with the daily rollup summed in memory and written once (the row triggers
/// paused: see `store::batch_rollup`), when no stored bucket of their keys lies in their span:
/// a backfill's pages, which the triggers made 2.6 times slower to store in key order (#16:
/// 115k rows/s against 297k without a rollup). A page that overwrites rows (a re-read of
/// recent buckets) goes through the triggers, which subtract what each overwritten row held.
/// Of two rows with one natural key the later is stored.
async fn upsert_with_batch_rollup(
    tx: &mut Tx,
    source: &str,
    width_secs: i64,
    rows: &[UsageRecord],
    now: i64,
) -> Result<u64, StoreError> {
    let rows = last_of_each(rows);
    let span = rows
        .iter()
        .map(|r| r.bucket_start)
        .min()
        .zip(rows.iter().map(|r| r.bucket_start).max());
    let mut rollup = BatchRollup::new(tx, source, width_secs, span).await?;
    rollup.add(&rows);
    if rollup.overwrites(tx).await? {
        return upsert_sorted(tx, source, width_secs, &rows, now).await;
    }
    on_tx!(tx, |e| sqlx::query(
        "INSERT INTO rollup_paused (paused) VALUES (1)"
    )
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    let changed = upsert_sorted(tx, source, width_secs, &rows, now).await?;
    rollup.write(tx).await?;
    on_tx!(tx, |e| sqlx::query("DELETE FROM rollup_paused")
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(changed)
}

async fn upsert_rows(
    tx: &mut Tx,
    source: &str,
    width_secs: i64,
    rows: &[UsageRecord],
    now: i64,
) -> Result<u64, StoreError> {
    // In the table's key order: a poll's page holds hours of every key, and writing it hour
    // by hour touched every key's leaf once per hour (#16: 1,000 keys' 8-day backfill stored
    // a 20,000-row page in ~400 ms; sorted, ~155 ms).
    // Of two rows with one natural key the later wins, and only it is written: PostgreSQL's
    // upsert must not meet one row twice in a statement.
    let rows = last_of_each(rows);
    upsert_sorted(tx, source, width_secs, &rows, now).await
}

/// Upserts `rows`, in the order given; how many were new or changed.
async fn upsert_sorted(
    tx: &mut Tx,
    source: &str,
    width_secs: i64,
    rows: &[&UsageRecord],
    now: i64,
) -> Result<u64, StoreError> {
    let mut changed = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut qb = insert_values("usage_buckets", source, width_secs, chunk, now);
        qb.push(" ");
        qb.push(upsert_clause());
        changed += qb.execute(tx).await?;
    }
    Ok(changed)
}

/// `INSERT INTO {table} (…) VALUES (…), …` for `rows`: the columns of `usage_buckets` (and of
/// `usage_staging`, which has the same), without a conflict clause.
pub(super) fn insert_values<'q>(
    table: &str,
    source: &'q str,
    width_secs: i64,
    rows: &[&'q UsageRecord],
    now: i64,
) -> Builder<'q> {
    let mut qb: Builder = Builder::new(format!(
        "INSERT INTO {table} (source, key_id, bucket_width, bucket_start, model,
            {}, web_search_requests, requests, cost_usd, updated_at) ",
        tokens::list()
    ));
    qb.push_values(rows, |mut b, r| {
        b.push_bind(source)
            .push_bind(&r.key_id)
            .push_bind(width_secs)
            .push_bind(r.bucket_start)
            .push_bind(&r.model);
        for n in tokens::column_values(&r.tokens) {
            b.push_bind(n);
        }
        b.push_bind(r.web_search_requests)
            .push_bind(r.requests)
            .push_bind(r.cost_usd)
            .push_bind(now);
    });
    qb
}

/// The conflict clause of every write into `usage_buckets`. Overwrite, never add: a re-read
/// bucket replaces what was stored. Unchanged rows are left alone, so a re-poll of settled
/// data writes nothing (and the rollup triggers do not fire).
pub(super) fn upsert_clause() -> String {
    format!(
        "ON CONFLICT (source, key_id, bucket_width, bucket_start, model) DO UPDATE SET
            {},
            web_search_requests = excluded.web_search_requests,
            requests = excluded.requests,
            cost_usd = excluded.cost_usd,
            updated_at = excluded.updated_at
         WHERE {}
            OR usage_buckets.web_search_requests IS DISTINCT FROM excluded.web_search_requests
            OR usage_buckets.requests IS DISTINCT FROM excluded.requests
            OR usage_buckets.cost_usd IS DISTINCT FROM excluded.cost_usd",
        tokens::each(|c| format!("{c} = excluded.{c}"), ", "),
        tokens::each(
            |c| format!("usage_buckets.{c} IS DISTINCT FROM excluded.{c}"),
            " OR "
        ),
    )
}

/// The SELECT of the bucket reads (`history`, `/api/v1/usage`) up to its WHERE: a
/// [`HistoryRow`] per row.
pub(super) fn history_select() -> String {
    format!(
        "SELECT source, bucket_start, bucket_width, model, {},
                web_search_requests, requests, cost_usd
         FROM usage_buckets",
        tokens::list()
    )
}
