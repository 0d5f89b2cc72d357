//! OpenAI's usage endpoints besides completions (#17): embeddings, moderations, images, audio
//! speeches and transcriptions, and file and web search calls. Each completions page is
//! completed with these endpoints' rows of the same buckets (`start_time` to the page's last
//! bucket end), so one page still covers whole buckets and the stream's cursor means what it
//! meant. Each row keeps what the endpoint counts (tokens, images, characters, seconds, calls)
//! and is priced per unit (`prices::units`).
//!
//! Not read: `vector_stores` and `code_interpreter_sessions` group by project only, so their
//! cost cannot be put on a key; it is in the billed cost (`/organization/costs`) and
//! `report --reconcile`.

use std::sync::atomic::{AtomicBool, Ordering};

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
use crate::prices::units::Units;
use crate::prices::TokenCounts;

/// The model name file search calls are stored under (they name no model).
pub const FILE_SEARCH_MODEL: &str = "file_search_calls";
/// The model name web search calls are stored under (priced per call whatever the model, and
/// kept apart from the model's own tokens).
pub const WEB_SEARCH_MODEL: &str = "web_search_calls";

/// One of the usage endpoints read beside completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Embeddings,
    Moderations,
    Images,
    Speeches,
    Transcriptions,
    FileSearches,
    WebSearches,
}

impl Endpoint {
    pub const ALL: [Endpoint; 7] = [
        Self::Embeddings,
        Self::Moderations,
        Self::Images,
        Self::Speeches,
        Self::Transcriptions,
        Self::FileSearches,
        Self::WebSearches,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Self::Embeddings => "/v1/organization/usage/embeddings",
            Self::Moderations => "/v1/organization/usage/moderations",
            Self::Images => "/v1/organization/usage/images",
            Self::Speeches => "/v1/organization/usage/audio_speeches",
            Self::Transcriptions => "/v1/organization/usage/audio_transcriptions",
            Self::FileSearches => "/v1/organization/usage/file_search_calls",
            Self::WebSearches => "/v1/organization/usage/web_search_calls",
        }
    }

    /// What each endpoint is grouped by: the key, and what sets the price.
    fn group_by(self) -> &'static [&'static str] {
        match self {
            Self::Embeddings => &["api_key_id", "model", "batch"],
            Self::Moderations | Self::Speeches | Self::Transcriptions | Self::WebSearches => {
                &["api_key_id", "model"]
            }
            Self::Images => &["api_key_id", "model", "size"],
            Self::FileSearches => &["api_key_id"],
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

/// Which endpoints are still asked: one that answers 404 (an API without it) is left out for
/// the rest of the process, said once in the log.
#[derive(Debug)]
pub struct Reachable([AtomicBool; 7]);

impl Reachable {
    pub fn all() -> Self {
        Self(std::array::from_fn(|_| AtomicBool::new(true)))
    }

    fn get(&self, e: Endpoint) -> bool {
        self.0[e.index()].load(Ordering::Relaxed)
    }

    fn drop_endpoint(&self, e: Endpoint) {
        self.0[e.index()].store(false, Ordering::Relaxed);
    }
}

/// Any of the endpoints' results: each has the fields its endpoint documents.
#[derive(Deserialize)]
struct AnyResult {
    input_tokens: Option<u64>,
    num_model_requests: Option<u64>,
    num_requests: Option<u64>,
    images: Option<u64>,
    characters: Option<u64>,
    seconds: Option<u64>,
    api_key_id: Option<String>,
    model: Option<String>,
    size: Option<String>,
    batch: Option<bool>,
}

impl AnyResult {
    fn into_row(self, e: Endpoint, bucket: DateTime<Utc>) -> Result<UsageRow, PollError> {
        let key = self.api_key_id.as_deref();
        let count = |field: &str, v: Option<u64>| bounded_count(e.path(), field, key, bucket, v);
        let requests = count("num_model_requests", self.num_model_requests)?;
        let calls = count("num_requests", self.num_requests)?;
        let tokens = TokenCounts {
            uncached_input: count("input_tokens", self.input_tokens)?,
            ..TokenCounts::default()
        };
        let model = self.model.unwrap_or_else(|| UNKNOWN_MODEL.to_owned());
        // Per-unit usage under a name of its own (see `add_to`); `prices::units` reads the
        // model back from it.
        let labelled = |what: &str| Some(format!("{model}/{what}"));
        let (model, units, requests) = match e {
            Endpoint::Embeddings | Endpoint::Moderations => (Some(model), None, requests),
            Endpoint::Images => (
                labelled("images"),
                Some(Units::Images {
                    count: count("images", self.images)?,
                    size: self.size,
                }),
                requests,
            ),
            Endpoint::Speeches => (
                labelled("speech"),
                Some(Units::Characters(count("characters", self.characters)?)),
                requests,
            ),
            Endpoint::Transcriptions => (
                labelled("transcription"),
                Some(Units::Seconds(count("seconds", self.seconds)?)),
                requests,
            ),
            Endpoint::FileSearches => (
                Some(FILE_SEARCH_MODEL.to_owned()),
                Some(Units::FileSearches(calls)),
                calls,
            ),
            Endpoint::WebSearches => (
                Some(WEB_SEARCH_MODEL.to_owned()),
                Some(Units::WebSearches(calls)),
                calls,
            ),
        };
        Ok(UsageRow {
            tokens,
            requests: Some(requests),
            key_id: self
                .api_key_id
                .unwrap_or_else(|| UNATTRIBUTED_KEY_ID.to_owned()),
            model: model.unwrap_or_default(),
            web_search_requests: if e == Endpoint::WebSearches { calls } else { 0 },
            // Batch API embeddings cost half.
            pricing: PriceDimensions {
                tier: self.batch.filter(|b| *b).map(|_| "batch".to_owned()),
                ..PriceDimensions::default()
            },
            media: MediaTokens::default(),
            units,
        })
    }
}

/// One bucket an endpoint reported: start, end and rows.
type Found = (DateTime<Utc>, DateTime<Utc>, Vec<UsageRow>);

/// Adds every reachable endpoint's rows of `page`'s buckets to them, the endpoints read side by
/// side; the bytes read. An endpoint that fails is logged and left out of this page
/// (completions are not held back for a smaller part of the spend); its buckets are read again
/// by the next re-read of late usage (`poll.late_window`). Rows of these endpoints are stored
/// under model names of their own (tool calls as `file_search_calls`/`web_search_calls`,
/// others as `MODEL/images`, `MODEL/speech`, `MODEL/transcription`), never sharing a row with
/// completions, so a page stored without one endpoint leaves what an earlier read stored of it
/// in place.
pub(super) async fn add_to(
    http: &HttpClient,
    reachable: &Reachable,
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
    let asked: Vec<Endpoint> = Endpoint::ALL
        .into_iter()
        .filter(|e| reachable.get(*e))
        .collect();
    let reads = asked
        .iter()
        .map(|e| read_endpoint(http, *e, (first, end), width, cancel));
    let results = futures_util::future::join_all(reads).await;
    let mut bytes = 0;
    let w = width.seconds();
    for (e, result) in asked.into_iter().zip(results) {
        let found = match result {
            Ok((found, n)) => {
                bytes += n;
                found
            }
            Err(PollError::Cancelled) => return Err(PollError::Cancelled),
            Err(
                err @ PollError::Api {
                    status: 403 | 404, ..
                },
            ) => {
                reachable.drop_endpoint(e);
                tracing::warn!(error = %err, endpoint = e.path(),
                    "this usage endpoint is not available to the admin key: not asked again \
                     until restart; its spend shows only in the billed cost");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, endpoint = e.path(),
                    "usage could not be read for these buckets; stored without it, and read \
                     again by the next re-read of late usage");
                continue;
            }
        };
        for (start, bucket_end, rows) in found {
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
    }
    Ok(bytes)
}

/// Every page of one endpoint for the buckets in `[first, end)`, read whole (a failure
/// part-way adds nothing), and the bytes read.
async fn read_endpoint(
    http: &HttpClient,
    e: Endpoint,
    (first, end): (DateTime<Utc>, DateTime<Utc>),
    width: BucketWidth,
    cancel: &CancellationToken,
) -> Result<(Vec<Found>, usize), PollError> {
    let w = width.seconds();
    let limit = u32::try_from((end.timestamp() - first.timestamp()).div_euclid(w) + 1)
        .unwrap_or(u32::MAX)
        .clamp(1, width.max_page());
    let mut pager = Pager::new(e.path());
    let mut bytes = 0;
    let mut found: Vec<Found> = Vec::new();
    loop {
        let (report, n): (Report<AnyResult>, usize) = http
            .get_json_sized(
                e.path(),
                || {
                    let mut q = vec![
                        ("start_time", first.timestamp().to_string()),
                        ("end_time", end.timestamp().to_string()),
                        ("bucket_width", width.as_str().to_owned()),
                        ("limit", limit.to_string()),
                    ];
                    q.extend(e.group_by().iter().map(|g| ("group_by", (*g).to_owned())));
                    if let Some(p) = pager.token() {
                        q.push(("page", p.to_owned()));
                    }
                    http.get(e.path()).query(&q)
                },
                cancel,
            )
            .await?;
        bytes += n;
        let next = report.next();
        for b in report.data {
            let (start, bucket_end) = b.times(e.path())?;
            let rows = b
                .results
                .into_iter()
                .map(|r| r.into_row(e, start))
                .collect::<Result<Vec<_>, _>>()?;
            if !rows.is_empty() {
                found.push((start, bucket_end, rows));
            }
        }
        if !pager.advance(next)? {
            return Ok((found, bytes));
        }
    }
}
