//! The reads detection needs: per-key bucket series and per-key spend over a period.

use super::db::on;
use futures_util::TryStreamExt;

use super::decode::Count;
use super::packed::{self, packed};
use super::points::Points;
use super::{tokens, Store, StoreError};
use crate::detect::SpikeMetric;
use crate::providers::WORKBENCH_KEY_ID;

/// Reads of at most this many buckets a key (`to` is inclusive) come as one row (see `packed`).
const ONE_ROW_BUCKETS: i64 = 8;

/// One key's buckets, oldest first: (bucket start, value of the metric). Unpriced rows count
/// 0 USD for the cost metric.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySeries {
    pub source: String,
    pub key_id: String,
    pub points: Points,
}

/// One key's buckets packed as `start,value;…` (see [`Store::usage_series`]).
#[derive(sqlx::FromRow)]
struct PackedSeries {
    source: String,
    key_id: String,
    packed: String,
}

/// One deactivated key's usage in a bucket (see [`Store::deactivated_key_usage`]).
#[derive(sqlx::FromRow)]
struct KeyUsage {
    source: String,
    key_id: String,
    cost_usd: f64,
    #[sqlx(try_from = "Count")]
    tokens: i64,
}

impl Store {
    /// Every key's buckets of `width_secs` starting in `[from, to]`, summed over models, in
    /// (source, key id) order.
    ///
    /// Driven by the inventory: for each key (every key with usage has a row, see
    /// `note_usage_keys`) one seek into the primary key at `(source, key_id, width, from)`, so
    /// a read of the last hour touches only that hour's rows and a read of the hourly window
    /// never walks the minute stream's rows. Returns one row per key with its buckets packed as
    /// text (`start,value;…`): moving 1.7 million rows one by one through sqlx's worker thread
    /// costs several seconds, one row per key a few milliseconds (and a read of a few buckets,
    /// as the detection cache makes, comes as one row for all keys: 10,000 rows took ~150 ms
    /// to hand over). Rows of several models in one
    /// bucket are added up while unpacking. Usage without a key (`workbench`, not in the
    /// inventory) is read per source after.
    ///
    /// Cost travels as whole nano-dollars: integers print and parse faster than floats.
    pub async fn usage_series(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
        metric: SpikeMetric,
    ) -> Result<Vec<KeySeries>, StoreError> {
        self.series(width_secs, from, to, metric, None).await
    }

    /// As [`Store::usage_series`], for the given (source, key id) only.
    pub async fn usage_series_of(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
        metric: SpikeMetric,
        keys: &[(&str, &str)],
    ) -> Result<Vec<KeySeries>, StoreError> {
        let keys = serde_json::to_string(keys).unwrap_or_default();
        self.series(width_secs, from, to, metric, Some(keys)).await
    }

    /// Every key's series, or those of `keys` (a JSON array of `[source, key id]`).
    async fn series(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
        metric: SpikeMetric,
        keys: Option<String>,
    ) -> Result<Vec<KeySeries>, StoreError> {
        let backend = self.db.backend();
        let value = match metric {
            SpikeMetric::Cost => backend.round_int("COALESCE(u.cost_usd, 0.0) * 1e9"),
            SpikeMetric::Tokens => tokens::total("u."),
        };
        let (join, concat) = (
            backend.driving_join(),
            backend.string_agg(&format!("u.bucket_start || ',' || ({value})"), ";"),
        );
        let scale = match metric {
            SpikeMetric::Cost => 1e-9,
            SpikeMetric::Tokens => 1.0,
        };
        let select = |driver: &str, group: &str| {
            format!(
                "SELECT k.source AS source, k.key_id AS key_id, {concat} AS packed
                 FROM {driver} k {join} usage_buckets u
                      ON u.source = k.source AND u.key_id = k.key_id
                 WHERE u.bucket_width = $1 AND u.bucket_start >= $2 AND u.bucket_start <= $3
                 GROUP BY {group}"
            )
        };
        // CROSS JOIN keeps the driver as the outer loop (SQLite does not reorder it).
        let sql = match keys {
            Some(_) => select(
                &format!(
                    "(SELECT value ->> 0 AS source, value ->> 1 AS key_id FROM {})",
                    backend.json_values(4, "j")
                ),
                "k.source, k.key_id",
            ),
            None => format!(
                "{} UNION ALL {}",
                select("api_keys", "k.source, k.key_id"),
                select(
                    &format!(
                        "(SELECT DISTINCT source, '{WORKBENCH_KEY_ID}' AS key_id FROM poll_state)"
                    ),
                    "k.source, k.key_id"
                )
            ),
        };
        let mut out = Vec::new();
        if (to - from) / width_secs.max(1) < ONE_ROW_BUCKETS {
            // A few buckets a key (the detection cache's reads of what changed): the row per
            // key costs more to hand over than to read, so all keys come as one row.
            let one_row = packed(backend, "source, key_id, packed", &sql);
            let text: String = on!(self.db, |e| {
                let mut query = sqlx::query_scalar(&one_row)
                    .bind(width_secs)
                    .bind(from)
                    .bind(to);
                if let Some(keys) = keys {
                    query = query.bind(keys);
                }
                query.fetch_one(e).await
            })?;
            let rows: Vec<(String, String, String)> = packed::unpack(&text)?;
            out.extend(rows.into_iter().map(|(source, key_id, p)| KeySeries {
                points: unpack(&p, scale, width_secs),
                source,
                key_id,
            }));
        } else {
            // The whole window: streamed, so that it is never held twice.
            on!(self.db, |e| {
                let mut query = sqlx::query_as::<_, PackedSeries>(&sql)
                    .bind(width_secs)
                    .bind(from)
                    .bind(to);
                if let Some(keys) = keys {
                    query = query.bind(keys);
                }
                let mut rows = query.fetch(e);
                while let Some(r) = rows.try_next().await? {
                    out.push(KeySeries {
                        points: unpack(&r.packed, scale, width_secs),
                        source: r.source,
                        key_id: r.key_id,
                    });
                }
            });
        }
        // The workbench rows (or a list's) come in their own order.
        out.sort_by(|a, b| (&a.source, &a.key_id).cmp(&(&b.source, &b.key_id)));
        Ok(out)
    }

    /// Usage in the bucket at `start` of keys whose status is deactivated:
    /// (source, key id, cost in USD, tokens). Driven by the inventory (a seek per deactivated
    /// key), never a scan of the bucket's rows.
    pub async fn deactivated_key_usage(
        &self,
        width_secs: i64,
        start: i64,
    ) -> Result<Vec<(String, String, f64, i64)>, StoreError> {
        let backend = self.db.backend();
        let sql = format!(
            "SELECT u.source AS source, u.key_id AS key_id,
                    {} AS cost_usd, SUM({}) AS tokens
             FROM api_keys k {} usage_buckets u
                  ON u.source = k.source AND u.key_id = k.key_id
             WHERE k.status IN ('inactive', 'archived', 'expired', 'deleted')
               AND u.bucket_width = $1 AND u.bucket_start = $2
             GROUP BY u.source, u.key_id",
            backend.sum_real("COALESCE(u.cost_usd, 0.0)"),
            tokens::total("u."),
            backend.driving_join()
        );
        let rows: Vec<KeyUsage> = on!(self.db, |e| sqlx::query_as(&sql)
            .bind(width_secs)
            .bind(start)
            .fetch_all(e)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.source, r.key_id, r.cost_usd, r.tokens))
            .collect())
    }
}

/// Parses `start,value;…` into buckets of `width` (values times `scale`), adding up rows of
/// one bucket (several models).
fn unpack(packed: &str, scale: f64, width: i64) -> Points {
    Points::from_rows(
        width,
        packed.split(';').filter_map(|p| {
            let (start, value) = p.split_once(',')?;
            Some((
                start.parse().ok()?,
                value.parse::<i64>().ok()? as f64 * scale,
            ))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::unpack;

    #[test]
    fn unpack_sorts_and_adds_models_of_one_bucket() {
        let points = unpack("7200,10;3600,5;7200,30", 0.5, 3600);
        let rows: Vec<(i64, f64)> = points.iter().collect();
        assert_eq!(rows, [(3600, 2.5), (7200, 20.0)]);
        // Sized to the buckets, not the rows (kept for the daemon's life).
        assert_eq!(points.bytes(), 2 * 8);
    }
}
