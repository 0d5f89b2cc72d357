//! The Anthropic Admin API: the key listing and the messages usage report
//! (`docs/providers.md`, Anthropic). Lenient parsing: unknown fields are ignored,
//! dimensions are nullable, missing counters are 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::http::{HttpClient, PollError, RetryPolicy};
use super::{
    bounded_count, collect_pages, ApiKey, CostBucket, CostLine, CostPage, MediaTokens,
    PriceDimensions, UsageBucket, UsagePage, UsageRow, UNKNOWN_MODEL, WORKBENCH_KEY_ID,
};
use crate::config::{BucketWidth, SourceConfig};
use crate::prices::TokenCounts;

const API_VERSION: &str = "2023-06-01";
const KEYS_ENDPOINT: &str = "/v1/organizations/api_keys";
const USAGE_ENDPOINT: &str = "/v1/organizations/usage_report/messages";
const COST_ENDPOINT: &str = "/v1/organizations/cost_report";
/// Keys per listing page (the API allows 1 to 1000).
const KEYS_PAGE_LIMIT: u32 = 500;
/// The beta that lets the usage report group by `speed` (fast mode).
const FAST_MODE_BETA: &str = "fast-mode-2026-02-01";
/// What the usage report is grouped by: the key and model, and the three dimensions that set a
/// row's price (#17): service tier, inference geo and speed (last: left out where the beta is
/// refused). Five is the API's most; the `context_window` dimension (long-context rates) does
/// not fit beside them.
const USAGE_GROUPS: [&str; 5] = [
    "api_key_id",
    "model",
    "service_tier",
    "inference_geo",
    "speed",
];

/// A client for one Anthropic organisation.
#[derive(Debug, Clone)]
pub struct AnthropicClient {
    http: HttpClient,
    /// Whether usage is grouped by `speed` (with the fast-mode beta header): cleared for the
    /// process when the API refuses the beta, so usage keeps flowing without it.
    by_speed: Arc<AtomicBool>,
    /// Whether the cost analytics API (per-key cost) is asked: cleared for the process when it
    /// is refused.
    analytics: Arc<AtomicBool>,
}

impl AnthropicClient {
    pub fn new(
        source: &SourceConfig,
        timeout: std::time::Duration,
        retry: RetryPolicy,
        max_body: usize,
    ) -> Result<Self, PollError> {
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(source.admin_key.expose_secret()).map_err(|_| {
            PollError::Transport {
                endpoint: "config".to_owned(),
                message: format!(
                    "the admin key of source {:?} contains characters that cannot be sent in a header",
                    source.name
                ),
            }
        })?;
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        let http = HttpClient::new(source.base_url.clone(), headers, timeout, retry, max_body)
            .map_err(|e| PollError::Transport {
                endpoint: "config".to_owned(),
                message: super::http::error_chain(&e),
            })?;
        Ok(Self {
            http,
            by_speed: Arc::new(AtomicBool::new(true)),
            analytics: Arc::new(AtomicBool::new(true)),
        })
    }

    pub(super) fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Every key of the organisation, all pages.
    pub async fn list_keys(&self, cancel: &CancellationToken) -> Result<Vec<ApiKey>, PollError> {
        let keys: Vec<KeyJson> = collect_pages(KEYS_ENDPOINT, |after| async move {
            let page: KeyList = self
                .http
                .get_json(
                    KEYS_ENDPOINT,
                    || {
                        let mut q = vec![("limit", KEYS_PAGE_LIMIT.to_string())];
                        if let Some(a) = &after {
                            q.push(("after_id", a.clone()));
                        }
                        self.http.get(KEYS_ENDPOINT).query(&q)
                    },
                    cancel,
                )
                .await?;
            Ok((page.data, page.last_id.filter(|_| page.has_more)))
        })
        .await?;
        Ok(keys.into_iter().map(ApiKey::from).collect())
    }

    /// One page of the cost report (whole UTC days in `[start, end)`, at most `limit` days),
    /// grouped by workspace and description, and its body's size in bytes. Amounts arrive as
    /// strings in cents. Where the cost analytics API is available, each day also carries its
    /// cost per key from it ([`analytics::attach`]).
    pub async fn cost_page(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: u32,
        page: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(CostPage, usize), PollError> {
        let (from, to) = (
            start.to_rfc3339_opts(SecondsFormat::Secs, true),
            end.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        let (report, bytes): (CostReport, usize) = self
            .http
            .get_json_sized(
                COST_ENDPOINT,
                || {
                    let mut q = vec![
                        ("starting_at", from.clone()),
                        ("ending_at", to.clone()),
                        ("bucket_width", "1d".to_owned()),
                        ("limit", limit.clamp(1, 31).to_string()),
                        ("group_by[]", "workspace_id".to_owned()),
                        ("group_by[]", "description".to_owned()),
                    ];
                    if let Some(p) = page {
                        q.push(("page", p.to_owned()));
                    }
                    self.http.get(COST_ENDPOINT).query(&q)
                },
                cancel,
            )
            .await?;
        let mut page = report.into_page()?;
        let span = (
            page.buckets.iter().map(|b| b.start).min(),
            page.buckets.iter().map(|b| b.end).max(),
        );
        if let (Some(first), Some(last)) = span {
            if let Some(costs) = self.key_costs(first, last, cancel).await? {
                analytics::attach(&mut page.buckets, costs);
            }
        }
        Ok((page, bytes))
    }

    /// One page of the usage report from `starting_at` (at most `limit` buckets), grouped by
    /// key, model and the price dimensions, and its body's size in bytes. Where the API refuses
    /// the fast-mode beta (an organisation without it), the page is asked again without
    /// grouping by speed, and later pages are too: fast-mode usage is then priced at standard
    /// rates, which is said once in the log.
    pub async fn usage_page(
        &self,
        starting_at: DateTime<Utc>,
        width: BucketWidth,
        limit: u32,
        page: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(UsagePage, usize), PollError> {
        let by_speed = self.by_speed.load(Ordering::Relaxed);
        match self
            .usage_request(starting_at, width, limit, page, by_speed, cancel)
            .await
        {
            Err(
                e @ PollError::Api {
                    status: 400 | 403, ..
                },
            ) if by_speed && refuses_speed(&e) => {
                self.by_speed.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e,
                    "the usage report refused grouping by speed (the fast-mode beta): reading usage \
                     without it, so fast-mode usage is priced at standard rates (an underestimate)");
                self.usage_request(starting_at, width, limit, page, false, cancel)
                    .await
            }
            r => r,
        }
    }

    async fn usage_request(
        &self,
        starting_at: DateTime<Utc>,
        width: BucketWidth,
        limit: u32,
        page: Option<&str>,
        by_speed: bool,
        cancel: &CancellationToken,
    ) -> Result<(UsagePage, usize), PollError> {
        let start = starting_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let groups = if by_speed {
            &USAGE_GROUPS[..]
        } else {
            &USAGE_GROUPS[..USAGE_GROUPS.len() - 1]
        };
        let (report, bytes): (UsageReport, usize) = self
            .http
            .get_json_sized(
                USAGE_ENDPOINT,
                || {
                    // Array parameters need the literal `[]` suffix; a bare `group_by` is a 400.
                    let mut q = vec![
                        ("starting_at", start.clone()),
                        ("bucket_width", width.as_str().to_owned()),
                        ("limit", limit.clamp(1, width.max_page()).to_string()),
                    ];
                    q.extend(groups.iter().map(|g| ("group_by[]", (*g).to_owned())));
                    if let Some(p) = page {
                        q.push(("page", p.to_owned()));
                    }
                    let request = self.http.get(USAGE_ENDPOINT);
                    let request = if by_speed {
                        request.header("anthropic-beta", FAST_MODE_BETA)
                    } else {
                        request
                    };
                    request.query(&q)
                },
                cancel,
            )
            .await?;
        Ok((report.into_page()?, bytes))
    }
}

/// Whether a refusal (400 or 403) from the usage report is about the fast-mode beta, the
/// `speed` grouping or the number of groupings: asking again without them may succeed.
fn refuses_speed(e: &PollError) -> bool {
    match e {
        PollError::Api { message, .. } => {
            let m = message.to_ascii_lowercase();
            ["beta", "speed", "fast", "group_by"]
                .iter()
                .any(|w| m.contains(w))
        }
        _ => false,
    }
}

/// Decodes a usage report page as the poller does (for the fuzz targets and tests).
pub fn decode_usage(body: &[u8]) -> Result<UsagePage, PollError> {
    super::http::decode::<UsageReport>(USAGE_ENDPOINT, body)?.into_page()
}

/// Decodes a cost report page as the poller does.
pub fn decode_costs(body: &[u8]) -> Result<CostPage, PollError> {
    super::http::decode::<CostReport>(COST_ENDPOINT, body)?.into_page()
}

/// Decodes a key listing page as the poller does.
pub fn decode_keys(body: &[u8]) -> Result<Vec<ApiKey>, PollError> {
    let list: KeyList = super::http::decode(KEYS_ENDPOINT, body)?;
    Ok(list.data.into_iter().map(ApiKey::from).collect())
}

#[derive(Deserialize)]
struct CostReport {
    data: Vec<CostBucketJson>,
    #[serde(default)]
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct CostBucketJson {
    starting_at: DateTime<Utc>,
    ending_at: DateTime<Utc>,
    #[serde(default)]
    results: Vec<CostRowJson>,
}

#[derive(Deserialize)]
struct CostRowJson {
    currency: Option<String>,
    /// A decimal string in cents.
    amount: Option<String>,
    workspace_id: Option<String>,
    cost_type: Option<String>,
    model: Option<String>,
}

impl CostReport {
    fn into_page(self) -> Result<CostPage, PollError> {
        let bad = |message: String| PollError::Decode {
            endpoint: COST_ENDPOINT.to_owned(),
            message,
        };
        let mut buckets = Vec::with_capacity(self.data.len());
        for b in self.data {
            // Found by fuzzing: a day that ends before it starts was stored as billed cost.
            if b.ending_at <= b.starting_at {
                return Err(bad(format!(
                    "cost bucket ends ({}) before it starts ({})",
                    b.ending_at, b.starting_at
                )));
            }
            let mut lines: Vec<CostLine> = Vec::new();
            for r in b.results {
                let currency = r.currency.as_deref().unwrap_or("USD");
                if !currency.eq_ignore_ascii_case("usd") {
                    return Err(bad(format!(
                        "cost in {currency:?}; keywatch budgets are in USD"
                    )));
                }
                let cents: f64 = match r.amount.as_deref() {
                    None => 0.0,
                    Some(a) => a
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("amount {a:?} is not a number")))?,
                };
                if !cents.is_finite() {
                    return Err(bad("an amount is not finite".to_owned()));
                }
                let line = CostLine {
                    workspace_id: r.workspace_id,
                    cost_type: r.cost_type.unwrap_or_else(|| "billed".to_owned()),
                    model: r.model,
                    usd: cents / 100.0,
                };
                match lines.iter_mut().find(|l| {
                    l.workspace_id == line.workspace_id
                        && l.cost_type == line.cost_type
                        && l.model == line.model
                }) {
                    Some(l) => l.usd += line.usd,
                    None => lines.push(line),
                }
            }
            buckets.push(CostBucket {
                start: b.starting_at,
                end: b.ending_at,
                rows: None,
                lines,
            });
        }
        Ok(CostPage {
            buckets,
            next_page: self.next_page.filter(|_| self.has_more),
        })
    }
}

#[derive(Deserialize)]
struct UsageReport {
    data: Vec<BucketJson>,
    #[serde(default)]
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct BucketJson {
    starting_at: DateTime<Utc>,
    ending_at: DateTime<Utc>,
    #[serde(default)]
    results: Vec<RowJson>,
}

#[derive(Deserialize)]
struct RowJson {
    api_key_id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    uncached_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation: Option<CacheCreation>,
    #[serde(default)]
    server_tool_use: Option<ServerToolUse>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    inference_geo: Option<String>,
    #[serde(default)]
    speed: Option<String>,
}

#[derive(Deserialize, Default)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ServerToolUse {
    #[serde(default)]
    web_search_requests: Option<u64>,
}

impl UsageReport {
    fn into_page(self) -> Result<UsagePage, PollError> {
        let mut buckets = Vec::with_capacity(self.data.len());
        for b in self.data {
            if b.ending_at <= b.starting_at {
                return Err(PollError::Decode {
                    endpoint: USAGE_ENDPOINT.to_owned(),
                    message: format!(
                        "bucket ends ({}) before it starts ({})",
                        b.ending_at, b.starting_at
                    ),
                });
            }
            let mut rows = Vec::with_capacity(b.results.len());
            for r in b.results {
                let cache = r.cache_creation.unwrap_or_default();
                let key = r.api_key_id.as_deref();
                let count = |field: &str, v: Option<u64>| {
                    bounded_count(USAGE_ENDPOINT, field, key, b.starting_at, v)
                };
                let tokens = TokenCounts {
                    uncached_input: count("uncached_input_tokens", r.uncached_input_tokens)?,
                    cache_read: count("cache_read_input_tokens", r.cache_read_input_tokens)?,
                    cache_write_5m: count(
                        "cache_creation.ephemeral_5m_input_tokens",
                        cache.ephemeral_5m_input_tokens,
                    )?,
                    cache_write_1h: count(
                        "cache_creation.ephemeral_1h_input_tokens",
                        cache.ephemeral_1h_input_tokens,
                    )?,
                    output: count("output_tokens", r.output_tokens)?,
                };
                let web_search_requests = count(
                    "server_tool_use.web_search_requests",
                    r.server_tool_use.unwrap_or_default().web_search_requests,
                )?;
                rows.push(UsageRow {
                    key_id: r.api_key_id.unwrap_or_else(|| WORKBENCH_KEY_ID.to_owned()),
                    model: r.model.unwrap_or_else(|| UNKNOWN_MODEL.to_owned()),
                    tokens,
                    web_search_requests,
                    requests: None,
                    pricing: PriceDimensions {
                        tier: r.service_tier,
                        geo: r.inference_geo,
                        speed: r.speed,
                    },
                    media: MediaTokens::default(),
                    units: None,
                });
            }
            buckets.push(UsageBucket {
                start: b.starting_at,
                end: b.ending_at,
                rows,
            });
        }
        // `has_more` without a token cannot be followed; treat the page as the last.
        let next_page = self.next_page.filter(|_| self.has_more);
        Ok(UsagePage { buckets, next_page })
    }
}

#[cfg(test)]
mod tests;

pub mod analytics;
mod keys;

use keys::{KeyJson, KeyList};
