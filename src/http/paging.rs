//! Paging and parameter errors of the JSON API: `/api/v1/usage` answers at most
//! `MAX_USAGE_ROWS` rows and links the next page with an opaque cursor (the ordering columns of
//! the last row), and a bad window names the parameter and the maximum.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::api::UsageQuery;
use super::pages::url;
use crate::alerts::rfc3339;
use crate::store::{HistoryRow, UsageCursor};
use crate::window::WindowError;

/// 400 naming the query parameter, and the maximum where the value was beyond it.
pub fn bad_parameter(parameter: &str, e: &WindowError) -> Response {
    let mut body = json!({"error": format!("{parameter}: {e}"), "parameter": parameter});
    match e {
        WindowError::TooLong(_, max) | WindowError::TooOld(_, max) => {
            body["maximum"] = (*max).into();
        }
        WindowError::TooFarAhead(_) => body["maximum"] = "1d ahead".into(),
        _ => {}
    }
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

pub(super) fn encode_cursor(c: &UsageCursor) -> String {
    use base64::Engine as _;
    let text = json!([c.bucket_start, c.bucket_width, c.source, c.model]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

pub(super) fn decode_cursor(text: &str) -> Option<UsageCursor> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let (bucket_start, bucket_width, source, model): (i64, i64, String, String) =
        serde_json::from_slice(&bytes).ok()?;
    Some(UsageCursor {
        bucket_start,
        bucket_width,
        source,
        model,
    })
}

/// The `Link` header value of the page after `last`: `since` as given (a duration stays
/// relative, so later pages stay within the bound; the cursor is past it anyway), `until`
/// pinned to this answer's end.
pub(super) fn next_link(
    key: &str,
    q: &UsageQuery,
    until: DateTime<Utc>,
    limit: u32,
    last: Option<&HistoryRow>,
) -> String {
    let mut next = format!(
        "/api/v1/usage?key={}&since={}&until={}",
        url(key),
        url(q.since.as_deref().unwrap_or("48h")),
        url(&rfc3339(until.timestamp()))
    );
    for (name, value) in [
        ("source", q.source.as_deref()),
        ("width", q.width.as_deref()),
        ("format", q.format.as_deref()),
    ] {
        if let Some(v) = value {
            next.push_str(&format!("&{name}={}", url(v)));
        }
    }
    if q.limit.is_some() {
        next.push_str(&format!("&limit={limit}"));
    }
    if let Some(r) = last {
        let cursor = UsageCursor {
            bucket_start: r.bucket_start,
            bucket_width: r.bucket_width,
            source: r.source.clone(),
            model: r.model.clone(),
        };
        next.push_str(&format!("&after={}", encode_cursor(&cursor)));
    }
    format!("<{next}>; rel=\"next\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = UsageCursor {
            bucket_start: 1_700_000_000,
            bucket_width: 60,
            source: "anthropic, prod".into(),
            model: "claude-\"x\"".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor("W10"), None);
    }
}
