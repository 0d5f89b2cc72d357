//! The OpenAI Administration API: projects and their API keys, the completions usage report and
//! per-key billed costs (`docs/providers.md`, OpenAI). Lenient parsing: unknown fields
//! are ignored, dimensions are nullable, newer optional token fields may be absent.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::http::{HttpClient, PollError, RetryPolicy};
use super::{
    bounded_count, collect_pages, ApiKey, CostBucket, CostPage, MediaTokens, PriceDimensions,
    UsageBucket, UsagePage, UsageRow, UNATTRIBUTED_KEY_ID, UNKNOWN_MODEL,
};
use crate::config::{BucketWidth, SourceConfig};
use crate::prices::TokenCounts;

const PROJECTS_ENDPOINT: &str = "/v1/organization/projects";
const USAGE_ENDPOINT: &str = "/v1/organization/usage/completions";
const COSTS_ENDPOINT: &str = "/v1/organization/costs";
/// Items per listing page (the API allows 1 to 100).
const LIST_LIMIT: u32 = 100;
/// The most daily cost buckets one page asks for (the API allows 1 to 180; keywatch keeps a
/// request within 31 days, and asks for fewer where the keys make a page large).
const COSTS_LIMIT: u32 = 31;

#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: HttpClient,
    /// The usage endpoints besides completions still asked (`openai_more`).
    more: std::sync::Arc<super::openai_more::Reachable>,
}

impl OpenAiClient {
    pub fn new(
        source: &SourceConfig,
        timeout: std::time::Duration,
        retry: RetryPolicy,
        max_body: usize,
    ) -> Result<Self, PollError> {
        let config_error = |message: String| PollError::Transport {
            endpoint: "config".to_owned(),
            message,
        };
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", source.admin_key.expose_secret()))
                .map_err(|_| {
                    config_error(format!(
                "the admin key of source {:?} contains characters that cannot be sent in a header",
                source.name
            ))
                })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = HttpClient::new(source.base_url.clone(), headers, timeout, retry, max_body)
            .map_err(|e| config_error(super::http::error_chain(&e)))?;
        Ok(Self {
            http,
            more: std::sync::Arc::new(super::openai_more::Reachable::all()),
        })
    }

    /// Every API key of every project (archived projects too), all pages. A key of an archived
    /// project counts as archived; its project stands in for the workspace.
    pub async fn list_keys(&self, cancel: &CancellationToken) -> Result<Vec<ApiKey>, PollError> {
        let projects: Vec<ProjectJson> = collect_pages(PROJECTS_ENDPOINT, |after| async move {
            let page: List<ProjectJson> = self
                .http
                .get_json(
                    PROJECTS_ENDPOINT,
                    || {
                        let mut q = vec![
                            ("limit", LIST_LIMIT.to_string()),
                            ("include_archived", "true".to_owned()),
                        ];
                        if let Some(a) = &after {
                            q.push(("after", a.clone()));
                        }
                        self.http.get(PROJECTS_ENDPOINT).query(&q)
                    },
                    cancel,
                )
                .await?;
            Ok(page.into_parts())
        })
        .await?;
        let mut keys = Vec::new();
        for project in projects {
            let path = format!("{PROJECTS_ENDPOINT}/{}/api_keys", project.id);
            let path = path.as_str();
            let project_keys: Vec<KeyJson> = collect_pages(path, |after| async move {
                let page: List<KeyJson> = self
                    .http
                    .get_json(
                        path,
                        || {
                            // Without owner_project_access=any the listing hides keys by the
                            // caller's project membership, including enabled ones.
                            let mut q = vec![
                                ("limit", LIST_LIMIT.to_string()),
                                ("owner_project_access", "any".to_owned()),
                            ];
                            if let Some(a) = &after {
                                q.push(("after", a.clone()));
                            }
                            self.http.get(path).query(&q)
                        },
                        cancel,
                    )
                    .await?;
                Ok(page.into_parts())
            })
            .await?;
            let archived =
                project.status.as_deref() == Some("archived") || project.archived_at.is_some();
            keys.extend(
                project_keys
                    .into_iter()
                    .map(|k| k.into_api_key(&project.id, archived)),
            );
        }
        Ok(keys)
    }

    /// One page of the completions usage report from `start` (at most `limit` buckets),
    /// grouped by key, model and the price dimensions, with the usage of the same buckets from
    /// the other usage endpoints added (`openai_more`), and the size of the bodies in bytes.
    pub async fn usage_page(
        &self,
        start: DateTime<Utc>,
        width: BucketWidth,
        limit: u32,
        page: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(UsagePage, usize), PollError> {
        let (mut usage, bytes) = self
            .completions_page(start, width, limit, page, cancel)
            .await?;
        let more =
            super::openai_more::add_to(&self.http, &self.more, &mut usage, width, cancel).await?;
        Ok((usage, bytes + more))
    }

    async fn completions_page(
        &self,
        start: DateTime<Utc>,
        width: BucketWidth,
        limit: u32,
        page: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(UsagePage, usize), PollError> {
        let (report, bytes): (Report<UsageResult>, usize) = self
            .http
            .get_json_sized(
                USAGE_ENDPOINT,
                || {
                    // Repeated bare keys: the OpenAPI default style for array parameters.
                    let mut q = vec![
                        ("start_time", start.timestamp().to_string()),
                        ("bucket_width", width.as_str().to_owned()),
                        ("limit", limit.clamp(1, width.max_page()).to_string()),
                        ("group_by", "api_key_id".to_owned()),
                        ("group_by", "model".to_owned()),
                        // The dimensions that set a row's price (#17): batch API rows cost
                        // half, the priority tier more.
                        ("group_by", "batch".to_owned()),
                        ("group_by", "service_tier".to_owned()),
                    ];
                    if let Some(p) = page {
                        q.push(("page", p.to_owned()));
                    }
                    self.http.get(USAGE_ENDPOINT).query(&q)
                },
                cancel,
            )
            .await?;
        Ok((usage_from(report)?, bytes))
    }

    /// One page of daily billed costs per key from `start` (a UTC midnight).
    pub async fn cost_page(
        &self,
        start: DateTime<Utc>,
        limit: u32,
        page: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(CostPage, usize), PollError> {
        let (report, bytes): (Report<CostResult>, usize) = self
            .http
            .get_json_sized(
                COSTS_ENDPOINT,
                || {
                    let mut q = vec![
                        ("start_time", start.timestamp().to_string()),
                        ("bucket_width", "1d".to_owned()),
                        ("limit", limit.clamp(1, COSTS_LIMIT).to_string()),
                        ("group_by", "api_key_id".to_owned()),
                    ];
                    if let Some(p) = page {
                        q.push(("page", p.to_owned()));
                    }
                    self.http.get(COSTS_ENDPOINT).query(&q)
                },
                cancel,
            )
            .await?;
        Ok((costs_from(report)?, bytes))
    }
}

fn usage_from(report: Report<UsageResult>) -> Result<UsagePage, PollError> {
    let next_page = report.next();
    let mut buckets = Vec::with_capacity(report.data.len());
    for b in report.data {
        let (start, end) = b.times(USAGE_ENDPOINT)?;
        let rows = b
            .results
            .into_iter()
            .map(|r| r.into_row(start))
            .collect::<Result<_, _>>()?;
        buckets.push(UsageBucket { start, end, rows });
    }
    Ok(UsagePage { buckets, next_page })
}

fn costs_from(report: Report<CostResult>) -> Result<CostPage, PollError> {
    let next_page = report.next();
    let mut buckets = Vec::with_capacity(report.data.len());
    for b in report.data {
        let (start, end) = b.times(COSTS_ENDPOINT)?;
        let mut rows: Vec<(String, f64)> = Vec::new();
        for r in b.results {
            let Some(amount) = r.amount else { continue };
            let currency = amount.currency.as_deref().unwrap_or("usd");
            if !currency.eq_ignore_ascii_case("usd") {
                return Err(PollError::Decode {
                    endpoint: COSTS_ENDPOINT.to_owned(),
                    message: format!("cost in {currency:?}; keywatch budgets are in USD"),
                });
            }
            let value = amount.value.unwrap_or(0.0);
            if !value.is_finite() {
                return Err(PollError::Decode {
                    endpoint: COSTS_ENDPOINT.to_owned(),
                    message: "a cost amount is not a number".to_owned(),
                });
            }
            let key = r
                .api_key_id
                .unwrap_or_else(|| UNATTRIBUTED_KEY_ID.to_owned());
            match rows.iter_mut().find(|(k, _)| *k == key) {
                Some((_, sum)) => *sum += value,
                None => rows.push((key, value)),
            }
        }
        let lines = rows
            .iter()
            .map(|(_, usd)| super::CostLine {
                workspace_id: None,
                cost_type: "billed".to_owned(),
                model: None,
                usd: *usd,
            })
            .collect();
        buckets.push(CostBucket {
            start,
            end,
            rows: Some(rows),
            lines,
        });
    }
    Ok(CostPage { buckets, next_page })
}

/// Decodes a completions usage page as the poller does (for the fuzz targets and tests).
pub fn decode_usage(body: &[u8]) -> Result<UsagePage, PollError> {
    usage_from(super::http::decode(USAGE_ENDPOINT, body)?)
}

/// Decodes a costs page as the poller does.
pub fn decode_costs(body: &[u8]) -> Result<CostPage, PollError> {
    costs_from(super::http::decode(COSTS_ENDPOINT, body)?)
}

/// Decodes a project's key listing page as the poller does.
pub fn decode_keys(body: &[u8]) -> Result<Vec<ApiKey>, PollError> {
    let list: List<KeyJson> = super::http::decode(PROJECTS_ENDPOINT, body)?;
    Ok(list
        .data
        .into_iter()
        .map(|k| k.into_api_key("proj_fuzz", false))
        .collect())
}

#[derive(Deserialize)]
struct List<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
    last_id: Option<String>,
}

impl<T> List<T> {
    fn into_parts(self) -> (Vec<T>, Option<String>) {
        let next = self.last_id.filter(|_| self.has_more);
        (self.data, next)
    }
}

#[derive(Deserialize)]
struct ProjectJson {
    id: String,
    status: Option<String>,
    archived_at: Option<i64>,
}

#[derive(Deserialize)]
struct KeyJson {
    id: String,
    name: Option<String>,
    redacted_value: Option<String>,
    created_at: Option<i64>,
    owner_project_access: Option<String>,
    status: Option<String>,
    expires_at: Option<i64>,
    owner: Option<Owner>,
}

impl KeyJson {
    fn into_api_key(self, project_id: &str, project_archived: bool) -> ApiKey {
        let status = if project_archived {
            "archived".to_owned()
        } else if let Some(s) = self.status {
            s
        } else if self.owner_project_access.as_deref() == Some("inactive") {
            "inactive".to_owned()
        } else {
            "active".to_owned()
        };
        ApiKey {
            id: self.id,
            name: self.name,
            status,
            created_at: self.created_at.and_then(|t| DateTime::from_timestamp(t, 0)),
            expires_at: self.expires_at.and_then(|t| DateTime::from_timestamp(t, 0)),
            workspace_id: Some(project_id.to_owned()),
            partial_key_hint: self.redacted_value,
            created_by: self.owner.and_then(Owner::describe),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Report<R> {
    pub(super) data: Vec<Bucket<R>>,
    #[serde(default)]
    has_more: bool,
    next_page: Option<String>,
}

impl<R> Report<R> {
    pub(super) fn next(&self) -> Option<String> {
        self.next_page.clone().filter(|_| self.has_more)
    }
}

#[derive(Deserialize)]
pub(super) struct Bucket<R> {
    start_time: i64,
    end_time: i64,
    #[serde(default = "Vec::new")]
    pub(super) results: Vec<R>,
}

impl<R> Bucket<R> {
    pub(super) fn times(
        &self,
        endpoint: &str,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), PollError> {
        let bad = |message: String| PollError::Decode {
            endpoint: endpoint.to_owned(),
            message,
        };
        let start = DateTime::from_timestamp(self.start_time, 0)
            .ok_or_else(|| bad("start_time out of range".to_owned()))?;
        let end = DateTime::from_timestamp(self.end_time, 0)
            .ok_or_else(|| bad("end_time out of range".to_owned()))?;
        if end <= start {
            return Err(bad(format!(
                "bucket ends ({end}) before it starts ({start})"
            )));
        }
        Ok((start, end))
    }
}

#[derive(Deserialize)]
struct UsageResult {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    num_model_requests: Option<u64>,
    #[serde(default)]
    input_cached_tokens: Option<u64>,
    #[serde(default)]
    input_cache_write_tokens: Option<u64>,
    #[serde(default)]
    input_uncached_tokens: Option<u64>,
    api_key_id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    batch: Option<bool>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    input_audio_tokens: Option<u64>,
    #[serde(default)]
    input_cached_audio_tokens: Option<u64>,
    #[serde(default)]
    output_audio_tokens: Option<u64>,
    #[serde(default)]
    input_image_tokens: Option<u64>,
    #[serde(default)]
    input_cached_image_tokens: Option<u64>,
    #[serde(default)]
    output_image_tokens: Option<u64>,
}

impl UsageResult {
    /// `input_tokens` already includes cached and cache-write tokens: they are stored apart so
    /// each is priced at its own rate.
    fn into_row(self, bucket: DateTime<Utc>) -> Result<UsageRow, PollError> {
        let key = self.api_key_id.as_deref();
        let count =
            |field: &str, v: Option<u64>| bounded_count(USAGE_ENDPOINT, field, key, bucket, v);
        let input = count("input_tokens", self.input_tokens)?;
        let cached = count("input_cached_tokens", self.input_cached_tokens)?;
        let written = count("input_cache_write_tokens", self.input_cache_write_tokens)?;
        let uncached = match self.input_uncached_tokens {
            Some(v) => count("input_uncached_tokens", Some(v))?,
            None => (input - cached - written).max(0),
        };
        let output = count("output_tokens", self.output_tokens)?;
        let requests = count("num_model_requests", self.num_model_requests)?;
        // Audio and image parts of the totals above (absent in older responses: all text).
        let media = MediaTokens {
            audio_input: count("input_audio_tokens", self.input_audio_tokens)?,
            audio_cached: count("input_cached_audio_tokens", self.input_cached_audio_tokens)?,
            audio_output: count("output_audio_tokens", self.output_audio_tokens)?,
            image_input: count("input_image_tokens", self.input_image_tokens)?,
            image_cached: count("input_cached_image_tokens", self.input_cached_image_tokens)?,
            image_output: count("output_image_tokens", self.output_image_tokens)?,
        };
        Ok(UsageRow {
            key_id: self
                .api_key_id
                .unwrap_or_else(|| UNATTRIBUTED_KEY_ID.to_owned()),
            model: self.model.unwrap_or_else(|| UNKNOWN_MODEL.to_owned()),
            tokens: TokenCounts {
                uncached_input: uncached,
                cache_read: cached,
                cache_write_5m: written,
                cache_write_1h: 0,
                output,
            },
            web_search_requests: 0,
            requests: Some(requests),
            // A batch API row is priced as batch whatever tier it names.
            pricing: PriceDimensions {
                tier: match self.batch {
                    Some(true) => Some("batch".to_owned()),
                    _ => self.service_tier,
                },
                ..PriceDimensions::default()
            },
            media,
            units: None,
        })
    }
}

#[derive(Deserialize)]
struct CostResult {
    amount: Option<Amount>,
    api_key_id: Option<String>,
}

#[derive(Deserialize)]
struct Amount {
    value: Option<f64>,
    currency: Option<String>,
}

#[cfg(test)]
mod tests;

mod admin;
mod owner;
use owner::Owner;
