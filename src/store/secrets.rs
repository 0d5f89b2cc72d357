//! Random secrets keywatch makes for itself, kept in the database so every replica and every
//! restart uses the same one (see migrations/20261208040000_server_secrets.sql).

use super::db::on;
use super::{Store, StoreError};

impl Store {
    /// The secret called `name`: made (32 random bytes from the operating system, hex) the
    /// first time it is asked for, the same afterwards.
    pub async fn server_secret(&self, name: &str) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| {
            StoreError::Sqlx(sqlx::Error::Io(std::io::Error::other(format!(
                "no randomness from the operating system: {e}"
            ))))
        })?;
        let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        on!(self.db, |e| sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(&fresh)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT value FROM server_secrets WHERE name = $1"
        )
        .bind(name)
        .fetch_one(e)
        .await)?)
    }
}
