//! A silence as `keywatch silences --format json` and `/api/v1/silences` show it.

use super::Silence;

impl Silence {
    /// `active`, `expired` or `removed` at `now`.
    pub fn state(&self, now: i64) -> &'static str {
        match self.removed_at {
            Some(_) => "removed",
            None if self.expires_at <= now => "expired",
            None => "active",
        }
    }

    /// `{id, key_id, rule, reason, created_at, expires_at, removed_at, state}`, times in RFC 3339.
    pub fn to_json(&self, now: i64) -> serde_json::Value {
        let at = crate::text::rfc3339;
        serde_json::json!({
            "id": self.id, "key_id": self.key_id, "rule": self.rule, "reason": self.reason,
            "created_at": at(self.created_at), "expires_at": at(self.expires_at),
            "removed_at": self.removed_at.map(at), "state": self.state(now),
        })
    }
}
