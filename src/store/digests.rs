//! The digest outbox.

use super::db::{fenced, on, on_tx};
use super::{DeliveryState, Store, StoreError};

/// One digest to send (or being retried) to one notifier.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DigestSend {
    pub digest: String,
    pub period: String,
    pub notifier: String,
    pub subject: String,
    pub body: String,
    pub payload: String,
    pub csv: String,
    pub attempts: i64,
    pub created_at: i64,
    /// When the next attempt is due (the queue time until a first attempt fails).
    pub next_attempt_at: i64,
}

impl Store {
    /// Whether the digest for `period` was already queued.
    pub async fn digest_queued(&self, digest: &str, period: &str) -> Result<bool, StoreError> {
        let n: i64 = on!(self.db, |e| sqlx::query_scalar(
            "SELECT COUNT(*) FROM digest_sends WHERE digest = $1 AND period = $2",
        )
        .bind(digest)
        .bind(period)
        .fetch_one(e)
        .await)?;
        Ok(n > 0)
    }

    /// Whether any period of `digest` was ever queued (false before its first send).
    pub async fn digest_ever_queued(&self, digest: &str) -> Result<bool, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM digest_sends WHERE digest = $1)"
        )
        .bind(digest)
        .fetch_one(e)
        .await)?)
    }

    /// Queues a digest for its notifiers in one transaction; a period already queued is left
    /// alone (never sent twice).
    pub async fn queue_digest(&self, sends: &[DigestSend], now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for s in sends {
            on_tx!(&mut tx, |e| {
                sqlx::query(
                "INSERT INTO digest_sends (digest, period, notifier, subject, body, payload, csv, state,
                                           created_at, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(&s.digest)
            .bind(&s.period)
            .bind(&s.notifier)
            .bind(&s.subject)
            .bind(&s.body)
            .bind(&s.payload)
            .bind(&s.csv)
            .bind(now)
            .bind(now)
            .execute(e)
            .await
.map(|r| r.rows_affected())
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every pending digest send, oldest first; the outbox decides which are due or expired.
    pub async fn pending_digests(&self) -> Result<Vec<DigestSend>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_as(
            "SELECT digest, period, notifier, subject, body, payload, csv, attempts, created_at,
                    next_attempt_at
             FROM digest_sends WHERE state = 'pending' ORDER BY created_at",
        )
        .fetch_all(e)
        .await)?)
    }

    /// Records the outcome of one attempt: delivered, retry at `retry_at`, or expired.
    pub async fn mark_digest(
        &self,
        s: &DigestSend,
        state: DeliveryState,
        retry_at: i64,
        now: i64,
        result: &str,
    ) -> Result<(), StoreError> {
        fenced!(self, |e| sqlx::query(
            "UPDATE digest_sends SET state = $1, attempts = attempts + 1, next_attempt_at = $2,
                delivered_at = $3, last_result = $4
             WHERE digest = $5 AND period = $6 AND notifier = $7 AND state = 'pending'",
        )
        .bind(state)
        .bind(retry_at)
        .bind((state == DeliveryState::Delivered).then_some(now))
        .bind(crate::config::secret::redact(result))
        .bind(&s.digest)
        .bind(&s.period)
        .bind(&s.notifier)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
