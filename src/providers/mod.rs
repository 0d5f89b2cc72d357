//! Provider clients: what each provider's admin API says about keys and usage, mapped into
//! provider-neutral types. No scheduling or storage here.

pub mod anthropic;
mod http;

use chrono::{DateTime, Utc};

pub use http::{error_chain, HttpClient, PollError, RetryPolicy};

use crate::prices::TokenCounts;

/// The key id usage without an API key (Console Workbench) is stored under.
pub const WORKBENCH_KEY_ID: &str = "workbench";
/// The model name stored when a row names none.
pub const UNKNOWN_MODEL: &str = "unknown";

/// One API key from a provider's key listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub name: Option<String>,
    /// `active`, `inactive`, `archived`, `expired`, ... as the provider spells it.
    pub status: String,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `None` for the default workspace.
    pub workspace_id: Option<String>,
    /// The provider's redacted hint (e.g. `sk-ant-api03-R2D...igAA`), never the key.
    pub partial_key_hint: Option<String>,
}

/// Usage of one key and model in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub key_id: String,
    pub model: String,
    pub tokens: TokenCounts,
    pub web_search_requests: i64,
    /// Request count, where the provider reports one.
    pub requests: Option<i64>,
}

/// One time bucket of a usage report; `rows` is empty when nothing was used.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub rows: Vec<UsageRow>,
}

/// One page of a usage report.
#[derive(Debug, Clone, PartialEq)]
pub struct UsagePage {
    pub buckets: Vec<UsageBucket>,
    /// The token for the next page; `None` on the last page.
    pub next_page: Option<String>,
}
