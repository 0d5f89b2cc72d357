//! Provider clients: what each provider's admin API says about keys and usage, mapped into
//! provider-neutral types. No scheduling or storage here.

pub mod anthropic;
mod http;
pub mod key_admin;
pub mod openai;
pub mod openai_more;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use http::{error_chain, parse_error, ErrorBody, HttpClient, PollError, RetryPolicy};

use crate::config::{BucketWidth, Provider, SourceConfig};
use crate::prices::TokenCounts;
pub use crate::prices::{MediaTokens, PriceDimensions};

/// The key id usage without an API key (Console Workbench) is stored under.
pub const WORKBENCH_KEY_ID: &str = "workbench";
/// The key id for usage or cost a provider attributes to no key.
pub const UNATTRIBUTED_KEY_ID: &str = "unattributed";
/// A listing longer than this many pages is treated as a paging bug, not followed forever.
const MAX_PAGES: usize = 10_000;
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
    /// Who created it: `user:…` or `service_account:…`, where the provider says.
    pub created_by: Option<String>,
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
    /// What sets the row's price beside its model.
    pub pricing: PriceDimensions,
    /// The audio and image parts of `tokens` (OpenAI), priced at their own rates.
    pub media: MediaTokens,
    /// What the row counted besides tokens (OpenAI's images, speech, transcription and tool
    /// calls), priced per unit.
    pub units: Option<crate::prices::units::Units>,
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

/// One line of a provider's cost report.
#[derive(Debug, Clone, PartialEq)]
pub struct CostLine {
    pub workspace_id: Option<String>,
    /// `tokens`, `web_search`, `code_execution`, … (`billed` where the provider gives no type).
    pub cost_type: String,
    pub model: Option<String>,
    pub usd: f64,
}

/// One day of billed cost: USD per key where the provider reports it, and the report's lines.
#[derive(Debug, Clone, PartialEq)]
pub struct CostBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// USD per key, where the provider reported it for this read (OpenAI's costs; Anthropic's
    /// cost analytics API); `None` leaves what was stored per key for the day in place.
    pub rows: Option<Vec<(String, f64)>>,
    pub lines: Vec<CostLine>,
}

/// One page of a billed-cost report.
#[derive(Debug, Clone, PartialEq)]
pub struct CostPage {
    pub buckets: Vec<CostBucket>,
    pub next_page: Option<String>,
}

/// The largest count (tokens or requests) one row of one bucket may carry: 10^12, a million
/// times more than a busy key uses in an hour. A larger value is refused at decode, so the sums
/// keywatch keeps (per day, per report) stay far inside an i64 whatever was stored.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// A provider counter as stored: absent is 0; above [`MAX_COUNT`] is a decode error naming
/// the field, the key and the bucket.
pub(crate) fn bounded_count(
    endpoint: &str,
    field: &str,
    key: Option<&str>,
    bucket: DateTime<Utc>,
    value: Option<u64>,
) -> Result<i64, PollError> {
    let v = value.unwrap_or(0);
    match i64::try_from(v) {
        Ok(n) if v <= MAX_COUNT => Ok(n),
        _ => Err(PollError::Decode {
            endpoint: endpoint.to_owned(),
            message: format!(
                "{field} = {v} for key {} in the bucket from {} is above {MAX_COUNT} (10^12), \
                 the most keywatch accepts per bucket: the provider sent an absurd count, so \
                 nothing of this page was stored",
                key.unwrap_or("(none)"),
                bucket.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }),
    }
}

/// Follows one paged listing: caps the pages at `MAX_PAGES` and refuses a next-page token
/// already followed (a cycle such as A→B→A), so a buggy or hostile provider cannot keep a poll
/// running forever. Every paging loop goes through it.
#[derive(Debug)]
pub struct Pager {
    endpoint: String,
    seen: HashSet<String>,
    pages: usize,
    token: Option<String>,
}

impl Pager {
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            seen: HashSet::new(),
            pages: 0,
            token: None,
        }
    }

    /// The token of the page to fetch next (`None` for the first page).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Records the page just read and its next-page token: `Ok(true)` to fetch the next page,
    /// `Ok(false)` at the end, an error when paging would not end.
    pub fn advance(&mut self, next: Option<String>) -> Result<bool, PollError> {
        self.pages += 1;
        let Some(next) = next else {
            return Ok(false);
        };
        if !self.seen.insert(next.clone()) {
            return Err(PollError::Paging {
                endpoint: self.endpoint.clone(),
                message: format!(
                    "the provider sent a next-page token it had already sent (a paging cycle, \
                     after {} pages); the listing was not followed further",
                    self.pages
                ),
            });
        }
        if self.pages >= MAX_PAGES {
            return Err(PollError::Paging {
                endpoint: self.endpoint.clone(),
                message: format!(
                    "more than {MAX_PAGES} pages; the listing was not followed further"
                ),
            });
        }
        self.token = Some(next);
        Ok(true)
    }
}

/// Follows a cursor-paged listing to its end: `fetch(cursor)` returns a page's items and the
/// next cursor (`None` on the last page), through a [`Pager`].
pub async fn collect_pages<T, F, Fut>(endpoint: &str, mut fetch: F) -> Result<Vec<T>, PollError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), PollError>>,
{
    let mut items = Vec::new();
    let mut pager = Pager::new(endpoint);
    loop {
        let (page, next) = fetch(pager.token().map(str::to_owned)).await?;
        items.extend(page);
        if !pager.advance(next)? {
            return Ok(items);
        }
    }
}

/// A client for one source, whichever provider it is: the poller, store and detector only
/// see this and the neutral types above.
#[derive(Debug, Clone)]
pub enum ProviderClient {
    Anthropic(anthropic::AnthropicClient),
    Openai(openai::OpenAiClient),
}

impl ProviderClient {
    pub fn new(
        source: &SourceConfig,
        timeout: Duration,
        retry: RetryPolicy,
        max_body: usize,
    ) -> Result<Self, PollError> {
        Ok(match source.provider {
            Provider::Anthropic => Self::Anthropic(anthropic::AnthropicClient::new(
                source, timeout, retry, max_body,
            )?),
            Provider::Openai => {
                Self::Openai(openai::OpenAiClient::new(source, timeout, retry, max_body)?)
            }
        })
    }

    /// Every key of the organisation.
    pub async fn list_keys(&self, cancel: &CancellationToken) -> Result<Vec<ApiKey>, PollError> {
        match self {
            Self::Anthropic(c) => c.list_keys(cancel).await,
            Self::Openai(c) => c.list_keys(cancel).await,
        }
    }

    /// One page of usage per key and model from `start`, at most `limit` buckets, and the
    /// size of its body in bytes.
    pub async fn usage_page(
        &self,
        start: DateTime<Utc>,
        width: BucketWidth,
        limit: u32,
        page: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(UsagePage, usize), PollError> {
        match self {
            Self::Anthropic(c) => c.usage_page(start, width, limit, page, cancel).await,
            Self::Openai(c) => c.usage_page(start, width, limit, page, cancel).await,
        }
    }

    /// One page of the provider's daily cost report for complete UTC days from `start` up to
    /// `end`, at most `limit` days: per key where the provider has it (OpenAI), per workspace
    /// and cost type (Anthropic); and the size of its body in bytes.
    pub async fn cost_page(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: u32,
        page: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(CostPage, usize), PollError> {
        match self {
            Self::Anthropic(c) => c.cost_page(start, end, limit, page, cancel).await,
            Self::Openai(c) => c.cost_page(start, limit, page, cancel).await,
        }
    }
}
