//! Changes made to keys at their providers (#18), by hand or by a containment policy.

use super::db::{on, on_tx, Tx};
use super::{Store, StoreError};

/// One recorded action.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KeyAction {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub source: String,
    pub key_id: String,
    /// `deactivate`, `activate` or `delete`.
    pub action: String,
    /// `done`, `failed` or `dry-run`.
    pub result: String,
    /// `policy:NAME` or `cli:USER`.
    pub by: String,
    pub reason: String,
    pub alert_id: Option<String>,
    pub policy: Option<String>,
    /// What the provider answered (redacted, shortened).
    pub answer: String,
    /// A failure that may succeed if tried again (timeout, rate limit, server error).
    pub temporary: bool,
}

impl From<&KeyAction> for crate::model::ActionObject {
    fn from(a: &KeyAction) -> Self {
        Self {
            action: a.action.clone(),
            at: chrono::DateTime::<chrono::Utc>::from_timestamp(a.at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            by: a.by.clone(),
            reason: a.reason.clone(),
            result: a.result.clone(),
        }
    }
}

/// A new action to record (its id and time are the store's).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAction<'a> {
    pub source: &'a str,
    pub key_id: &'a str,
    pub action: &'a str,
    pub result: &'a str,
    pub by: &'a str,
    pub reason: &'a str,
    pub alert_id: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub answer: &'a str,
    pub temporary: bool,
}

/// The longest provider answer kept, in characters.
const ANSWER_CHARS: usize = 2_000;

const COLUMNS: &str =
    "id, at, source, key_id, action, result, by, reason, alert_id, policy, answer, temporary";

/// The actions answering `alert_id`, oldest first, inside a transaction.
pub(super) async fn for_alert(tx: &mut Tx, alert_id: &str) -> Result<Vec<KeyAction>, StoreError> {
    Ok(on_tx!(tx, |e| sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM key_actions WHERE alert_id = $1 ORDER BY at, id"
    ))
    .bind(alert_id)
    .fetch_all(e)
    .await)?)
}

impl Store {
    /// Records `a` at `now`; where it was done, the key's inventory status becomes `status`
    /// in the same transaction (the next key listing confirms it). Returns the action's id.
    pub async fn record_action(
        &self,
        a: &NewAction<'_>,
        status: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let answer: String = crate::config::secret::redact(a.answer)
            .chars()
            .take(ANSWER_CHARS)
            .collect();
        let mut tx = self.begin().await?;
        let id: i64 = on_tx!(&mut tx, |e| sqlx::query_scalar(
            "INSERT INTO key_actions (at, source, key_id, action, result, by, reason, alert_id,
                policy, answer, temporary)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(now)
        .bind(a.source)
        .bind(a.key_id)
        .bind(a.action)
        .bind(a.result)
        .bind(a.by)
        .bind(crate::config::secret::redact(a.reason).as_ref())
        .bind(a.alert_id)
        .bind(a.policy)
        .bind(&answer)
        .bind(a.temporary)
        .fetch_one(e)
        .await)?;
        if let Some(status) = status {
            on_tx!(&mut tx, |e| sqlx::query(
                "UPDATE api_keys SET status = $1,
                        status_changed_at = CASE WHEN status = $1 THEN status_changed_at ELSE $2 END
                 WHERE source = $3 AND key_id = $4",
            )
            .bind(status)
            .bind(now)
            .bind(a.source)
            .bind(a.key_id)
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Every action on one key (all sources unless one is named), oldest first.
    pub async fn actions_for_key(
        &self,
        key_id: &str,
        source: Option<&str>,
    ) -> Result<Vec<KeyAction>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM key_actions
             WHERE key_id = $1 AND ($2 IS NULL OR source = $3) ORDER BY at, id"
        ))
        .bind(key_id)
        .bind(source)
        .bind(source)
        .fetch_all(e)
        .await)?)
    }

    /// The actions policies took in answer to `alert_id`, oldest first.
    pub async fn actions_for_alert(&self, alert_id: &str) -> Result<Vec<KeyAction>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM key_actions WHERE alert_id = $1 ORDER BY at, id"
        ))
        .bind(alert_id)
        .fetch_all(e)
        .await)?)
    }

    /// The actions answering each of `alert_ids`, by alert id, oldest first.
    pub async fn alert_actions(
        &self,
        alert_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<KeyAction>>, StoreError> {
        let ids = serde_json::to_string(alert_ids).unwrap_or_else(|_| "[]".to_owned());
        let rows: Vec<KeyAction> = on!(self.db, |e| sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM key_actions
             WHERE alert_id IN {} ORDER BY at, id",
            self.db.backend().json_text_list(1)
        ))
        .bind(ids)
        .fetch_all(e)
        .await)?;
        let mut by_alert: std::collections::HashMap<String, Vec<KeyAction>> =
            std::collections::HashMap::new();
        for r in rows {
            if let Some(id) = r.alert_id.clone() {
                by_alert.entry(id).or_default().push(r);
            }
        }
        Ok(by_alert)
    }
}
