//! The notification outbox.

use super::db::{fenced, on, on_tx, Tx};
use super::{Backend, Store, StoreError};
use crate::model::{stable_hash, Alert, Severity};

/// Where a delivery of an alert or a digest stands: the `state` column of `deliveries` and
/// `digest_sends`, stored as the lowercase name (the SQL of the outboxes filters on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet: due again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up on (too old, or its notifier is gone).
    Expired,
}

/// What a delivery passed over because a later state change of its alert replaced it records
/// as its result (it counts as delivered: there is nothing left to tell).
pub const SUPERSEDED: &str =
    "superseded by a later state change of the alert (Alertmanager is told the current one)";

/// Which notifier receives which severities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub notifier: String,
    pub min_severity: Severity,
}

/// One pending delivery.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Delivery {
    /// Stable across retries; sent as `webhook-id`.
    pub id: String,
    /// The alert state change it announces (`alert_events.seq`): later ones are newer.
    pub event_seq: i64,
    pub alert_id: String,
    pub notifier: String,
    /// The alert object (JSON) as it was at the state change.
    pub payload: String,
    pub attempts: i64,
    pub created_at: i64,
    /// When the next attempt is due.
    pub next_attempt_at: i64,
    /// Wall-clock milliseconds when it was queued (`None` for deliveries queued by an older
    /// keywatch): the start of the delivery latency.
    pub queued_at_ms: Option<i64>,
}

/// How many deliveries are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxCounts {
    pub pending: i64,
    pub delivered: i64,
    pub expired: i64,
}

/// Pending deliveries of one notifier.
#[derive(sqlx::FromRow)]
struct NotifierPending {
    notifier: String,
    pending: i64,
}

/// Queues the state change `seq` of `alert` for every route whose minimum severity it meets.
pub(super) async fn enqueue(
    tx: &mut Tx,
    seq: i64,
    alert: &Alert,
    routes: &[Route],
    now: i64,
) -> Result<(), StoreError> {
    let payload = alert.wire().to_json_string();
    for route in routes.iter().filter(|r| alert.severity >= r.min_severity) {
        // Deterministic: one delivery per state change and notifier (an alert re-opened after
        // a clock jump is a new state change, so it is delivered again).
        let seq_text = seq.to_string();
        let hash = stable_hash(&[&alert.id, alert.status.as_str(), &route.notifier, &seq_text]);
        let id = format!("msg_{hash:016x}");
        on_tx!(tx, |e| sqlx::query(
            "INSERT INTO deliveries (id, event_seq, alert_id, notifier, payload, severity, state,
                                     created_at, next_attempt_at, queued_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9)
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(seq)
        .bind(&alert.id)
        .bind(&route.notifier)
        .bind(&payload)
        .bind(alert.severity.as_str())
        .bind(now)
        .bind(now)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

impl Store {
    /// Whether a later state change of `d`'s alert was queued for the same notifier and not
    /// given up: `d`, still pending, is out of date (Alertmanager would be told an old state).
    pub async fn superseded(&self, d: &Delivery) -> Result<bool, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deliveries
                            WHERE alert_id = $1 AND notifier = $2 AND event_seq > $3
                              AND state != 'expired')",
        )
        .bind(&d.alert_id)
        .bind(&d.notifier)
        .bind(d.event_seq)
        .fetch_one(e)
        .await)?)
    }

    /// Whether a firing of `d`'s alert was queued for the same notifier before `d` (in any
    /// state): `d`, if firing too, follows it up (an escalation, a re-opening).
    pub async fn fired_before(&self, d: &Delivery) -> Result<bool, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deliveries d JOIN alert_events e ON e.seq = d.event_seq
                            WHERE d.alert_id = $1 AND d.notifier = $2 AND d.event_seq < $3
                              AND e.status = 'firing')",
        )
        .bind(&d.alert_id)
        .bind(&d.notifier)
        .bind(d.event_seq)
        .fetch_one(e)
        .await)?)
    }

    /// The payloads delivered for `alert_id` to `notifier`, oldest first: what the receiver
    /// was told before (Alertmanager ends label sets no longer current). Deliveries passed over
    /// as superseded ([`SUPERSEDED`]) told it nothing.
    pub async fn sent_payloads(
        &self,
        alert_id: &str,
        notifier: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT payload FROM deliveries
             WHERE alert_id = $1 AND notifier = $2 AND state = 'delivered'
               AND last_result NOT LIKE 'superseded%'
             ORDER BY event_seq",
        )
        .bind(alert_id)
        .bind(notifier)
        .fetch_all(e)
        .await)?)
    }

    /// Every pending delivery, oldest first; the outbox decides which are due or expired.
    pub async fn pending_deliveries(&self) -> Result<Vec<Delivery>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_as(
            "SELECT id, event_seq, alert_id, notifier, payload, attempts, created_at,
                    next_attempt_at, queued_at_ms
             FROM deliveries
             WHERE state = 'pending'
             ORDER BY created_at, id",
        )
        .fetch_all(e)
        .await)?)
    }

    /// Claims `ids` for sending now and returns those claimed. On PostgreSQL the claim is a
    /// fenced transaction that stamps each row still pending with this leader's lease epoch
    /// (`claim_epoch`), skipping rows another transaction holds (`FOR UPDATE SKIP LOCKED`): a
    /// replica that lost the lease claims nothing, and a takeover re-sends only what was in
    /// flight, under the same `webhook-id`. On SQLite (one process) every id still pending.
    pub async fn claim_deliveries(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
        let backend = self.db.backend();
        let sql = match backend {
            Backend::Sqlite => format!(
                "SELECT id FROM deliveries WHERE state = 'pending' AND id IN {}",
                backend.json_text_list(2)
            ),
            Backend::Postgres => format!(
                "UPDATE deliveries SET claim_epoch = $1
                 WHERE id IN (SELECT id FROM deliveries
                              WHERE state = 'pending' AND id IN {}
                              FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                backend.json_text_list(2)
            ),
        };
        let epoch = self.fence_epoch();
        let claimed: Vec<String> = fenced!(self, |e| {
            let mut q = sqlx::query_scalar(&sql);
            if backend == Backend::Postgres {
                q = q.bind(epoch);
            } else {
                q = q.bind(None::<i64>);
            }
            q.bind(&list).fetch_all(e).await
        })?;
        Ok(claimed.into_iter().collect())
    }

    pub async fn mark_delivered(&self, id: &str, now: i64, result: &str) -> Result<(), StoreError> {
        fenced!(self, |e| sqlx::query(
            "UPDATE deliveries SET state = 'delivered', delivered_at = $1, attempts = attempts + 1,
                last_result = $2 WHERE id = $3 AND state = 'pending'",
        )
        .bind(now)
        .bind(result)
        .bind(id)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records a failed attempt; the next one is due at `next_attempt_at`.
    pub async fn mark_failed(
        &self,
        id: &str,
        next_attempt_at: i64,
        result: &str,
    ) -> Result<(), StoreError> {
        fenced!(self, |e| sqlx::query(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $1, last_result = $2
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(next_attempt_at)
        .bind(result)
        .bind(id)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Gives up on a delivery that stayed undeliverable past its maximum age.
    pub async fn mark_expired(&self, id: &str, result: &str) -> Result<(), StoreError> {
        fenced!(self, |e| {
            sqlx::query("UPDATE deliveries SET state = 'expired', last_result = $1 WHERE id = $2 AND state = 'pending'")
            .bind(result)
            .bind(id)
            .execute(e)
            .await
.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE state = 'pending') AS pending,
                    COUNT(*) FILTER (WHERE state = 'delivered') AS delivered,
                    COUNT(*) FILTER (WHERE state = 'expired') AS expired
             FROM deliveries",
        )
        .fetch_one(e)
        .await)?)
    }
}

impl Store {
    /// Pending deliveries per notifier (for the metrics gauge).
    pub async fn pending_by_notifier(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<NotifierPending> = on!(self.db, |e| sqlx::query_as(
            "SELECT notifier, COUNT(*) AS pending FROM deliveries WHERE state = 'pending'
             GROUP BY notifier",
        )
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(|r| (r.notifier, r.pending)).collect())
    }
}
