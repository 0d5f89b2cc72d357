//! A fake Anthropic Admin API on wiremock that serves the documented shapes
//! (`docs/providers.md`, Anthropic): paged key listings in both item shapes, and a paged
//! usage report with empty buckets and `api_key_id: null` rows. It enforces what the real API
//! enforces: the admin key, `anthropic-version`, and the `group_by[]` array form.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{first, query};

pub const ADMIN_KEY: &str = "sk-ant-admin01-TESTKEY-do-not-log-7f3a9c";
pub const KEYS_PATH: &str = "/v1/organizations/api_keys";
pub const USAGE_PATH: &str = "/v1/organizations/usage_report/messages";
pub const COST_PATH: &str = "/v1/organizations/cost_report";

/// Token counts of one fake usage row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    pub uncached: i64,
    pub cache_read: i64,
    pub cache_5m: i64,
    pub cache_1h: i64,
    pub output: i64,
}

/// One served row: key (None = Workbench), model, tokens, and the price dimensions (`None`:
/// `standard` tier, `global` geo, `standard` speed) and web searches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FakeRow {
    pub key: Option<String>,
    pub model: String,
    pub tokens: Tokens,
    pub tier: Option<String>,
    pub geo: Option<String>,
    pub speed: Option<String>,
    pub web_searches: i64,
}

/// Which price dimensions a usage request groups by; rows that differ only in the others are
/// served as one, added up, as the API does.
#[derive(Debug, Clone, Copy)]
struct Grouping {
    tier: bool,
    geo: bool,
    speed: bool,
}

impl Grouping {
    fn serve(self, rows: Vec<FakeRow>) -> Vec<Value> {
        let mut merged: Vec<(FakeRow, Value)> = Vec::new();
        for r in rows {
            let dims = json!({
                "service_tier": self.tier.then(|| r.tier.clone().unwrap_or_else(|| "standard".into())),
                "inference_geo": self.geo.then(|| r.geo.clone().unwrap_or_else(|| "global".into())),
                "speed": self.speed.then(|| r.speed.clone().unwrap_or_else(|| "standard".into())),
            });
            match merged
                .iter_mut()
                .find(|(m, d)| m.key == r.key && m.model == r.model && *d == dims)
            {
                Some((m, _)) => {
                    m.tokens.uncached += r.tokens.uncached;
                    m.tokens.cache_read += r.tokens.cache_read;
                    m.tokens.cache_5m += r.tokens.cache_5m;
                    m.tokens.cache_1h += r.tokens.cache_1h;
                    m.tokens.output += r.tokens.output;
                    m.web_searches += r.web_searches;
                }
                None => merged.push((r, dims)),
            }
        }
        merged
            .into_iter()
            .map(|(r, dims)| {
                let mut v = row_json(&r);
                v["service_tier"] = dims["service_tier"].clone();
                v["inference_geo"] = dims["inference_geo"].clone();
                if self.speed {
                    v["speed"] = dims["speed"].clone();
                }
                v
            })
            .collect()
    }
}

/// USD of one key (`None`: no key) in the analytics API.
pub type KeyUsd = (Option<String>, f64);

#[derive(Default)]
pub struct FakeData {
    /// Key listing items, as JSON (either shape).
    pub keys: Vec<Value>,
    /// Usage rows by hourly bucket start (Unix seconds).
    pub usage: BTreeMap<i64, Vec<FakeRow>>,
    /// Buckets per usage page (at most the request's `limit`).
    pub usage_page_size: usize,
    /// Refuse the fast-mode beta header, as for an organisation without the beta.
    pub refuse_fast_mode_beta: bool,
    /// Keys per listing page (at most the request's `limit`).
    pub keys_page_size: usize,
    /// Usage requests (`1h`) answered so far.
    pub usage_requests: usize,
    /// Usage requests of the minute stream (`1m`) answered so far.
    pub minute_requests: usize,
    /// How long each usage page takes to arrive.
    pub usage_delay: std::time::Duration,
    /// Cost report rows (as JSON, amounts in cents strings) by UTC day.
    pub costs: BTreeMap<i64, Vec<Value>>,
    /// The cost analytics API (beta): USD per key (`None`: no key) by UTC day; `None` answers
    /// 404, as an API without it does.
    pub analytics: Option<BTreeMap<i64, Vec<KeyUsd>>>,
    /// Rows per analytics page.
    pub analytics_page_size: usize,
    /// Analytics requests answered so far.
    pub analytics_requests: usize,
    /// Refuse key updates (403), as for an admin key without write permission.
    pub refuse_key_changes: bool,
    /// Key update calls answered so far.
    pub key_changes: usize,
}

pub struct FakeAnthropic {
    pub server: MockServer,
    pub data: Arc<Mutex<FakeData>>,
}

impl FakeAnthropic {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let data = Arc::new(Mutex::new(FakeData {
            usage_page_size: 24,
            keys_page_size: 2,
            analytics_page_size: 2,
            ..FakeData::default()
        }));
        Mock::given(method("GET"))
            .and(path(KEYS_PATH))
            .respond_with(KeysResponder(Arc::clone(&data)))
            .with_priority(10)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(USAGE_PATH))
            .respond_with(UsageResponder(Arc::clone(&data)))
            .with_priority(10)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .respond_with(CostResponder(Arc::clone(&data)))
            .with_priority(10)
            .mount(&server)
            .await;
        crate::fake_analytics::mount(&server, &data).await;
        crate::fake_key_admin::mount_anthropic(&server, &data).await;
        Self { server, data }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn add_key(&self, item: Value) {
        self.data.lock().unwrap().keys.push(item);
    }

    /// Changes a listed key's status, as an admin deactivating it would.
    pub fn set_key_status(&self, id: &str, status: &str) {
        let mut data = self.data.lock().unwrap();
        let key = data
            .keys
            .iter_mut()
            .find(|k| k["id"] == id)
            .expect("known key");
        key["status"] = status.into();
    }

    pub fn add_usage(&self, bucket_start: i64, row: FakeRow) {
        self.data
            .lock()
            .unwrap()
            .usage
            .entry(bucket_start)
            .or_default()
            .push(row);
    }

    /// Every row the fake serves for buckets starting at or after `since`.
    pub fn served_since(&self, since: i64) -> Vec<(i64, FakeRow)> {
        let data = self.data.lock().unwrap();
        data.usage
            .range(since..)
            .flat_map(|(t, rows)| rows.iter().map(move |r| (*t, r.clone())))
            .collect()
    }
}

/// A cost report line: `usd` becomes a cents string, as the API sends it.
pub fn cost_line(workspace: Option<&str>, cost_type: &str, model: Option<&str>, usd: f64) -> Value {
    json!({"currency": "USD", "amount": format!("{:.4}", usd * 100.0), "workspace_id": workspace,
           "description": format!("{cost_type} usage"), "cost_type": cost_type, "model": model,
           "service_tier": null, "context_window": null, "token_type": null, "inference_geo": null})
}

/// A key in the older item shape (top-level `workspace_id`).
pub fn key_old_shape(id: &str, name: &str, status: &str, created: &str, ws: Option<&str>) -> Value {
    json!({"id": id, "type": "api_key", "name": name, "partial_key_hint": "sk-ant-api03-R2D...igAA",
           "status": status, "workspace_id": ws,
           "created_by": {"id": "user_01WCz1FkmYMm4gnmykNKUu3Q", "type": "user"},
           "created_at": created, "expires_at": null})
}

/// A key in the newer item shape (`scope` and `principal`, no `workspace_id`).
pub fn key_new_shape(id: &str, name: &str, status: &str, created: &str, ws: Option<&str>) -> Value {
    let scope = match ws {
        Some(ws) => json!({"type": "workspace", "workspace_id": ws}),
        None => json!({"type": "organization"}),
    };
    json!({"id": id, "type": "api_key", "name": name, "partial_key_hint": null, "status": status,
           "scope": scope, "principal": null, "created_at": created, "expires_at": null})
}

/// The API's error envelope (shared with the minute-corpus fake).
pub fn error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "type": "error", "error": {"type": kind, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}))
}

/// The admin key and `anthropic-version` checks the real API makes.
pub fn check_auth(req: &Request) -> Option<ResponseTemplate> {
    let key = req.headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(ADMIN_KEY) {
        return Some(error(401, "authentication_error", "invalid x-api-key"));
    }
    if req.headers.get("anthropic-version").is_none() {
        return Some(error(
            400,
            "invalid_request_error",
            "anthropic-version header is required",
        ));
    }
    None
}

struct KeysResponder(Arc<Mutex<FakeData>>);

impl Respond for KeysResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(e) = check_auth(req) {
            return e;
        }
        let q = query(req);
        let data = self.0.lock().unwrap();
        let limit: usize = first(&q, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(20);
        let start = match first(&q, "after_id") {
            Some(after) => match data.keys.iter().position(|k| k["id"] == after) {
                Some(i) => i + 1,
                None => return error(400, "invalid_request_error", "unknown after_id"),
            },
            None => 0,
        };
        let end = (start + limit.min(data.keys_page_size)).min(data.keys.len());
        let page = &data.keys[start..end];
        ResponseTemplate::new(200).set_body_json(json!({
            "data": page,
            "has_more": end < data.keys.len(),
            "first_id": page.first().map(|k| k["id"].clone()),
            "last_id": page.last().map(|k| k["id"].clone()),
        }))
    }
}

struct UsageResponder(Arc<Mutex<FakeData>>);

pub fn rfc3339(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Respond for UsageResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(e) = check_auth(req) {
            return e;
        }
        let q = query(req);
        if q.iter().any(|(k, _)| k == "group_by") {
            return error(
                400,
                "invalid_request_error",
                "group_by must be sent as group_by[]",
            );
        }
        let groups: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "group_by[]")
            .map(|(_, v)| v.as_str())
            .collect();
        if !(groups.contains(&"api_key_id") && groups.contains(&"model")) {
            return error(
                400,
                "invalid_request_error",
                "this fake expects group_by[]=api_key_id and model",
            );
        }
        if groups.len() > 5 {
            return error(
                400,
                "invalid_request_error",
                "group_by allows at most 5 values",
            );
        }
        let grouping = Grouping {
            tier: groups.contains(&"service_tier"),
            geo: groups.contains(&"inference_geo"),
            speed: groups.contains(&"speed"),
        };
        let fast_mode_beta = req
            .headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|b| b.trim() == "fast-mode-2026-02-01");
        if fast_mode_beta && self.0.lock().unwrap().refuse_fast_mode_beta {
            return error(
                400,
                "invalid_request_error",
                "Unexpected value(s) `fast-mode-2026-02-01` for the `anthropic-beta` header. \
                 Please consult our documentation at docs.claude.com or try again without the header.",
            );
        }
        if grouping.speed && !fast_mode_beta {
            return error(
                400,
                "invalid_request_error",
                "group_by[]=speed requires the anthropic-beta header fast-mode-2026-02-01",
            );
        }
        // `1h` from the stored hourly rows; `1m` spreads each hour's rows evenly over its
        // minutes (the remainder in the first ones), so both widths add up to the same usage.
        let (width, max_limit) = match first(&q, "bucket_width") {
            Some("1h") => (3600, 168),
            Some("1m") => (60, 1440),
            _ => {
                return error(
                    400,
                    "invalid_request_error",
                    "this fake serves bucket_width=1h and 1m",
                )
            }
        };
        let limit: usize = first(&q, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(if width == 60 { 60 } else { 24 });
        if limit > max_limit {
            return error(
                400,
                "invalid_request_error",
                "limit must be at most 168 for 1h and 1440 for 1m",
            );
        }
        let Some(starting_at) =
            first(&q, "starting_at").and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        else {
            return error(400, "invalid_request_error", "starting_at is required");
        };
        // The page token is opaque to clients: here, the next bucket start.
        let start = match first(&q, "page") {
            Some(p) => match p.strip_prefix("page_").and_then(|t| t.parse::<i64>().ok()) {
                Some(t) => t,
                None => return error(400, "invalid_request_error", "bad page token"),
            },
            None => starting_at.timestamp().div_euclid(width) * width,
        };
        let now = Utc::now().timestamp();
        let end_exclusive = now.div_euclid(width) * width + width; // includes the current bucket
        let mut data = self.0.lock().unwrap();
        let per_page = if width == 60 {
            data.minute_requests += 1;
            limit as i64
        } else {
            data.usage_requests += 1;
            limit.min(data.usage_page_size) as i64
        };
        let mut buckets = Vec::new();
        let mut t = start;
        while t < end_exclusive && (buckets.len() as i64) < per_page {
            let hour = t.div_euclid(3600) * 3600;
            let minute = (t - hour) / 60;
            let rows: Vec<FakeRow> = data
                .usage
                .get(&hour)
                .map(|rows| {
                    rows.iter()
                        .filter_map(|r| {
                            if width == 60 {
                                minute_share(r, minute)
                            } else {
                                Some(r.clone())
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let rows = grouping.serve(rows);
            buckets.push(
                json!({"starting_at": rfc3339(t), "ending_at": rfc3339(t + width), "results": rows}),
            );
            t += width;
        }
        let has_more = t < end_exclusive;
        ResponseTemplate::new(200).set_delay(data.usage_delay).set_body_json(json!({
            "data": buckets,
            "has_more": has_more,
            "next_page": if has_more { Value::String(format!("page_{t}")) } else { Value::Null },
        }))
    }
}

struct CostResponder(Arc<Mutex<FakeData>>);

impl Respond for CostResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(e) = check_auth(req) {
            return e;
        }
        let q = query(req);
        if first(&q, "bucket_width") != Some("1d") {
            return error(
                400,
                "invalid_request_error",
                "cost_report only supports bucket_width=1d",
            );
        }
        let day = |key: &str| {
            first(&q, key)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp())
        };
        let Some(start) = day("starting_at") else {
            return error(400, "invalid_request_error", "starting_at is required");
        };
        let today = Utc::now().timestamp().div_euclid(86_400) * 86_400;
        let end = day("ending_at").unwrap_or(today).min(today);
        if start % 86_400 != 0 || end <= start {
            return error(
                400,
                "invalid_request_error",
                "ending date must be after starting date",
            );
        }
        let from = first(&q, "page")
            .and_then(|p| p.strip_prefix("page_"))
            .and_then(|t| t.parse().ok())
            .unwrap_or(start);
        let data = self.0.lock().unwrap();
        let mut buckets = Vec::new();
        let mut t = from;
        while t < end && buckets.len() < 7 {
            let results = data.costs.get(&t).cloned().unwrap_or_default();
            buckets.push(json!({"starting_at": rfc3339(t), "ending_at": rfc3339(t + 86_400), "results": results}));
            t += 86_400;
        }
        let has_more = t < end;
        ResponseTemplate::new(200).set_body_json(json!({"data": buckets, "has_more": has_more,
            "next_page": if has_more { Value::String(format!("page_{t}")) } else { Value::Null }}))
    }
}

/// Minute `m`'s share (0 to 59) of an hourly row, `None` when it is empty.
fn minute_share(r: &FakeRow, m: i64) -> Option<FakeRow> {
    let share = |v: i64| v / 60 + i64::from(m < v % 60);
    let t = &r.tokens;
    let tokens = Tokens {
        uncached: share(t.uncached),
        cache_read: share(t.cache_read),
        cache_5m: share(t.cache_5m),
        cache_1h: share(t.cache_1h),
        output: share(t.output),
    };
    let web_searches = share(r.web_searches);
    (tokens != Tokens::default() || web_searches > 0).then(|| FakeRow {
        tokens,
        web_searches,
        ..r.clone()
    })
}

/// One usage row in the documented shape (`docs/providers.md` 4.2).
pub fn row_json(r: &FakeRow) -> Value {
    json!({"api_key_id": r.key, "workspace_id": null, "model": r.model, "service_tier": null,
           "context_window": null, "inference_geo": null,
           "uncached_input_tokens": r.tokens.uncached, "cache_read_input_tokens": r.tokens.cache_read,
           "output_tokens": r.tokens.output,
           "cache_creation": {"ephemeral_5m_input_tokens": r.tokens.cache_5m,
                              "ephemeral_1h_input_tokens": r.tokens.cache_1h},
           "server_tool_use": {"web_search_requests": r.web_searches}})
}
