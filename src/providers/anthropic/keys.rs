//! The key listing's items (both shapes: older `workspace_id`, newer `scope`), as
//! [`ApiKey`]s.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::providers::ApiKey;

#[derive(Deserialize)]
pub(super) struct KeyList {
    pub(super) data: Vec<KeyJson>,
    #[serde(default)]
    pub(super) has_more: bool,
    pub(super) last_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct KeyJson {
    id: String,
    name: Option<String>,
    status: Option<String>,
    created_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    partial_key_hint: Option<String>,
    /// Older shape.
    workspace_id: Option<String>,
    /// Newer shape: `{"type": "workspace", "workspace_id": …}` or `{"type": "organization"}`.
    scope: Option<KeyScope>,
    /// `{"id": "user_…", "type": "user" | "service_account"}`; null for some legacy keys.
    created_by: Option<Creator>,
}

#[derive(Deserialize)]
struct Creator {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct KeyScope {
    workspace_id: Option<String>,
}

impl From<KeyJson> for ApiKey {
    fn from(k: KeyJson) -> Self {
        Self {
            workspace_id: k.workspace_id.or(k.scope.and_then(|s| s.workspace_id)),
            id: k.id,
            name: k.name,
            status: k.status.unwrap_or_else(|| "unknown".to_owned()),
            created_at: k.created_at,
            expires_at: k.expires_at,
            partial_key_hint: k.partial_key_hint,
            created_by: k.created_by.and_then(|c| {
                let id = c.id?;
                Some(format!("{}:{id}", c.kind.as_deref().unwrap_or("user")))
            }),
        }
    }
}
