//! Usage on models without a price: what the `unpriced_usage` rule reports, and the keys the
//! spike rule judges by tokens because their dollars are only a floor.

use super::db::on;
use super::{tokens, Store, StoreError};

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

/// A row of [`Store::unpriced_usage`]'s query, before empty sums are dropped.
#[derive(sqlx::FromRow)]
struct UnpricedRow {
    source: String,
    key_id: String,
    model: String,
    tokens: f64,
    first_bucket: i64,
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
        let backend = self.db.backend();
        let indexed = match backend {
            crate::store::Backend::Sqlite => "INDEXED BY usage_buckets_unpriced",
            crate::store::Backend::Postgres => "",
        };
        let sql = format!(
            "SELECT source, key_id, model, {} AS tokens, MIN(bucket_start) AS first_bucket
             FROM usage_buckets {indexed}
             WHERE cost_usd IS NULL AND bucket_width = $1 AND bucket_start >= $2 AND bucket_start <= $3
             GROUP BY source, key_id, model
             ORDER BY source, key_id, model",
            backend.total(&tokens::total(""))
        );
        let rows: Vec<UnpricedRow> = on!(self.db, |e| sqlx::query_as(&sql)
            .bind(width_secs)
            .bind(from)
            .bind(to)
            .fetch_all(e)
            .await)?;
        Ok(rows
            .into_iter()
            // `as` saturates for floats beyond i64.
            .filter(|r| r.tokens > 0.0)
            .map(|r| UnpricedUsage {
                source: r.source,
                key_id: r.key_id,
                model: r.model,
                tokens: r.tokens as i64,
                first_bucket: r.first_bucket,
            })
            .collect())
    }
}
