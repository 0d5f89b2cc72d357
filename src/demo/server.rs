//! The demo's simulated provider: an Anthropic-shaped Admin API on 127.0.0.1 serving a week of
//! generated traffic. Shapes follow `docs/providers.md`; only what keywatch calls is served.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
pub const MODEL: &str = "claude-sonnet-4-5-20250929";

/// The simulated organisation.
pub struct Org {
    pub keys: Vec<Value>,
    /// Rows by hourly bucket start.
    pub usage: BTreeMap<i64, Vec<Value>>,
}

fn rfc3339(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Input tokens of a diurnal key at `t`: quiet at night, busiest mid-afternoon UTC.
fn diurnal(t: i64, scale: i64) -> i64 {
    let hour = (t.rem_euclid(DAY) / HOUR) as f64;
    scale * (20 + (80.0 * (-(hour - 15.0).powi(2) / 18.0).exp()) as i64)
}

fn row(key: &str, input: i64) -> Value {
    json!({"api_key_id": key, "workspace_id": null, "model": MODEL, "service_tier": null,
           "context_window": null, "inference_geo": null,
           "uncached_input_tokens": input, "cache_read_input_tokens": input * 2,
           "output_tokens": input / 8,
           "cache_creation": {"ephemeral_5m_input_tokens": input / 10, "ephemeral_1h_input_tokens": 0},
           "server_tool_use": {"web_search_requests": 0}})
}

/// USD of `row(_, input)` on Claude Sonnet 4.5 (3 / 15 / 3.75 / 0.30 per MTok).
pub fn row_cost(input: i64) -> f64 {
    (input as f64 * 3.0
        + (input * 2) as f64 * 0.30
        + (input / 8) as f64 * 15.0
        + (input / 10) as f64 * 3.75)
        / 1e6
}

/// Key ids of the simulated organisation.
pub const RAG: &str = "apikey_demo_rag";
pub const GATEWAY: &str = "apikey_demo_gateway";

impl Org {
    /// A week and a day of traffic up to `now`: a steady web key, a RAG service that leaks in
    /// the last two settled hours (`spike_from`), a gateway that spends fast, a key created
    /// 209 days ago, and a retired key still in use.
    pub fn generate(now: i64, spike_from: i64) -> Self {
        let created = |days: i64| rfc3339(now - days * DAY);
        let key = |id: &str, name: &str, status: &str, days: i64| {
            json!({"id": id, "type": "api_key", "name": name, "partial_key_hint": "sk-ant-api03-Dem...o0AA",
                   "status": status, "workspace_id": "wrkspc_demo", "created_by": {"id": "user_demo", "type": "user"},
                   "created_at": created(days), "expires_at": null})
        };
        let keys = vec![
            key("apikey_demo_web", "web-frontend", "active", 40),
            key(RAG, "prod-rag-service", "active", 60),
            key(GATEWAY, "gateway-prod", "active", 30),
            key("apikey_demo_legacy", "legacy-batch", "active", 209),
            key("apikey_demo_retired", "retired-bot", "inactive", 120),
        ];
        let mut usage: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
        let this_hour = now.div_euclid(HOUR) * HOUR;
        for h in 0..(9 * 24) {
            let t = this_hour - h * HOUR;
            let rows = usage.entry(t).or_default();
            rows.push(row("apikey_demo_web", diurnal(t, 500)));
            let rag = if (spike_from..spike_from + 2 * HOUR).contains(&t) {
                // 40x its busiest hour (15:00 UTC): 40x a night hour is under the 10x-busy
                // level, and the demo must show the leak whatever the time of day.
                40 * diurnal(15 * HOUR, 500)
            } else {
                diurnal(t, 500)
            };
            rows.push(row(RAG, rag));
            rows.push(row(GATEWAY, diurnal(t, 2_000)));
            if t.rem_euclid(DAY) / HOUR == 3 {
                rows.push(row("apikey_demo_legacy", 30_000));
            }
            if t >= spike_from {
                rows.push(row("apikey_demo_retired", 4_000));
            }
            rows.push(
                json!({"api_key_id": null, "workspace_id": null, "model": MODEL,
                "uncached_input_tokens": 200, "cache_read_input_tokens": 0, "output_tokens": 50,
                "cache_creation": null, "server_tool_use": null}),
            );
        }
        Self { keys, usage }
    }

    /// The gateway's estimated spend since `since`.
    pub fn spend(&self, key: &str, since: i64) -> f64 {
        self.usage
            .range(since..)
            .flat_map(|(_, rows)| rows)
            .filter(|r| r["api_key_id"] == key)
            .map(|r| row_cost(r["uncached_input_tokens"].as_i64().unwrap_or(0)))
            .sum()
    }
}

/// The router of the simulated Admin API.
pub fn router(org: Arc<Org>) -> Router {
    Router::new()
        .route("/v1/organizations/api_keys", get(keys))
        .route("/v1/organizations/usage_report/messages", get(usage))
        .route("/v1/organizations/cost_report", get(costs))
        .with_state(org)
}

async fn keys(State(org): State<Arc<Org>>) -> Json<Value> {
    let first = org.keys.first().map(|k| k["id"].clone());
    let last = org.keys.last().map(|k| k["id"].clone());
    Json(json!({"data": org.keys, "has_more": false, "first_id": first, "last_id": last}))
}

async fn usage(State(org): State<Arc<Org>>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let start = match get("page")
        .and_then(|p| p.strip_prefix("page_"))
        .and_then(|t| t.parse::<i64>().ok())
    {
        Some(t) => t,
        None => match get("starting_at").and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
            Some(t) => t.timestamp().div_euclid(HOUR) * HOUR,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"type": "error",
                "error": {"type": "invalid_request_error", "message": "starting_at is required"}})),
                )
                    .into_response()
            }
        },
    };
    let limit: i64 = get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(24)
        .min(168);
    let end = Utc::now().timestamp().div_euclid(HOUR) * HOUR + HOUR;
    let mut data = Vec::new();
    let mut t = start;
    while t < end && (data.len() as i64) < limit {
        let results = org.usage.get(&t).cloned().unwrap_or_default();
        data.push(
            json!({"starting_at": rfc3339(t), "ending_at": rfc3339(t + HOUR), "results": results}),
        );
        t += HOUR;
    }
    let has_more = t < end;
    Json(json!({"data": data, "has_more": has_more,
                "next_page": if has_more { Value::String(format!("page_{t}")) } else { Value::Null }}))
    .into_response()
}

/// The organisation's daily cost report: the usage priced at list price, per day.
async fn costs(State(org): State<Arc<Org>>, Query(q): Query<Vec<(String, String)>>) -> Json<Value> {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let day = |k: &str| {
        get(k)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp())
    };
    let start = day("starting_at").unwrap_or(0).div_euclid(DAY) * DAY;
    let end = day("ending_at").unwrap_or(start + DAY);
    let mut data = Vec::new();
    let mut t = start;
    while t < end && data.len() < 31 {
        let usd: f64 = org
            .usage
            .range(t..t + DAY)
            .flat_map(|(_, rows)| rows)
            .map(|r| row_cost(r["uncached_input_tokens"].as_i64().unwrap_or(0)))
            .sum();
        data.push(json!({"starting_at": rfc3339(t), "ending_at": rfc3339(t + DAY), "results": [
            {"currency": "USD", "amount": format!("{:.4}", usd * 100.0), "workspace_id": "wrkspc_demo",
             "description": "Claude Sonnet 4.5 Usage", "cost_type": "tokens", "model": MODEL}]}));
        t += DAY;
    }
    Json(json!({"data": data, "has_more": false, "next_page": null}))
}
