//! Per-source poll state: the usage cursor and the health of recent polls.

use super::db::{fenced, on, on_tx, Tx};
use sqlx::Row;

use super::{Store, StoreError};

/// What is known about one source's usage polling.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PollState {
    /// Unix seconds: the next poll re-reads usage from here. `None` before the first poll.
    pub cursor: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
    /// The HTTP status the provider answered the last failed poll with; `None` after a success,
    /// a failure without an answer, and in rows written before it was recorded.
    pub last_status: Option<u16>,
}

/// The poll-state stream of the key listing.
pub const KEYS_STREAM: &str = "keys";
/// The poll-state stream of the provider's daily cost report.
pub const COSTS_STREAM: &str = "costs:86400";

/// The poll-state stream name for usage at a bucket width.
pub fn usage_stream(width_secs: i64) -> String {
    format!("usage:{width_secs}")
}

fn state_from<R: Row>(r: &R) -> PollState
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    PollState {
        cursor: r.get("cursor"),
        last_attempt_at: r.get("last_attempt_at"),
        last_success_at: r.get("last_success_at"),
        consecutive_failures: r.get("consecutive_failures"),
        last_error: r.get("last_error"),
        last_status: r
            .get::<Option<i64>, _>("last_status")
            .and_then(|s| u16::try_from(s).ok()),
    }
}

impl Store {
    pub async fn usage_poll_state(
        &self,
        source: &str,
        width_secs: i64,
    ) -> Result<PollState, StoreError> {
        self.poll_state(source, &usage_stream(width_secs)).await
    }

    /// The state of one stream (`usage:<width>`, [`KEYS_STREAM`], [`COSTS_STREAM`]) of a
    /// source; the default before its first poll.
    pub async fn poll_state(&self, source: &str, stream: &str) -> Result<PollState, StoreError> {
        let row = on!(self.db, |e| sqlx::query(
            "SELECT cursor, last_attempt_at, last_success_at, consecutive_failures, last_error,
                    last_status
             FROM poll_state WHERE source = $1 AND stream = $2",
        )
        .bind(source)
        .bind(stream)
        .fetch_optional(e)
        .await
        .map(|row| row.as_ref().map(state_from)))?;
        Ok(row.unwrap_or_default())
    }

    /// Records how a usage poll ended. `error` is an operator-facing message; any configured
    /// secret in it is redacted. `status` is the provider's HTTP status when it answered the
    /// failed poll with one.
    pub async fn record_usage_poll(
        &self,
        source: &str,
        width_secs: i64,
        now: i64,
        error: Option<&str>,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        self.record_poll(source, &usage_stream(width_secs), now, error, status)
            .await
    }

    /// Records how one stream's poll ended: each stream (keys, usage, costs) keeps its own
    /// failure count and last error.
    pub async fn record_poll(
        &self,
        source: &str,
        stream: &str,
        now: i64,
        error: Option<&str>,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        fenced!(self, |e| {
            sqlx::query(
            "INSERT INTO poll_state (source, stream, last_attempt_at, last_success_at,
                                     consecutive_failures, last_error, last_status)
             VALUES ($1, $2, $3, CASE WHEN $4 IS NULL THEN $3 END, CASE WHEN $4 IS NULL THEN 0 ELSE 1 END, $4, $5)
             ON CONFLICT (source, stream) DO UPDATE SET
                last_attempt_at = excluded.last_attempt_at,
                last_success_at = COALESCE(excluded.last_success_at, poll_state.last_success_at),
                consecutive_failures =
                    CASE WHEN $4 IS NULL THEN 0 ELSE poll_state.consecutive_failures + 1 END,
                last_error = excluded.last_error,
                last_status = excluded.last_status",
        )
        .bind(source)
        .bind(stream)
        .bind(now)
        // The last line against a secret quoted in an error body (a provider or proxy echoing
        // the admin key): redacted before it is stored.
        .bind(error.map(crate::config::secret::redact))
        .bind(error.and(status).map(i64::from))
        .execute(e)
        .await
.map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}

impl Store {
    /// Sets (or clears) the cursor of `stream` alone.
    pub async fn set_stream_cursor(
        &self,
        source: &str,
        stream: &str,
        cursor: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        set_cursor(&mut tx, source, stream, cursor).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Sets the cursor of `stream` (`None` clears it) inside `tx`.
pub(super) async fn set_cursor(
    tx: &mut Tx,
    source: &str,
    stream: &str,
    cursor: impl Into<Option<i64>>,
) -> Result<(), StoreError> {
    let cursor: Option<i64> = cursor.into();
    on_tx!(tx, |e| sqlx::query(
        "INSERT INTO poll_state (source, stream, cursor) VALUES ($1, $2, $3)
         ON CONFLICT (source, stream) DO UPDATE SET cursor = excluded.cursor",
    )
    .bind(source)
    .bind(stream)
    .bind(cursor)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}
