//! OpenAI's embeddings usage (#17): `/v1/organization/usage/embeddings` reports what the
//! completions report leaves out. Each completions page is completed with the embeddings rows
//! of the same buckets (`start_time` to the page's last bucket end), so one page still covers
//! whole buckets and the stream's cursor means what it meant.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::http::{HttpClient, PollError};
use super::openai::Report;
use super::{
    bounded_count, MediaTokens, Pager, PriceDimensions, UsageBucket, UsagePage, UsageRow,
    UNATTRIBUTED_KEY_ID, UNKNOWN_MODEL,
};
use crate::config::BucketWidth;
use crate::prices::TokenCounts;

const ENDPOINT: &str = "/v1/organization/usage/embeddings";

#[derive(Deserialize)]
struct EmbeddingsResult {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    num_model_requests: Option<u64>,
    api_key_id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    batch: Option<bool>,
}

impl EmbeddingsResult {
    fn into_row(self, bucket: DateTime<Utc>) -> Result<UsageRow, PollError> {
        let key = self.api_key_id.as_deref();
        let count = |field: &str, v: Option<u64>| bounded_count(ENDPOINT, field, key, bucket, v);
        Ok(UsageRow {
            tokens: TokenCounts {
                uncached_input: count("input_tokens", self.input_tokens)?,
                ..TokenCounts::default()
            },
            requests: Some(count("num_model_requests", self.num_model_requests)?),
            key_id: self
                .api_key_id
                .unwrap_or_else(|| UNATTRIBUTED_KEY_ID.to_owned()),
            model: self.model.unwrap_or_else(|| UNKNOWN_MODEL.to_owned()),
            web_search_requests: 0,
            // Batch API embeddings cost half.
            pricing: PriceDimensions {
                tier: self.batch.filter(|b| *b).map(|_| "batch".to_owned()),
                ..PriceDimensions::default()
            },
            media: MediaTokens::default(),
        })
    }
}

/// Adds the embeddings rows of `page`'s buckets to them; the bytes read.
pub(super) async fn add_to(
    http: &HttpClient,
    page: &mut UsagePage,
    width: BucketWidth,
    cancel: &CancellationToken,
) -> Result<usize, PollError> {
    let (Some(first), Some(end)) = (
        page.buckets.iter().map(|b| b.start).min(),
        page.buckets.iter().map(|b| b.end).max(),
    ) else {
        return Ok(0);
    };
    let w = width.seconds();
    let limit = u32::try_from((end.timestamp() - first.timestamp()).div_euclid(w) + 1)
        .unwrap_or(u32::MAX)
        .clamp(1, width.max_page());
    let mut pager = Pager::new("embeddings usage");
    let mut bytes = 0;
    loop {
        let (report, n): (Report<EmbeddingsResult>, usize) = http
            .get_json_sized(
                ENDPOINT,
                || {
                    let mut q = vec![
                        ("start_time", first.timestamp().to_string()),
                        ("end_time", end.timestamp().to_string()),
                        ("bucket_width", width.as_str().to_owned()),
                        ("limit", limit.to_string()),
                        ("group_by", "api_key_id".to_owned()),
                        ("group_by", "model".to_owned()),
                        ("group_by", "batch".to_owned()),
                    ];
                    if let Some(p) = pager.token() {
                        q.push(("page", p.to_owned()));
                    }
                    http.get(ENDPOINT).query(&q)
                },
                cancel,
            )
            .await?;
        bytes += n;
        let next = report.next();
        for b in report.data {
            let (start, bucket_end) = b.times(ENDPOINT)?;
            let rows = b
                .results
                .into_iter()
                .map(|r| r.into_row(start))
                .collect::<Result<Vec<_>, _>>()?;
            if rows.is_empty() {
                continue;
            }
            let snapped = start.timestamp().div_euclid(w);
            match page
                .buckets
                .iter_mut()
                .find(|b| b.start.timestamp().div_euclid(w) == snapped)
            {
                Some(bucket) => bucket.rows.extend(rows),
                // Inside the page's span but absent from it (a report that skipped an idle
                // bucket): kept as a bucket of its own.
                None => page.buckets.push(UsageBucket {
                    start,
                    end: bucket_end,
                    rows,
                }),
            }
        }
        if !pager.advance(next)? {
            return Ok(bytes);
        }
    }
}
