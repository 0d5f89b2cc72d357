//! Pruning old data in small batches, so a prune never holds the write lock for long.

use super::db::{fenced, on, on_tx};
use super::{Store, StoreError};

/// Rows deleted per transaction.
const BATCH: i64 = 5_000;

/// What one prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub usage_rows: u64,
    /// Rows of `billed_costs` and `provider_costs`.
    pub billed_rows: u64,
    pub alerts: u64,
    pub digest_sends: u64,
}

impl Store {
    /// Deletes up to one batch of usage rows of `width_secs` that started before `before`;
    /// returns how many went (0 when done).
    pub async fn prune_usage_batch(&self, width_secs: i64, before: i64) -> Result<u64, StoreError> {
        let deleted = fenced!(self, |e| sqlx::query(
            "DELETE FROM usage_buckets
             WHERE (source, key_id, bucket_width, bucket_start, model) IN (
                 SELECT source, key_id, bucket_width, bucket_start, model FROM usage_buckets
                 WHERE bucket_width = $1 AND bucket_start < $2 LIMIT $3)",
        )
        .bind(width_secs)
        .bind(before)
        .bind(BATCH)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
        if deleted > 0 {
            self.usage_deleted(width_secs, before);
        }
        Ok(deleted)
    }

    /// The start of the newest stored usage bucket of `width_secs`, if any: retention never
    /// deletes data newer than this minus the retention, whatever the clock says.
    pub async fn newest_usage_bucket(&self, width_secs: i64) -> Result<Option<i64>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT MAX(bucket_start) FROM usage_buckets WHERE bucket_width = $1",
        )
        .bind(width_secs)
        .fetch_one(e)
        .await)?)
    }

    /// The newest stored day of the provider's cost report (either table), if any.
    pub async fn newest_cost_day(&self) -> Result<Option<i64>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT MAX(d) FROM (SELECT MAX(day_start) AS d FROM billed_costs
                                 UNION ALL SELECT MAX(day_start) FROM provider_costs) AS days",
        )
        .fetch_one(e)
        .await)?)
    }

    /// Deletes the provider's cost report (per key and per line) of days before `before`
    /// (small: a few rows per day).
    pub async fn prune_billed(&self, before: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        for table in ["billed_costs", "provider_costs"] {
            n += fenced!(self, |e| sqlx::query(&format!(
                "DELETE FROM {table} WHERE day_start < $1"
            ))
            .bind(before)
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(n)
    }

    /// Deletes digests sent (or given up) that were queued before `before`; pending ones are
    /// kept, and so is each digest's newest send: it is what says its latest period went out (a
    /// weekly digest whose record was pruned on Tuesday would go out again every day that week).
    pub async fn prune_digest_sends(&self, before: i64) -> Result<u64, StoreError> {
        Ok(fenced!(self, |e| sqlx::query(
            "DELETE FROM digest_sends
             WHERE state != 'pending' AND created_at < $1
               AND created_at < (SELECT MAX(newest.created_at) FROM digest_sends newest
                                 WHERE newest.digest = digest_sends.digest
                                   AND newest.notifier = digest_sends.notifier)",
        )
        .bind(before)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?)
    }

    /// Deletes up to one batch of alerts resolved before `before`, with their state changes and
    /// finished deliveries; firing alerts and pending deliveries are never pruned.
    pub async fn prune_alerts_batch(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let ids: Vec<String> = on_tx!(&mut tx, |e| {
            sqlx::query_scalar(
            "SELECT id FROM alerts WHERE status = 'resolved' AND ends_at < $1
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = alerts.id AND d.state = 'pending')
             LIMIT $2",
        )
        .bind(before)
        .bind(BATCH)
        .fetch_all(e)
        .await
        })?;
        let list = serde_json::Value::from(ids.clone()).to_string();
        for table in ["deliveries", "alert_events"] {
            on_tx!(&mut tx, |e| sqlx::query(&format!(
                "DELETE FROM {table} WHERE alert_id IN {}",
                self.db.backend().json_text_list(1)
            ))
            .bind(&list)
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
        }
        on_tx!(&mut tx, |e| sqlx::query(&format!(
            "DELETE FROM alerts WHERE id IN {}",
            self.db.backend().json_text_list(1)
        ))
        .bind(&list)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}
