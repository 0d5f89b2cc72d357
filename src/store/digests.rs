//! The digest outbox.

use super::db::{fenced, on, on_tx};
use super::{Backend, DeliveryState, Store, StoreError};

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
    /// Claims `sends` for sending now, as [`Store::claim_deliveries`] claims deliveries; the
    /// (digest, period, notifier) of those claimed.
    pub async fn claim_digests(
        &self,
        sends: &[&DigestSend],
    ) -> Result<std::collections::HashSet<(String, String, String)>, StoreError> {
        if sends.is_empty() {
            return Ok(Default::default());
        }
        let keys: Vec<[&str; 3]> = sends
            .iter()
            .map(|s| [s.digest.as_str(), s.period.as_str(), s.notifier.as_str()])
            .collect();
        let list = serde_json::to_string(&keys).unwrap_or_else(|_| "[]".to_owned());
        let backend = self.db.backend();
        let wanted = format!(
            "(digest, period, notifier) IN (SELECT value ->> 0, value ->> 1, value ->> 2 FROM {})",
            backend.json_values(2, "j")
        );
        let sql = match backend {
            Backend::Sqlite => format!(
                "SELECT digest, period, notifier FROM digest_sends
                 WHERE state = 'pending' AND $1 IS NULL AND {wanted}"
            ),
            Backend::Postgres => format!(
                "UPDATE digest_sends SET claim_epoch = $1
                 WHERE (digest, period, notifier) IN (
                     SELECT digest, period, notifier FROM digest_sends
                     WHERE state = 'pending' AND {wanted}
                     FOR UPDATE SKIP LOCKED)
                 RETURNING digest, period, notifier"
            ),
        };
        let epoch = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => self.fence_epoch(),
        };
        let claimed: Vec<(String, String, String)> = fenced!(self, |e| sqlx::query_as(&sql)
            .bind(epoch)
            .bind(&list)
            .fetch_all(e)
            .await)?;
        Ok(claimed.into_iter().collect())
    }

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
