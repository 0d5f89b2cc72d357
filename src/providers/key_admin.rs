//! Changing a key at its provider (#18): Anthropic sets a key's status
//! (`POST /v1/organizations/api_keys/{id}` with `{"status": …}`, reversible); OpenAI can only
//! delete a project key (`DELETE /v1/organization/projects/{project}/api_keys/{id}`,
//! irreversible). These are the only writes keywatch makes to a provider.

use reqwest::Method;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::http::PollError;
use super::ProviderClient;

/// What keywatch can do to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// Anthropic: status `inactive` (undo with `Activate`).
    Deactivate,
    /// Anthropic: status `active`.
    Activate,
    /// OpenAI: delete the project key. Cannot be undone.
    Delete,
}

impl KeyChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deactivate => "deactivate",
            Self::Activate => "activate",
            Self::Delete => "delete",
        }
    }

    /// The status the inventory records once the provider accepted the change.
    pub fn status_after(self) -> &'static str {
        match self {
            Self::Deactivate => "inactive",
            Self::Activate => "active",
            Self::Delete => "deleted",
        }
    }
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum KeyChangeError {
    /// This provider has no such change (Anthropic keys cannot be deleted by API, OpenAI keys
    /// cannot be deactivated).
    #[error("{0}")]
    Unsupported(String),
    /// A key id or project id that cannot be put in a URL path as it is.
    #[error("{0}")]
    BadId(String),
    #[error(transparent)]
    Provider(#[from] PollError),
}

impl KeyChangeError {
    /// Worth trying again later: a timeout, a rate limit, a server error.
    pub fn temporary(&self) -> bool {
        match self {
            Self::Provider(e) => {
                matches!(
                    e,
                    PollError::Timeout { .. } | PollError::Transport { .. } | PollError::Cancelled
                ) || matches!(e.status(), Some(429 | 500..=599))
            }
            _ => false,
        }
    }
}

/// Key and project ids go into URL paths: letters, digits, `_` and `-` only.
fn path_id(what: &str, id: &str) -> Result<(), KeyChangeError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeyChangeError::BadId(format!(
            "{what} {id:?} is not a provider id (letters, digits, _ and - only)"
        )))
    }
}

impl ProviderClient {
    /// Makes `change` to key `key_id` (in project `project`, OpenAI) and returns the
    /// provider's answer (the key object, or OpenAI's deletion receipt).
    pub async fn change_key(
        &self,
        change: KeyChange,
        key_id: &str,
        project: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Value, KeyChangeError> {
        path_id("key", key_id)?;
        match (self, change) {
            (Self::Anthropic(c), KeyChange::Deactivate | KeyChange::Activate) => {
                let path = format!("/v1/organizations/api_keys/{key_id}");
                let body = serde_json::json!({"status": change.status_after()});
                Ok(c.http()
                    .get_json(
                        &path,
                        || c.http().request(Method::POST, &path).json(&body),
                        cancel,
                    )
                    .await?)
            }
            (Self::Anthropic(_), KeyChange::Delete) => Err(KeyChangeError::Unsupported(
                "Anthropic's Admin API cannot delete a key: deactivate it instead \
                 (keywatch keys deactivate)"
                    .to_owned(),
            )),
            (Self::Openai(c), KeyChange::Delete) => {
                let Some(project) = project else {
                    return Err(KeyChangeError::Unsupported(format!(
                        "key {key_id} has no project in keywatch's inventory: an OpenAI key is \
                         deleted within its project (wait for the next poll to list it)"
                    )));
                };
                path_id("project", project)?;
                let path = format!("/v1/organization/projects/{project}/api_keys/{key_id}");
                Ok(c.http()
                    .get_json(&path, || c.http().request(Method::DELETE, &path), cancel)
                    .await?)
            }
            (Self::Openai(_), _) => Err(KeyChangeError::Unsupported(
                "OpenAI's Admin API cannot deactivate or reactivate a project key, only delete \
                 it (keywatch keys delete --yes, which cannot be undone)"
                    .to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_go_into_a_path() {
        assert!(path_id("key", "apikey_01Rj2N8SVvo6BePZj99NhmiT").is_ok());
        assert!(path_id("key", "key-abc_1").is_ok());
        for bad in ["", "../admin", "a/b", "k?x=1", "k%2F", "k ey"] {
            assert!(path_id("key", bad).is_err(), "{bad:?}");
        }
    }
}
