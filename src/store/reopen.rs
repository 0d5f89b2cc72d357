//! Alerts resolved by a clock that was ahead: a resolution dated after "now" cannot be true,
//! so it is undone before detection runs and the rules judge the condition again.

use super::alerts::{record_event, silenced, AlertRow, ALERT_COLUMNS};
use super::db::on_tx;
use super::deliveries::enqueue;
use super::{Route, StateChange, Store, StoreError};
use crate::model::{Alert, AlertStatus};

/// A resolution this far after "now" was made by a clock that was ahead (clocks slewed by NTP
/// move by far less).
const CLOCK_SLACK_SECS: i64 = 60;

impl Store {
    /// Re-opens every alert whose resolution is dated more than a minute after `now` (the clock
    /// jumped forward, resolved it, and came back), records the firing again and queues its
    /// notifications, so a live spike or today's budget crossing is not lost for good.
    pub async fn reopen_future_resolutions(
        &self,
        now: i64,
        routes: &[Route],
    ) -> Result<Vec<StateChange>, StoreError> {
        let mut tx = self.begin().await?;
        let rows: Vec<AlertRow> = on_tx!(&mut tx, |e| sqlx::query_as(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE status = 'resolved' AND ends_at > $1"
        ))
        .bind(now + CLOCK_SLACK_SECS)
        .fetch_all(e)
        .await)?;
        let mut made = Vec::new();
        for row in rows {
            let mut alert = Alert::try_from(row)?;
            // Set: the query asks for `ends_at > now`.
            let ended = alert.ends_at.unwrap_or_default();
            on_tx!(&mut tx, |e| sqlx::query(
                "UPDATE alerts SET status = 'firing', ends_at = NULL, last_evaluated_at = $1
                 WHERE id = $2",
            )
            .bind(now)
            .bind(&alert.id)
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
            alert.status = AlertStatus::Firing;
            alert.ends_at = None;
            let silenced = silenced(&mut tx, &alert, now).await?;
            let seq = record_event(&mut tx, &alert.id, AlertStatus::Firing, now, silenced).await?;
            if !silenced {
                enqueue(&mut tx, seq, &alert, routes, now).await?;
            }
            tracing::warn!(alert = %alert.id, resolved_at = ended, now,
                "an alert was resolved at a time still in the future (the clock was ahead): firing again until detection judges it anew");
            made.push(StateChange {
                alert_id: alert.id,
                status: AlertStatus::Firing,
                silenced,
            });
        }
        tx.commit().await?;
        Ok(made)
    }
}
