//! Usage on models without a price: what the `unpriced_usage` rule reports, and the keys the
//! spike rule judges by tokens because their dollars are only a floor.

use sqlx::Row;

use super::{Store, StoreError};

/// Tokens of one key on one model without a price, in a span of buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct UnpricedUsage {
    pub source: String,
    pub key_id: String,
    pub model: String,
    /// All token classes, added up (saturating: provider numbers are not trusted).
    pub tokens: i64,
    /// Start of the first bucket in the span with such usage.
    pub first_bucket: i64,
}

impl Store {
    /// Per (source, key, model): tokens stored without a price in buckets of `width_secs`
    /// starting in `[from, to]`.
    pub async fn unpriced_usage(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<UnpricedUsage>, StoreError> {
        // TOTAL() sums as a float and cannot overflow as SUM() of integers can.
        let rows = sqlx::query(
            "SELECT source, key_id, model,
                    TOTAL(uncached_input_tokens + cache_read_input_tokens + cache_write_5m_tokens
                          + cache_write_1h_tokens + output_tokens),
                    MIN(bucket_start)
             FROM usage_buckets INDEXED BY usage_buckets_unpriced
             WHERE cost_usd IS NULL AND bucket_width = ? AND bucket_start >= ? AND bucket_start <= ?
             GROUP BY source, key_id, model
             ORDER BY source, key_id, model",
        )
        .bind(width_secs)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let tokens: f64 = r.get(3);
                // `as` saturates for floats beyond i64.
                (tokens > 0.0).then(|| UnpricedUsage {
                    source: r.get(0),
                    key_id: r.get(1),
                    model: r.get(2),
                    tokens: tokens as i64,
                    first_bucket: r.get(4),
                })
            })
            .collect())
    }
}
