//! The HTTP plumbing every provider client shares: one `reqwest::Client`, retries with
//! exponential back-off and jitter, `retry-after`, a cap on body size, and typed errors.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// A `retry-after` longer than this is not waited out within a poll: the poll fails and the
/// next cycle tries again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What a provider's error body says: its error type, message and request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub kind: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
}

/// Reads a provider's error envelope; `None` when the body is not one. Both providers nest
/// `{"type", "message"}` under `error` (Anthropic adds a top-level `type` and `request_id`,
/// OpenAI `param` and `code`), so one reader serves both and keeps the provider's message.
pub fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
        request_id: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(rename = "type")]
        kind: Option<String>,
        code: Option<serde_json::Value>,
        message: Option<String>,
    }
    let e: Envelope = serde_json::from_slice(body).ok()?;
    let code = e.error.code.and_then(|c| c.as_str().map(str::to_owned));
    Some(ErrorBody {
        kind: e.error.kind.or(code),
        // A provider or proxy may quote the admin key back: never carried further.
        message: e
            .error
            .message
            .map(|m| crate::config::secret::redact(&m).into_owned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        request_id: e.request_id,
    })
}

/// Why a provider request failed. Messages are for operators and never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The provider answered with an error status.
    #[error("{endpoint}: HTTP {status}{kind}: {message}{hint}",
        kind = kind.as_deref().map(|k| format!(" {k}")).unwrap_or_default(),
        hint = status_hint(*status))]
    Api {
        endpoint: String,
        status: u16,
        /// The provider's error type, e.g. `permission_error`.
        kind: Option<String>,
        message: String,
        request_id: Option<String>,
    },
    #[error("{endpoint}: no answer within {timeout:?} (the provider is slow or unreachable; poll.timeout sets the limit)")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("{endpoint}: unexpected response body: {message}")]
    Decode { endpoint: String, message: String },
    #[error("{endpoint}: response body larger than {} MiB (poll.max_page_mib)", cap / (1024 * 1024))]
    TooLarge { endpoint: String, cap: usize },
    #[error("{endpoint}: paging did not end: {message}")]
    Paging { endpoint: String, message: String },
    #[error("cancelled by shutdown")]
    Cancelled,
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 => {
            " (the admin key is wrong, revoked or expired: check the source's admin_key_env/_file)"
        }
        402 => " (a billing problem on the provider account)",
        403 => " (the key is not an organisation admin key, or lacks permission)",
        404 => " (check the source's base_url)",
        429 => " (rate limited)",
        _ => "",
    }
}

impl PollError {
    /// The HTTP status the provider answered with, when it answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a retry within the same poll may help.
    fn retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            Self::Timeout { .. } | Self::Transport { .. } | Self::Decode { .. } => true,
            Self::TooLarge { .. } | Self::Paging { .. } | Self::Cancelled => false,
        }
    }
}

/// How failing requests are retried within one poll.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first retry's delay; doubled for each further retry, then jittered.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `n` (0-based): `backoff x 2^n`, with "equal jitter"
    /// (half fixed, half random) so many clients do not retry in step.
    pub fn delay(&self, n: u32) -> Duration {
        let full = self.backoff.saturating_mul(1u32 << n.min(16));
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// A provider-neutral HTTP client for one API base URL.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    base_url: reqwest::Url,
    timeout: Duration,
    retry: RetryPolicy,
    /// The largest response body read, bytes; a larger one is an error, so a hostile or broken
    /// server cannot exhaust memory.
    max_body: usize,
}

impl HttpClient {
    /// `headers` are sent with every request; mark secret ones sensitive before passing them.
    pub fn new(
        base_url: reqwest::Url,
        mut headers: HeaderMap,
        timeout: Duration,
        retry: RetryPolicy,
        max_body: usize,
    ) -> Result<Self, reqwest::Error> {
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!(
                "keywatch/",
                env!("CARGO_PKG_VERSION"),
                " (+https://github.com/keywatch/keywatch)"
            )),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            base_url,
            timeout,
            retry,
            max_body,
        })
    }

    /// A GET request for `path` below the base URL (which may itself have a path, e.g. a proxy).
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// A request of `method` for `path` below the base URL.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let mut url = self.base_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        self.client.request(method, url)
    }

    /// Sends the request `build()` makes, retrying per the policy, and decodes a 2xx body as
    /// JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        build: impl Fn() -> RequestBuilder,
        cancel: &CancellationToken,
    ) -> Result<T, PollError> {
        Ok(self.get_json_sized(endpoint, build, cancel).await?.0)
    }

    /// As [`Self::get_json`], with the size of the body it decoded (bytes), for sizing pages.
    pub async fn get_json_sized<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        build: impl Fn() -> RequestBuilder,
        cancel: &CancellationToken,
    ) -> Result<(T, usize), PollError> {
        let mut attempt = 0;
        loop {
            // Shutdown abandons a request in flight: nothing of it has been stored yet.
            let (result, retry_after) = tokio::select! {
                _ = cancel.cancelled() => return Err(PollError::Cancelled),
                r = self.attempt(endpoint, build()) => r,
            };
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !err.retryable() || attempt >= self.retry.retries {
                return Err(err);
            }
            let delay = match retry_after {
                Some(d) if d > MAX_RETRY_AFTER => return Err(err),
                Some(d) => d,
                None => self.retry.delay(attempt),
            };
            tracing::warn!(endpoint, error = %err, retry_in = ?delay, attempt = attempt + 1,
                "provider request failed; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return Err(PollError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
        }
    }

    fn too_large(&self, endpoint: &str) -> PollError {
        PollError::TooLarge {
            endpoint: endpoint.to_owned(),
            cap: self.max_body,
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        request: RequestBuilder,
    ) -> (Result<(T, usize), PollError>, Option<Duration>) {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                PollError::Timeout {
                    endpoint: endpoint.to_owned(),
                    timeout: self.timeout,
                }
            } else {
                PollError::Transport {
                    endpoint: endpoint.to_owned(),
                    message: error_chain(&e),
                }
            }
        };
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return (Err(transport(e)), None),
        };
        let status = response.status();
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| parse_retry_after(response.headers().get(RETRY_AFTER)))
            .flatten();
        if response
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return (Err(self.too_large(endpoint)), None);
        }
        // The body is held once, at its size: a usage page at 10,000 keys is about 8 MB, and a
        // Vec grown by doubling held up to twice that (heaptrack: 13–19 MB). Without a length
        // the chunks are kept as they came and joined once at the end.
        let expected = response.content_length().unwrap_or(0) as usize;
        let mut body = Vec::with_capacity(expected);
        let mut pending = Vec::new();
        let mut size = 0;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    size += chunk.len();
                    if size > self.max_body {
                        return (Err(self.too_large(endpoint)), None);
                    }
                    if expected > 0 {
                        body.extend_from_slice(&chunk);
                    } else {
                        pending.push(chunk);
                    }
                }
                Ok(None) => break,
                Err(e) => return (Err(transport(e)), None),
            }
        }
        if !pending.is_empty() {
            body.reserve_exact(size);
            for chunk in pending {
                body.extend_from_slice(&chunk);
            }
        }
        if !status.is_success() {
            let parsed = parse_error(&body).unwrap_or_else(|| ErrorBody {
                kind: None,
                message: describe_body(&body),
                request_id: None,
            });
            let err = PollError::Api {
                endpoint: endpoint.to_owned(),
                status: status.as_u16(),
                kind: parsed.kind,
                message: parsed.message,
                request_id: parsed.request_id,
            };
            return (Err(err), retry_after);
        }
        (decode(endpoint, &body).map(|v| (v, body.len())), None)
    }
}

/// A JSON body decoded into `T`, or a decode error naming the endpoint and what was wrong.
pub fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, PollError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        PollError::Decode {
            endpoint: endpoint.to_owned(),
            // The field's path (`data[0].results[1].output_tokens`) makes the error findable.
            message: if path.is_empty() || path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            },
        }
    })?;
    de.end().map_err(|e| PollError::Decode {
        endpoint: endpoint.to_owned(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// `retry-after` in whole seconds (the HTTP-date form is rare from APIs and treated as absent).
fn parse_retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: f64 = value?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3_600.0)))
}

/// A short, printable description of an unexpected error body (e.g. an HTML error page).
fn describe_body(body: &[u8]) -> String {
    // Redacted before it is cut short, so no part of a quoted secret survives the cut.
    let text = crate::config::secret::redact(&String::from_utf8_lossy(body)).into_owned();
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None if flat.is_empty() => "(empty body)".to_owned(),
        None => flat,
    }
}

/// The error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_envelopes_give_the_same_typed_error() {
        let anthropic = br#"{"type":"error","error":{"type":"permission_error","message":"not admin"},"request_id":"req_1"}"#;
        let openai = br#"{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let a = parse_error(anthropic).unwrap();
        assert_eq!(
            (
                a.kind.as_deref(),
                a.message.as_str(),
                a.request_id.as_deref()
            ),
            (Some("permission_error"), "not admin", Some("req_1"))
        );
        let o = parse_error(openai).unwrap();
        assert_eq!(
            (o.kind.as_deref(), o.message.as_str()),
            (Some("invalid_request_error"), "bad key")
        );
        assert!(parse_error(b"<html>502</html>").is_none());
    }

    #[test]
    fn retry_delays_grow_with_jitter() {
        let p = RetryPolicy {
            retries: 3,
            backoff: Duration::from_secs(1),
        };
        for n in 0..4 {
            let d = p.delay(n);
            let full = Duration::from_secs(1 << n);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
    }
}
