//! The read-only JSON API under `/api/v1/`: the same numbers as the CLI.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

pub use super::paging::bad_parameter;
use super::paging::{self, next_link};
use super::AppState;
use crate::alerts::{rfc3339, Alert};
use crate::prices::TokenCounts;
use crate::report::{Dim, PeriodKind, Request};
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

/// Spend per (source, key) today and this month in `[http] timezone`.
pub async fn spend_today_and_month(
    state: &AppState,
) -> Result<HashMap<(String, String), (f64, f64)>, Response> {
    let now = Utc::now();
    let zone = state
        .config
        .http
        .as_ref()
        .map_or(chrono_tz::Tz::UTC, |h| h.timezone);
    let [day, month] = crate::budget::current_periods(zone, now);
    // Billed figures count for UTC days the provider has closed.
    let utc_today = now.timestamp().div_euclid(86_400) * 86_400;
    let width = state.config.poll.bucket_width.seconds();
    let mut out: HashMap<(String, String), (f64, f64)> = HashMap::new();
    let (d, m) = (day.span(), month.span());
    let (today, month) = tokio::try_join!(
        state.store.spend_by_key(width, zone, d.0, d.1, utc_today),
        state.store.spend_by_key(width, zone, m.0, m.1, utc_today)
    )
    .map_err(internal)?;
    for (s, k, usd) in today {
        out.entry((s, k)).or_default().0 += usd;
    }
    for (s, k, usd) in month {
        out.entry((s, k)).or_default().1 += usd;
    }
    Ok(out)
}

pub async fn keys(State(state): State<AppState>) -> Response {
    // Three independent reads, on separate connections of the pool.
    let (keys, last_used, spend) = tokio::join!(
        state.store.all_keys(),
        state.store.last_used(),
        spend_today_and_month(&state)
    );
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return internal(e),
    };
    let last_used: HashMap<(String, String), i64> = match last_used {
        Ok(l) => l.into_iter().map(|(s, k, t)| ((s, k), t)).collect(),
        Err(e) => return internal(e),
    };
    let spend = match spend {
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
    // The configured width unless asked: the recent minute stream is a second copy of the
    // same usage, not more of it.
    let width = match q.width.as_deref() {
        None => Some(state.config.poll.bucket_width.seconds()),
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
        let mut csv = format!(
            "source,bucket_start,bucket_end,model,{},requests,cost_usd\n",
            TokenCounts::NAMES.join(",")
        );
        for r in rows
            .iter()
            .filter(|r| width.is_none_or(|w| r.bucket_width == w))
        {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                crate::csv::text(&r.source),
                rfc3339(r.bucket_start),
                rfc3339(r.bucket_start + r.bucket_width),
                crate::csv::text(&r.model),
                r.tokens.csv_fields(),
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
            .map(|r| {
                let mut item = json!({
                    "source": r.source, "bucket_start": rfc3339(r.bucket_start),
                    "bucket_end": rfc3339(r.bucket_start + r.bucket_width), "model": r.model,
                    "requests": r.requests, "cost_usd": r.cost_usd,
                });
                r.tokens.add_to(&mut item);
                item
            })
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
                .map(Alert::wire)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
pub struct ReportQuery {
    pub(super) period: Option<String>,
    pub(super) by: Option<String>,
    pub(super) last: Option<String>,
    pub(super) since: Option<String>,
    pub(super) until: Option<String>,
    pub(super) timezone: Option<String>,
    /// `json` (default) or `csv`.
    pub(super) format: Option<String>,
}

/// The same report as `keywatch report --format json` (or `csv`): the same periods for the
/// same parameters (`timezone` defaults to `[http] timezone`), the same row objects.
pub async fn report(State(state): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let req = match report_request(&state, &q) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let width = state.config.poll.bucket_width.seconds();
    match crate::report::load(&state.store, width, &req, Utc::now()).await {
        Ok(Ok(report)) => match q.format.as_deref() {
            Some("csv") => (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"keywatch-report.csv\"",
                    ),
                ],
                crate::report::to_csv(&report.rows, &report.dims),
            )
                .into_response(),
            None | Some("json") => Json(report.rows).into_response(),
            Some(other) => error(
                StatusCode::BAD_REQUEST,
                format!("format {other:?}: use json or csv"),
            ),
        },
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.replace("--", "")),
        Err(e) => internal(e),
    }
}

/// The report a query asks for, or the 400 answer naming the bad parameter.
#[allow(clippy::result_large_err)] // the error is the answer, built once per request
pub(super) fn report_request(state: &AppState, q: &ReportQuery) -> Result<Request, Response> {
    let period = q.period.as_deref().unwrap_or("day");
    let Some(kind) = PeriodKind::parse(period) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("period {period:?}: use day, week or month"),
        ));
    };
    let mut by = Vec::new();
    for d in q.by.as_deref().unwrap_or("key").split(',') {
        match Dim::parse(d.trim()) {
            Some(dim) => by.push(dim),
            None => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("by {d:?}: use key, workspace, model, tier or source"),
                ))
            }
        }
    }
    let zone = match q.timezone.as_deref() {
        None => state
            .config
            .http
            .as_ref()
            .map_or(chrono_tz::Tz::UTC, |h| h.timezone),
        Some(name) => match name.parse() {
            Ok(z) => z,
            Err(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("timezone {name:?} is not an IANA time zone (e.g. \"Europe/Berlin\")"),
                ))
            }
        },
    };
    let last = match q.last.as_deref().map(str::parse::<u32>) {
        None => None,
        Some(Ok(n)) if (1..=kind.max_last()).contains(&n) => Some(n),
        Some(_) => {
            let max = kind.max_last();
            let body = json!({
                "error": format!(
                    "last {:?}: give a whole number of {}s from 1 to {max}",
                    q.last.as_deref().unwrap_or_default(),
                    kind.noun()
                ),
                "parameter": "last",
                "maximum": max,
            });
            return Err((StatusCode::BAD_REQUEST, Json(body)).into_response());
        }
    };
    let now = Utc::now();
    let time = |field: &'static str, v: Option<&String>| match v {
        None => Ok(None),
        Some(v) => crate::window::parse_report_time(v)
            .map(|t| Some(t.resolve_in(now, zone)))
            .map_err(|e| (field, e)),
    };
    let (since, until) = match (
        time("since", q.since.as_ref()),
        time("until", q.until.as_ref()),
    ) {
        (Ok(s), Ok(u)) => (s, u),
        (Err((field, e)), _) | (_, Err((field, e))) => {
            return Err(super::paging::bad_parameter(field, &e))
        }
    };
    Ok(Request {
        kind,
        zone,
        since,
        until,
        last,
        by,
    })
}

/// Every silence, newest first, as `keywatch silences --format json` lists them.
pub async fn silences(State(state): State<AppState>) -> Response {
    match state.store.silences().await {
        Ok(list) => {
            let now = Utc::now().timestamp();
            Json(list.iter().map(|s| s.to_json(now)).collect::<Vec<_>>()).into_response()
        }
        Err(e) => internal(e),
    }
}

pub async fn budgets(State(state): State<AppState>) -> Response {
    let (periods, forecasts) =
        match crate::budget::standing(&state.store, &state.config, Utc::now()).await {
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
                .map(|a| json!({"rule": a.rule.as_str(), "threshold": a.threshold, "period": a.wire().period}))
                .collect();
            json!({
                "budget": b.name, "daily_limit_usd": b.daily_usd, "monthly_limit_usd": b.monthly_usd,
                "timezone": b.timezone.name(), "month_to_date_usd": f.map(|f| f.spent),
                "projected_usd": f.map(|f| f.forecast.projected),
                "crosses_on": f.and_then(|f| f.forecast.crosses_at).map(rfc3339),
                "thresholds_crossed": crossed,
                "periods": periods.iter().filter(|g| g.name == b.name).map(|g| json!({
                    "period": g.period, "spent_usd": crate::text::usd(g.spent_usd),
                    "limit_usd": g.limit_usd,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(items).into_response()
}
