//! The key inventory.

use super::db::{on, on_tx, Builder, Tx};
use super::packed::{packed, packed_in_order, unpack};
use super::{tokens, Backend, Store, StoreError};
use crate::providers::ApiKey;

/// A key as stored: a row of `api_keys`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Deserialize)]
pub struct StoredKey {
    pub source: String,
    pub key_id: String,
    pub name: Option<String>,
    /// The provider's word (`active`, `inactive`, `archived`, …; `unknown` when first seen in
    /// usage; `deleted` when it left the listing): an open set, kept as text.
    pub status: String,
    pub created_at: Option<i64>,
    pub workspace_id: Option<String>,
    pub partial_key_hint: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub in_inventory: bool,
    /// When keywatch saw the status change; `None` when it had this status when first listed.
    pub status_changed_at: Option<i64>,
}

/// The columns of a [`StoredKey`].
const KEY_COLUMNS: &str = "source, key_id, name, status, created_at, workspace_id,
    partial_key_hint, first_seen, last_seen, in_inventory, status_changed_at";

impl Store {
    /// Replaces the source's inventory with a complete listing: listed keys are upserted. A key
    /// that was listed before and is missing now is kept (its history matters) but marked
    /// `deleted` as of now, so usage on it afterwards is `inactive_key_usage`. An empty listing
    /// for a source that had keys deletes nothing: it is more likely a provider glitch.
    pub async fn store_inventory(
        &self,
        source: &str,
        keys: &[ApiKey],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for chunk in keys.chunks(100) {
            let mut qb: Builder = Builder::new(
                "INSERT INTO api_keys (source, key_id, name, status, created_at, expires_at,
                    workspace_id, partial_key_hint, first_seen, last_seen, in_inventory,
                    created_by) ",
            );
            qb.push_values(chunk, |mut b, k| {
                b.push_bind(source)
                    .push_bind(&k.id)
                    .push_bind(&k.name)
                    .push_bind(&k.status)
                    .push_bind(k.created_at.map(|t| t.timestamp()))
                    .push_bind(k.expires_at.map(|t| t.timestamp()))
                    .push_bind(&k.workspace_id)
                    .push_bind(&k.partial_key_hint)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(true)
                    .push_bind(
                        k.created_by
                            .as_deref()
                            .map(|c| crate::text::clean(c).into_owned()),
                    );
            });
            qb.push(
                " ON CONFLICT (source, key_id) DO UPDATE SET
                    status_changed_at = CASE WHEN api_keys.status != excluded.status
                        AND api_keys.status != 'unknown' THEN excluded.last_seen ELSE api_keys.status_changed_at END,
                    name = excluded.name, status = excluded.status,
                    created_at = excluded.created_at, expires_at = excluded.expires_at,
                    workspace_id = excluded.workspace_id,
                    partial_key_hint = excluded.partial_key_hint,
                    created_by = excluded.created_by,
                    last_seen = excluded.last_seen, in_inventory = TRUE",
            );
            qb.execute(&mut tx).await?;
        }
        if keys.is_empty() {
            tracing::warn!(source, "the key listing is empty; no key is marked deleted");
        } else {
            let listed =
                serde_json::Value::from(keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>());
            let sql = format!(
                "UPDATE api_keys SET status = 'deleted', status_changed_at = $1, in_inventory = FALSE
                 WHERE source = $2 AND in_inventory AND key_id NOT IN {}",
                self.db.backend().json_text_list(3)
            );
            on_tx!(&mut tx, |e| {
                sqlx::query(&sql)
                    .bind(now)
                    .bind(source)
                    .bind(listed.to_string())
                    .execute(e)
                    .await
                    .map(|r| r.rows_affected())
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Who created each key, where the provider said: (source, key id) → `user:…`.
    pub async fn key_creators(
        &self,
    ) -> Result<std::collections::HashMap<(String, String), String>, StoreError> {
        let rows: Vec<(String, String, String)> = on!(self.db, |e| sqlx::query_as(
            "SELECT source, key_id, created_by FROM api_keys WHERE created_by IS NOT NULL",
        )
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(|(s, k, c)| ((s, k), c)).collect())
    }

    /// The stored keys with this id (one per source that has it).
    pub async fn keys_by_id(&self, key_id: &str) -> Result<Vec<StoredKey>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1 ORDER BY source"
        ))
        .bind(key_id)
        .fetch_all(e)
        .await)?)
    }

    /// Every stored key, by source and id.
    pub async fn all_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        // A row per key: read packed (see `packed`); the fields in KEY_COLUMNS' order.
        let backend = self.db.backend();
        let columns = match backend {
            Backend::Sqlite => KEY_COLUMNS.replace(
                "in_inventory",
                "json(CASE WHEN in_inventory THEN 'true' ELSE 'false' END)",
            ),
            // A BOOLEAN column is a JSON boolean already.
            Backend::Postgres => KEY_COLUMNS.to_owned(),
        };
        let sql = packed_in_order(
            backend,
            &columns,
            &format!("SELECT {KEY_COLUMNS} FROM api_keys"),
            "source, key_id",
        );
        let text: String = on!(self.db, |e| sqlx::query_scalar(&sql).fetch_one(e).await)?;
        unpack(&text)
    }
}

/// Records key ids seen in usage that the inventory does not know yet (status `unknown`), so a
/// key created between two listings is never invisible.
pub(super) async fn note_usage_keys(
    tx: &mut Tx,
    source: &str,
    key_ids: &[&str],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in key_ids.chunks(200) {
        let mut qb: Builder = Builder::new(
            "INSERT INTO api_keys (source, key_id, status, first_seen, last_seen, in_inventory) ",
        );
        qb.push_values(chunk, |mut b, id| {
            b.push_bind(source)
                .push_bind(*id)
                .push_bind("unknown")
                .push_bind(now)
                .push_bind(now)
                .push_bind(false);
        });
        qb.push(" ON CONFLICT (source, key_id) DO NOTHING");
        qb.execute(tx).await?;
    }
    Ok(())
}

impl Store {
    /// The start of the latest bucket with usage, per (source, key).
    pub async fn last_used(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        // Per key and width, the newest bucket with tokens, found walking back from the end of
        // the key's rows in the primary key (usually one step): a scan of every row grouped
        // by key took 1.8 s at 10,000 keys × 30 days.
        let newest = |width: i64| {
            format!(
                "COALESCE((SELECT u.bucket_start FROM usage_buckets u
                           WHERE u.source = k.source AND u.key_id = k.key_id
                             AND u.bucket_width = {width} AND {} > 0
                           ORDER BY u.bucket_start DESC LIMIT 1), -1)",
                tokens::total("u.")
            )
        };
        let widths: Vec<String> = crate::config::BucketWidth::ALL
            .iter()
            .map(|w| newest(w.seconds()))
            .collect();
        // The scalar max of -1 (no usage at that width) and each width's newest bucket.
        // A row per key: read packed (see `packed`).
        let backend = self.db.backend();
        let max = match backend {
            Backend::Sqlite => "MAX",
            Backend::Postgres => "GREATEST",
        };
        let sql = packed(
            backend,
            "source, key_id, bucket_start",
            &format!(
                "SELECT source, key_id, bucket_start FROM (
                     SELECT k.source AS source, k.key_id AS key_id, {max}(-1, {}) AS bucket_start
                     FROM api_keys k) AS newest
                 WHERE bucket_start >= 0",
                widths.join(", ")
            ),
        );
        let text: String = on!(self.db, |e| sqlx::query_scalar(&sql).fetch_one(e).await)?;
        unpack(&text)
    }
}
