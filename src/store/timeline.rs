//! An alert's story for the incident view: when it fired (again) or resolved and whether a
//! silence held it back, and where each state change was delivered — read in one query per
//! table for the alerts of one key.

use super::db::on;
use super::{Store, StoreError};

/// One line of an alert's timeline.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TimelineEntry {
    pub alert_id: String,
    /// Unix seconds.
    pub at: i64,
    /// `firing`, `resolved`, or `delivered` / `pending` / `expired` for a delivery.
    pub what: String,
    /// The notifier of a delivery; empty for a state change.
    pub notifier: String,
    /// For a state change: 1 when a silence held its notifications back. For a delivery: what
    /// the receiver answered last.
    pub detail: Option<String>,
}

impl Store {
    /// The state changes and deliveries of `alert_ids`, oldest first.
    pub async fn timeline(&self, alert_ids: &[&str]) -> Result<Vec<TimelineEntry>, StoreError> {
        if alert_ids.is_empty() {
            return Ok(Vec::new());
        }
        // `$1…$n` for the events, `$n+1…$2n` for the deliveries: the same ids twice.
        let n = alert_ids.len();
        let numbered = |from: usize| {
            (from..from + n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (events, deliveries) = (numbered(1), numbered(n + 1));
        let sql = format!(
            "SELECT alert_id, at, what, notifier, detail FROM (
                 SELECT alert_id, at, status AS what, '' AS notifier,
                        CASE WHEN silenced THEN 'silenced' END AS detail, seq, 0 AS rank
                 FROM alert_events WHERE alert_id IN ({events})
                 UNION ALL
                 SELECT alert_id, COALESCE(delivered_at, next_attempt_at) AS at, state AS what,
                        notifier, last_result AS detail, event_seq AS seq, 1 AS rank
                 FROM deliveries WHERE alert_id IN ({deliveries})) AS story
             ORDER BY at, seq, rank, notifier"
        );
        Ok(on!(self.db, |e| {
            let mut q = sqlx::query_as(&sql);
            for id in alert_ids.iter().chain(alert_ids) {
                q = q.bind(*id);
            }
            q.fetch_all(e).await
        })?)
    }
}
