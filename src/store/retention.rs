//! Pruning old data in small batches, so a prune never holds the write lock for long.

use super::{Store, StoreError};

/// Rows deleted per transaction.
const BATCH: i64 = 5_000;

/// What one prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub usage_rows: u64,
    pub billed_rows: u64,
    pub alerts: u64,
}

impl Store {
    /// Deletes up to one batch of usage rows of `width_secs` that started before `before`;
    /// returns how many went (0 when done).
    pub async fn prune_usage_batch(&self, width_secs: i64, before: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM usage_buckets
             WHERE (source, key_id, bucket_width, bucket_start, model) IN (
                 SELECT source, key_id, bucket_width, bucket_start, model FROM usage_buckets
                 WHERE bucket_width = ? AND bucket_start < ? LIMIT ?)",
        )
        .bind(width_secs)
        .bind(before)
        .bind(BATCH)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Deletes billed cost of days before `before` (small: one row per key and day).
    pub async fn prune_billed(&self, before: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM billed_costs WHERE day_start < ?")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Deletes up to one batch of alerts resolved before `before`, with their state changes and
    /// finished deliveries; firing alerts and pending deliveries are never pruned.
    pub async fn prune_alerts_batch(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM alerts WHERE status = 'resolved' AND ends_at < ?
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = alerts.id AND d.state = 'pending')
             LIMIT ?",
        )
        .bind(before)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let list = serde_json::Value::from(ids.clone()).to_string();
        for table in ["deliveries", "alert_events"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE alert_id IN (SELECT value FROM json_each(?))"
            ))
            .bind(&list)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM alerts WHERE id IN (SELECT value FROM json_each(?))")
            .bind(&list)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}
