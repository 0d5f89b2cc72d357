//! The reads detection needs: per-key bucket series and per-key spend over a period.

use futures_util::TryStreamExt;
use sqlx::Row;

use super::{Store, StoreError};

/// One key's buckets, oldest first: (bucket start, cost in USD, total tokens). Unpriced rows
/// count 0 USD here.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySeries {
    pub source: String,
    pub key_id: String,
    pub points: Vec<(i64, f64, i64)>,
}

impl Store {
    /// Every key's buckets of `width_secs` starting in `[from, to]`, summed over models, in one
    /// ordered scan (one query for all keys, streamed).
    pub async fn usage_series(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<KeySeries>, StoreError> {
        let mut rows = sqlx::query(
            "SELECT source, key_id, bucket_start, SUM(COALESCE(cost_usd, 0.0)),
                    SUM(uncached_input_tokens + cache_read_input_tokens + cache_write_5m_tokens
                        + cache_write_1h_tokens + output_tokens)
             FROM usage_buckets
             WHERE bucket_width = ? AND bucket_start >= ? AND bucket_start <= ?
             GROUP BY source, key_id, bucket_start
             ORDER BY source, key_id, bucket_start",
        )
        .bind(width_secs)
        .bind(from)
        .bind(to)
        .fetch(&self.pool);
        let mut out: Vec<KeySeries> = Vec::new();
        while let Some(r) = rows.try_next().await? {
            let source: &str = r.get(0);
            let key_id: &str = r.get(1);
            let point = (r.get(2), r.get(3), r.get(4));
            match out.last_mut() {
                Some(s) if s.key_id == key_id && s.source == source => s.points.push(point),
                _ => out.push(KeySeries {
                    source: source.to_owned(),
                    key_id: key_id.to_owned(),
                    points: vec![point],
                }),
            }
        }
        Ok(out)
    }

    /// Estimated spend per (source, key) of buckets starting in `[from, to)`.
    pub async fn spend_by_key(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, String, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, key_id, SUM(COALESCE(cost_usd, 0.0)) FROM usage_buckets
             WHERE bucket_width = ? AND bucket_start >= ? AND bucket_start < ?
             GROUP BY source, key_id",
        )
        .bind(width_secs)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
