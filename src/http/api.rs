//! The read-only JSON API under `/api/v1/`: the same numbers as the CLI.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

pub use super::paging::bad_parameter;
use super::paging::{self, next_link};
use super::AppState;
use crate::alerts::{rfc3339, Alert};
use crate::report::{periods, rollup, Dim, KeyFacts, PeriodKind};
use crate::store::UsagePage;
use crate::window::parse_time;

/// An error answer: JSON with a message.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot read the store: {e}"),
    )
}

/// Spend per (source, key) today and this month (UTC).
pub async fn spend_today_and_month(
    state: &AppState,
) -> Result<HashMap<(String, String), (f64, f64)>, Response> {
    let now = Utc::now();
    let today = now.timestamp().div_euclid(86_400) * 86_400;
    let month = now
        .date_naive()
        .with_day(1)
        .unwrap_or(now.date_naive())
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp();
    let width = state.config.poll.bucket_width.seconds();
    let mut out: HashMap<(String, String), (f64, f64)> = HashMap::new();
    for (s, k, usd) in state
        .store
        .spend_by_key(width, chrono_tz::Tz::UTC, today, today + 86_400, today)
        .await
        .map_err(internal)?
    {
        out.entry((s, k)).or_default().0 += usd;
    }
    for (s, k, usd) in state
        .store
        .spend_by_key(width, chrono_tz::Tz::UTC, month, today + 86_400, today)
        .await
        .map_err(internal)?
    {
        out.entry((s, k)).or_default().1 += usd;
    }
    Ok(out)
}

pub async fn keys(State(state): State<AppState>) -> Response {
    let keys = match state.store.all_keys().await {
        Ok(k) => k,
        Err(e) => return internal(e),
    };
    let last_used: HashMap<(String, String), i64> = match state.store.last_used().await {
        Ok(l) => l.into_iter().map(|(s, k, t)| ((s, k), t)).collect(),
        Err(e) => return internal(e),
    };
    let spend = match spend_today_and_month(&state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = Utc::now().timestamp();
    let items: Vec<Value> = keys
        .iter()
        .map(|k| {
            let id = (k.source.clone(), k.key_id.clone());
            let (today, mtd) = spend.get(&id).copied().unwrap_or_default();
            json!({
                "source": k.source, "key_id": k.key_id, "name": k.name, "status": k.status,
                "workspace_id": k.workspace_id, "created_at": k.created_at.map(rfc3339),
                "age_days": k.created_at.map(|c| (now - c).div_euclid(86_400)),
                "last_used": last_used.get(&id).map(|t| rfc3339(*t)),
                "spend_today_usd": today, "spend_mtd_usd": mtd,
            })
        })
        .collect();
    Json(items).into_response()
}

/// The most rows one answer of `/api/v1/usage` carries; a `Link: <…>; rel="next"` header
/// points at the next page.
pub const MAX_USAGE_ROWS: u32 = 10_000;

#[derive(Deserialize)]
pub struct UsageQuery {
    key: Option<String>,
    pub(super) source: Option<String>,
    pub(super) since: Option<String>,
    until: Option<String>,
    pub(super) width: Option<String>,
    /// `json` (default) or `csv`.
    pub(super) format: Option<String>,
    /// Rows per answer, 1 to [`MAX_USAGE_ROWS`] (the default).
    pub(super) limit: Option<String>,
    /// The cursor of the next page, from the previous answer's `Link` header.
    after: Option<String>,
}

pub async fn usage(State(state): State<AppState>, Query(q): Query<UsageQuery>) -> Response {
    let Some(key) = q.key.clone() else {
        return error(
            StatusCode::BAD_REQUEST,
            "key is required, e.g. /api/v1/usage?key=apikey_01…",
        );
    };
    let since = match parse_time(q.since.as_deref().unwrap_or("48h")) {
        Ok(t) => t,
        Err(e) => return bad_parameter("since", &e),
    };
    let until = match q.until.as_deref().map(parse_time).transpose() {
        Ok(t) => t,
        Err(e) => return bad_parameter("until", &e),
    };
    let (since, until) = match crate::window::range(since, until, Utc::now()) {
        Ok(r) => r,
        Err(e) => return bad_parameter("since", &e),
    };
    let width = match q.width.as_deref() {
        None => None,
        Some("1m") => Some(60),
        Some("1h") => Some(3_600),
        Some("1d") => Some(86_400),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("width {other:?}: use 1m, 1h or 1d"),
            )
        }
    };
    let limit = match q.limit.as_deref().map(str::parse::<u32>) {
        None => MAX_USAGE_ROWS,
        Some(Ok(n)) if (1..=MAX_USAGE_ROWS).contains(&n) => n,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": format!("limit {:?}: give a number of rows from 1 to {MAX_USAGE_ROWS}", q.limit.unwrap_or_default()),
                    "parameter": "limit", "maximum": MAX_USAGE_ROWS,
                })),
            )
                .into_response()
        }
    };
    let after = match q
        .after
        .as_deref()
        .map(|a| paging::decode_cursor(a).ok_or(a))
    {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(a)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("after {a:?}: not a cursor from a previous answer's Link header"),
            )
        }
    };
    let mut rows = match state
        .store
        .usage_page(UsagePage {
            key_id: &key,
            source: q.source.as_deref(),
            width,
            since: since.timestamp(),
            until: until.timestamp(),
            after: after.as_ref(),
            limit: limit + 1,
        })
        .await
    {
        Ok(rows) => rows,
        Err(e) => return internal(e),
    };
    // More than a page: the next one starts after the last row of this one.
    let link = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        next_link(&key, &q, until, limit, rows.last())
    });
    if q.format.as_deref() == Some("csv") {
        let mut csv = String::from("source,bucket_start,bucket_end,model,uncached_input_tokens,cache_write_5m_tokens,cache_write_1h_tokens,cache_read_input_tokens,output_tokens,requests,cost_usd\n");
        for r in rows
            .iter()
            .filter(|r| width.is_none_or(|w| r.bucket_width == w))
        {
            let t = &r.tokens;
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{}\n",
                crate::report::csv_field(&r.source),
                rfc3339(r.bucket_start),
                rfc3339(r.bucket_start + r.bucket_width),
                crate::report::csv_field(&r.model),
                t.uncached_input,
                t.cache_write_5m,
                t.cache_write_1h,
                t.cache_read,
                t.output,
                r.requests.map(|n| n.to_string()).unwrap_or_default(),
                crate::report::fmt_opt(r.cost_usd, 6)
            ));
        }
        let disposition = format!(
            "attachment; filename=\"keywatch-{}.csv\"",
            key.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-',
                "_"
            )
        );
        return with_link(
            (
                [
                    (axum::http::header::CONTENT_TYPE, "text/csv".to_owned()),
                    (axum::http::header::CONTENT_DISPOSITION, disposition),
                ],
                csv,
            )
                .into_response(),
            link,
        );
    }
    let body = Json(
        rows.iter()
            .filter(|r| width.is_none_or(|w| r.bucket_width == w))
            .map(|r| json!({
                "source": r.source, "bucket_start": rfc3339(r.bucket_start),
                "bucket_end": rfc3339(r.bucket_start + r.bucket_width), "model": r.model,
                "uncached_input_tokens": r.tokens.uncached_input, "cache_read_input_tokens": r.tokens.cache_read,
                "cache_write_5m_tokens": r.tokens.cache_write_5m, "cache_write_1h_tokens": r.tokens.cache_write_1h,
                "output_tokens": r.tokens.output, "requests": r.requests, "cost_usd": r.cost_usd,
            }))
            .collect::<Vec<_>>(),
    )
    .into_response();
    with_link(body, link)
}

/// Adds the `Link` header of the next page, if there is one.
fn with_link(mut response: Response, link: Option<String>) -> Response {
    if let Some(value) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

#[derive(Deserialize)]
pub struct AlertsQuery {
    status: Option<String>,
}

pub async fn alerts(State(state): State<AppState>, Query(q): Query<AlertsQuery>) -> Response {
    let status = q.status.as_deref().unwrap_or("firing");
    if !matches!(status, "firing" | "resolved" | "all") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("status {status:?}: use firing, resolved or all"),
        );
    }
    match state.store.alerts(status != "firing").await {
        Ok(list) => Json(
            list.iter()
                .filter(|a| status == "all" || a.status.as_str() == status)
                .map(Alert::to_json)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
pub struct ReportQuery {
    period: Option<String>,
    by: Option<String>,
    last: Option<u32>,
}

pub async fn report(State(state): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let kind = match q.period.as_deref().unwrap_or("day") {
        "day" => PeriodKind::Day,
        "week" => PeriodKind::Week,
        "month" => PeriodKind::Month,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("period {other:?}: use day, week or month"),
            )
        }
    };
    let mut dims = Vec::new();
    for d in q.by.as_deref().unwrap_or("key").split(',') {
        dims.push(match d.trim() {
            "key" => Dim::Key,
            "workspace" => Dim::Workspace,
            "model" => Dim::Model,
            "source" => Dim::Source,
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("by {other:?}: use key, workspace, model or source"),
                )
            }
        });
    }
    dims.sort();
    dims.dedup();
    let tz = state
        .config
        .http
        .as_ref()
        .map_or(chrono_tz::Tz::UTC, |h| h.timezone);
    let today = Utc::now().with_timezone(&tz).date_naive();
    let back = i64::from(q.last.unwrap_or(7).clamp(1, 400));
    let first = today
        - chrono::Duration::days(match kind {
            PeriodKind::Day => back,
            PeriodKind::Week => 7 * back,
            PeriodKind::Month => 31 * back,
        });
    let list = periods(kind, tz, first, today);
    let spans: Vec<(i64, i64)> = list.iter().map(|p| (p.start, p.end)).collect();
    let width = state.config.poll.bucket_width.seconds();
    let (usage, billed, keys) = match tokio::try_join!(
        state.store.usage_by_period(width, tz, &spans),
        state.store.billed_by_period(&spans),
        state.store.all_keys()
    ) {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    let facts = |s: &str, k: &str| {
        let key = keys.iter().find(|x| x.source == s && x.key_id == k);
        KeyFacts {
            name: key.and_then(|k| k.name.clone()),
            workspace: key.and_then(|k| k.workspace_id.clone()),
        }
    };
    let rows = rollup(&list, &usage, &billed, &dims, &facts);
    Json(
        rows.iter()
            .map(|r| {
                let mut v = json!({"period": r.period, "cost_usd": r.cost_usd, "billed_usd": r.billed_usd,
                    "change_usd": r.change_usd, "change_pct": r.change_pct, "share_pct": r.share_pct,
                    "input_tokens": r.tokens.uncached_input + r.tokens.cache_read + r.tokens.cache_write_5m + r.tokens.cache_write_1h,
                    "output_tokens": r.tokens.output, "requests": r.requests});
                for (k, val) in &r.group {
                    v[*k] = val.clone().into();
                }
                v
            })
            .collect::<Vec<_>>(),
    )
    .into_response()
}

pub async fn budgets(State(state): State<AppState>) -> Response {
    let forecasts =
        match crate::alerts::forecast::budget_forecasts(&state.store, &state.config, Utc::now())
            .await
        {
            Ok(f) => f,
            Err(e) => return internal(e),
        };
    let open = match state.store.alerts(false).await {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let items: Vec<Value> = state
        .config
        .budgets
        .iter()
        .map(|b| {
            let f = forecasts.iter().find(|f| f.budget == b.name);
            let crossed: Vec<Value> = open
                .iter()
                .filter(|a| a.budget.as_deref() == Some(b.name.as_str()))
                .map(|a| json!({"rule": a.rule.as_str(), "threshold": a.threshold, "period": a.to_json()["period"]}))
                .collect();
            json!({
                "budget": b.name, "daily_limit_usd": b.daily_usd, "monthly_limit_usd": b.monthly_usd,
                "timezone": b.timezone.name(), "month_to_date_usd": f.map(|f| f.spent),
                "projected_usd": f.map(|f| f.forecast.projected),
                "crosses_on": f.and_then(|f| f.forecast.crosses_at).map(rfc3339),
                "thresholds_crossed": crossed,
            })
        })
        .collect();
    Json(items).into_response()
}
