//! Usage by price class (#17): the part of each usage row that ran at a service tier other than
//! standard, US-only or in fast mode (`usage_splits`), so finance can split spend by tier.

use super::db::{fenced, on, Builder};
use super::{tokens, PeriodUsage, Store, StoreError, UsageRecord};
use crate::prices::TokenCounts;

/// The part of one usage row at one price class other than standard.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitRecord {
    pub key_id: String,
    pub model: String,
    pub bucket_start: i64,
    /// `batch`, `priority`, `standard/us`, `priority/fast`, …
    pub price_class: String,
    pub tokens: TokenCounts,
    pub cost_usd: Option<f64>,
}

/// Rows per statement: (key, bucket, model) triples in a delete, splits in an insert.
const CHUNK: usize = 100;

impl Store {
    /// Replaces the splits of the usage rows `rows` (one source and width) with `splits`, in
    /// one transaction. A row whose traffic is all standard loses its old splits.
    pub async fn store_splits(
        &self,
        source: &str,
        width_secs: i64,
        rows: &[UsageRecord],
        splits: &[SplitRecord],
        now: i64,
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (
            rows.iter().map(|r| r.bucket_start).min(),
            rows.iter().map(|r| r.bucket_start).max(),
        ) else {
            return Ok(());
        };
        // Most organisations run all-standard traffic: nothing to replace, nothing to write.
        let any_stored: bool = on!(self.db, |e| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM usage_splits
                            WHERE bucket_width = $1 AND bucket_start >= $2 AND bucket_start <= $3
                              AND source = $4)",
        )
        .bind(width_secs)
        .bind(first)
        .bind(last)
        .bind(source)
        .fetch_one(e)
        .await)?;
        if !any_stored && splits.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        if any_stored {
            for chunk in rows.chunks(CHUNK) {
                let mut qb: Builder = Builder::new("DELETE FROM usage_splits WHERE source = ");
                qb.push_bind(source)
                    .push(" AND bucket_width = ")
                    .push_bind(width_secs)
                    .push(" AND (key_id, bucket_start, model) IN (VALUES ");
                for (i, r) in chunk.iter().enumerate() {
                    qb.push(if i == 0 { "(" } else { ", (" })
                        .push_bind(&r.key_id)
                        .push(", ")
                        .push_bind(r.bucket_start)
                        .push(", ")
                        .push_bind(&r.model)
                        .push(")");
                }
                qb.push(")");
                qb.execute(&mut tx).await?;
            }
        }
        for chunk in splits.chunks(CHUNK) {
            let mut qb: Builder = Builder::new(format!(
                "INSERT INTO usage_splits (source, key_id, bucket_width, bucket_start, model,
                    price_class, {}, cost_usd, updated_at) ",
                tokens::list()
            ));
            qb.push_values(chunk, |mut b, s| {
                b.push_bind(source)
                    .push_bind(&s.key_id)
                    .push_bind(width_secs)
                    .push_bind(s.bucket_start)
                    .push_bind(&s.model)
                    .push_bind(&s.price_class);
                for v in tokens::column_values(&s.tokens) {
                    b.push_bind(v);
                }
                b.push_bind(s.cost_usd).push_bind(now);
            });
            qb.execute(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Split usage summed per period, source, key, model and price class, for buckets starting
    /// in each of `periods`.
    pub async fn splits_by_period(
        &self,
        width_secs: i64,
        periods: &[(i64, i64)],
    ) -> Result<Vec<(PeriodUsage, String)>, StoreError> {
        let spans = serde_json::to_string(periods).unwrap_or_else(|_| "[]".to_owned());
        let backend = self.db.backend();
        let sql = format!(
            "SELECT p.key AS period, s.source AS source, s.key_id AS key_id, s.model AS model,
                    s.price_class AS price_class, {},
                    CAST(NULL AS BIGINT) AS requests, {} AS cost_usd,
                    SUM(CASE WHEN s.cost_usd IS NULL THEN {} ELSE 0 END) AS unpriced_tokens
             FROM {}
             JOIN usage_splits s ON s.bucket_width = $2
                  AND s.bucket_start >= CAST(p.value ->> 0 AS BIGINT)
                  AND s.bucket_start < CAST(p.value ->> 1 AS BIGINT)
             GROUP BY p.key, s.source, s.key_id, s.model, s.price_class",
            tokens::sums("s."),
            backend.sum_real("COALESCE(s.cost_usd, 0.0)"),
            tokens::total("s."),
            backend.json_spans(1, "p")
        );
        let rows: Vec<SplitRow> = on!(self.db, |e| sqlx::query_as(&sql)
            .bind(spans)
            .bind(width_secs)
            .fetch_all(e)
            .await)?;
        Ok(rows.into_iter().map(|r| (r.usage, r.price_class)).collect())
    }

    /// Deletes the splits of `width_secs` in buckets that started before `before` (with the
    /// usage rows they are part of).
    pub async fn prune_splits(&self, width_secs: i64, before: i64) -> Result<u64, StoreError> {
        Ok(fenced!(self, |e| sqlx::query(
            "DELETE FROM usage_splits WHERE bucket_width = $1 AND bucket_start < $2"
        )
        .bind(width_secs)
        .bind(before)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?)
    }
}

#[derive(sqlx::FromRow)]
struct SplitRow {
    #[sqlx(flatten)]
    usage: PeriodUsage,
    price_class: String,
}
