//! Containment (#18): changing a key at its provider — deactivating a leaking Anthropic key,
//! deleting an OpenAI project key — by hand (`keywatch keys …`) or by an opt-in policy in
//! answer to a firing alert. [`act`] makes one change and records it, whatever came of it;
//! [`policy`] decides, from the alerts a pass fired, which changes the policies ask for.

pub mod policy;

use tokio_util::sync::CancellationToken;

use crate::config::{PollConfig, SourceConfig};
use crate::providers::key_admin::{KeyChange, KeyChangeError};
use crate::providers::{PollError, ProviderClient, RetryPolicy};
use crate::store::{NewAction, Store, StoreError, StoredKey};

/// What came of one action.
#[derive(Debug)]
pub enum Outcome {
    /// The provider accepted it; its answer (JSON, as text).
    Done(String),
    /// Not made: a dry-run policy records what it would have done.
    DryRun,
    /// The provider refused or could not be reached.
    Failed(KeyChangeError),
}

impl Outcome {
    /// `done`, `dry-run` or `failed`, as recorded.
    pub fn result(&self) -> &'static str {
        match self {
            Self::Done(_) => "done",
            Self::DryRun => "dry-run",
            Self::Failed(_) => "failed",
        }
    }
}

/// One change to make: to which key, why, and on whose behalf.
#[derive(Debug, Clone)]
pub struct Order<'a> {
    pub key: &'a StoredKey,
    pub change: KeyChange,
    /// `cli:USER` or `policy:NAME`.
    pub by: String,
    pub reason: String,
    pub alert_id: Option<String>,
    pub policy: Option<String>,
    pub dry_run: bool,
}

/// The longest one change may take: a detection pass waits for its containment.
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A client able to change keys of `source`: at most [`WRITE_TIMEOUT`] (or `poll.timeout` if
/// shorter) and no retries inside one call (a write that timed out may have been done; a
/// policy tries again on a later pass, a person by running the command again).
pub fn client(source: &SourceConfig, poll: &PollConfig) -> Result<ProviderClient, PollError> {
    let retry = RetryPolicy {
        retries: 0,
        backoff: poll.retry_backoff.0,
    };
    ProviderClient::new(
        source,
        poll.timeout.0.min(WRITE_TIMEOUT),
        retry,
        poll.max_page_mib as usize * 1024 * 1024,
    )
}

/// Makes `order`'s change through `client` (nothing for a dry run) and records it with the
/// provider's answer; a change the provider accepted updates the key's inventory status at
/// once. Returns what came of it and the recorded action's id.
pub async fn act(
    store: &Store,
    client: Option<&ProviderClient>,
    order: &Order<'_>,
    now: i64,
    cancel: &CancellationToken,
) -> Result<(Outcome, i64), StoreError> {
    let key = order.key;
    let outcome = if order.dry_run {
        Outcome::DryRun
    } else if let Some(client) = client {
        match client
            .change_key(
                order.change,
                &key.key_id,
                key.workspace_id.as_deref(),
                cancel,
            )
            .await
        {
            Ok(answer) => Outcome::Done(answer.to_string()),
            Err(e) => Outcome::Failed(e),
        }
    } else {
        Outcome::Failed(KeyChangeError::Unsupported(format!(
            "source {:?} has no working client (see the log at start)",
            key.source
        )))
    };
    let answer = match &outcome {
        Outcome::Done(a) => a.clone(),
        Outcome::DryRun => format!(
            "dry run: would {} {} (no call made)",
            order.change.as_str(),
            key.key_id
        ),
        Outcome::Failed(e) => e.to_string(),
    };
    let status = matches!(outcome, Outcome::Done(_)).then(|| order.change.status_after());
    let id = store
        .record_action(
            &NewAction {
                source: &key.source,
                key_id: &key.key_id,
                action: order.change.as_str(),
                result: outcome.result(),
                by: &order.by,
                reason: &order.reason,
                alert_id: order.alert_id.as_deref(),
                policy: order.policy.as_deref(),
                answer: &answer,
                temporary: matches!(&outcome, Outcome::Failed(e) if e.temporary()),
            },
            status,
            now,
        )
        .await?;
    crate::metrics::containment_action(
        order.policy.as_deref().unwrap_or("manual"),
        outcome.result(),
    );
    tracing::warn!(
        source = %key.source,
        key = %key.key_id,
        action = order.change.as_str(),
        result = outcome.result(),
        by = %order.by,
        "key action recorded"
    );
    Ok((outcome, id))
}

/// What a responder reads when a change was refused: the provider's words and what to do.
pub fn explain(e: &KeyChangeError) -> String {
    match e {
        KeyChangeError::Provider(p) if p.status() == Some(403) => format!(
            "{p}\nThe admin key may read but not change keys: give it a role that may manage API \
             keys, or change the key in the provider's console."
        ),
        KeyChangeError::Provider(p) if p.status() == Some(404) => {
            format!("{p}\nThe provider does not know this key (already deleted?).")
        }
        other => other.to_string(),
    }
}
