//! A fake OpenAI Administration API on wiremock serving the documented shapes
//! (`docs/providers.md`, OpenAI): paged projects (archived ones only with
//! `include_archived=true`), paged project keys (inactive ones hidden without
//! `owner_project_access=any`), the completions usage report (first bucket starting at the raw
//! `start_time`, empty buckets, optional token fields present or absent) and daily costs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{first, query};

pub const OPENAI_ADMIN_KEY: &str = "sk-admin-TESTONLY-openai-5d1c";
pub const USAGE_PATH: &str = "/v1/organization/usage/completions";
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// One usage row: key, model, input (incl. cached), cached, output, requests; `detailed` adds
/// the newer optional fields.
#[derive(Debug, Clone)]
pub struct OaRow {
    pub key: String,
    pub model: String,
    pub input: i64,
    pub cached: i64,
    pub output: i64,
    pub requests: i64,
    pub detailed: bool,
    /// A Batch API row.
    pub batch: bool,
    /// The service tier (`None`: `default`).
    pub tier: Option<String>,
    /// Audio input and output tokens, parts of `input` and `output` (sent when not zero).
    pub audio_in: i64,
    pub audio_out: i64,
}

#[derive(Default)]
pub struct OaData {
    pub projects: Vec<Value>,
    /// (project id, key item).
    pub keys: Vec<(String, Value)>,
    pub usage: BTreeMap<i64, Vec<OaRow>>,
    /// USD per key by UTC day.
    pub costs: BTreeMap<i64, Vec<(String, f64)>>,
    /// Refuse key deletions (403).
    pub refuse_key_changes: bool,
    /// Key deletion calls answered so far.
    pub key_changes: usize,
    /// Results of the other usage endpoints (`fake_openai_more`), by (path, hourly bucket).
    pub more: BTreeMap<(String, i64), Vec<Value>>,
    /// Embeddings usage by hourly bucket: (key, model, input tokens, requests).
    pub embeddings: BTreeMap<i64, Vec<(String, String, i64, i64)>>,
}

pub struct FakeOpenAi {
    pub server: MockServer,
    pub data: Arc<Mutex<OaData>>,
}

pub fn error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
    )
}

pub fn authorised(req: &Request) -> bool {
    req.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {OPENAI_ADMIN_KEY}"))
}

/// A page of `items` after the `after` id, `size` at a time, in the list envelope.
fn list_page(items: &[Value], after: Option<&str>, size: usize) -> ResponseTemplate {
    let start = match after {
        Some(a) => match items.iter().position(|i| i["id"] == a) {
            Some(i) => i + 1,
            None => return error(400, "invalid_request_error", "unknown cursor"),
        },
        None => 0,
    };
    let end = (start + size).min(items.len());
    let page = &items[start..end];
    ResponseTemplate::new(200).set_body_json(json!({
        "object": "list", "data": page,
        "first_id": page.first().map(|i| i["id"].clone()),
        "last_id": page.last().map(|i| i["id"].clone()),
        "has_more": end < items.len(),
    }))
}

struct Projects(Arc<Mutex<OaData>>);

impl Respond for Projects {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !authorised(req) {
            return error(401, "invalid_request_error", "Incorrect API key provided");
        }
        let q = query(req);
        let all = first(&q, "include_archived") == Some("true");
        let data = self.0.lock().unwrap();
        let shown: Vec<Value> = data
            .projects
            .iter()
            .filter(|p| all || p["status"] != "archived")
            .cloned()
            .collect();
        list_page(&shown, first(&q, "after"), 1)
    }
}

struct Keys(Arc<Mutex<OaData>>);

impl Respond for Keys {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !authorised(req) {
            return error(401, "invalid_request_error", "Incorrect API key provided");
        }
        let q = query(req);
        let project = req
            .url
            .path()
            .split('/')
            .nth(4)
            .unwrap_or_default()
            .to_owned();
        let any = first(&q, "owner_project_access") == Some("any");
        let data = self.0.lock().unwrap();
        let shown: Vec<Value> = data
            .keys
            .iter()
            .filter(|(p, k)| *p == project && (any || k["owner_project_access"] != "inactive"))
            .map(|(_, k)| k.clone())
            .collect();
        list_page(&shown, first(&q, "after"), 1)
    }
}

/// Serves buckets from `start_time` (the first one starting exactly there, ending at the next
/// boundary) to now, `per_page` per page, with `page` tokens carrying the next start.
pub fn buckets_page(
    q: &[(String, String)],
    width: i64,
    per_page: usize,
    results: impl Fn(i64) -> Vec<Value>,
) -> ResponseTemplate {
    let Some(start_time) = first(q, "start_time").and_then(|s| s.parse::<i64>().ok()) else {
        return error(400, "invalid_request_error", "start_time is required");
    };
    let start = match first(q, "page") {
        Some(p) => match p.strip_prefix("page_").and_then(|t| t.parse::<i64>().ok()) {
            Some(t) => t,
            None => return error(400, "invalid_request_error", "bad page"),
        },
        None => start_time,
    };
    // At most `limit` buckets, as the API serves them (and never more than this fake's page).
    let per_page = first(q, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .map_or(per_page, |l| l.clamp(1, per_page));
    let now = first(q, "end_time")
        .and_then(|e| e.parse::<i64>().ok())
        .unwrap_or(i64::MAX)
        .min(chrono::Utc::now().timestamp());
    let mut data = Vec::new();
    let mut t = start;
    while t < now && data.len() < per_page {
        let end = (t.div_euclid(width) + 1) * width;
        data.push(
            json!({"object": "bucket", "start_time": t, "end_time": end, "results": results(t)}),
        );
        t = end;
    }
    let has_more = t < now;
    ResponseTemplate::new(200).set_body_json(json!({
        "object": "page", "data": data, "has_more": has_more,
        "next_page": if has_more { Value::String(format!("page_{t}")) } else { Value::Null },
    }))
}

struct Usage(Arc<Mutex<OaData>>);

impl Respond for Usage {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !authorised(req) {
            return error(401, "invalid_request_error", "Incorrect API key provided");
        }
        let q = query(req);
        let groups: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "group_by" || k == "group_by[]")
            .map(|(_, v)| v.as_str())
            .collect();
        let width = match first(&q, "bucket_width") {
            Some("1h") => HOUR,
            Some("1m") => 60,
            _ => 0,
        };
        if !(groups.contains(&"api_key_id") && groups.contains(&"model")) || width == 0 {
            return error(
                400,
                "invalid_request_error",
                "this fake serves 1h and 1m buckets grouped by api_key_id and model",
            );
        }
        let (by_batch, by_tier) = (groups.contains(&"batch"), groups.contains(&"service_tier"));
        let data = self.0.lock().unwrap();
        // `1m` spreads each hour's rows evenly over its minutes (the remainder first).
        let per_page = if width == 60 { 1440 } else { 24 };
        buckets_page(&q, width, per_page, |t| {
            let hour = t.div_euclid(HOUR) * HOUR;
            let m = (t - hour) / 60;
            let share = |v: i64| {
                if width == 60 {
                    v / 60 + i64::from(m < v % 60)
                } else {
                    v
                }
            };
            data.usage
                .get(&hour)
                .into_iter()
                .flatten()
                .map(|r| OaRow {
                    input: share(r.input),
                    cached: share(r.cached),
                    output: share(r.output),
                    requests: share(r.requests),
                    ..r.clone()
                })
                .filter(|r| r.input + r.output + r.requests > 0)
                .fold(Vec::<(OaRow, Value)>::new(), |mut rows, r| {
                    // Rows that differ only in dimensions not grouped by are served as one.
                    let dims = json!({
                        "batch": by_batch.then_some(r.batch),
                        "service_tier": by_tier
                            .then(|| r.tier.clone().unwrap_or_else(|| "default".into())),
                    });
                    match rows
                        .iter_mut()
                        .find(|(m, d)| m.key == r.key && m.model == r.model && *d == dims)
                    {
                        Some((m, _)) => {
                            m.input += r.input;
                            m.cached += r.cached;
                            m.output += r.output;
                            m.requests += r.requests;
                            m.audio_in += r.audio_in;
                            m.audio_out += r.audio_out;
                        }
                        None => rows.push((r, dims)),
                    }
                    rows
                })
                .into_iter()
                .map(|(r, dims)| {
                    let mut v = row_json(&r);
                    v["batch"] = dims["batch"].clone();
                    v["service_tier"] = dims["service_tier"].clone();
                    v
                })
                .collect()
        })
    }
}

fn row_json(r: &OaRow) -> Value {
    let mut v = json!({"object": "organization.usage.completions.result",
        "input_tokens": r.input, "output_tokens": r.output, "num_model_requests": r.requests,
        "input_cached_tokens": r.cached, "project_id": null, "user_id": null,
        "api_key_id": r.key, "model": r.model, "batch": null, "service_tier": null});
    if r.detailed {
        v["input_cache_write_tokens"] = json!(0);
        v["input_uncached_tokens"] = json!(r.input - r.cached);
    }
    if r.audio_in > 0 || r.audio_out > 0 {
        v["input_audio_tokens"] = json!(r.audio_in);
        v["output_audio_tokens"] = json!(r.audio_out);
    }
    v
}

pub const EMBEDDINGS_PATH: &str = "/v1/organization/usage/embeddings";

/// The embeddings usage report: hourly buckets grouped by key and model (a minute request
/// gets each hour's usage in its first minute).
struct Embeddings(Arc<Mutex<OaData>>);

impl Respond for Embeddings {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !authorised(req) {
            return error(401, "invalid_request_error", "Incorrect API key provided");
        }
        let q = query(req);
        let width = match first(&q, "bucket_width") {
            Some("1h") => HOUR,
            Some("1m") => 60,
            _ => return error(400, "invalid_request_error", "bucket_width"),
        };
        let data = self.0.lock().unwrap();
        buckets_page(&q, width, 24, |t| {
            if t.rem_euclid(HOUR) != 0 {
                return Vec::new();
            }
            data.embeddings
                .get(&t)
                .into_iter()
                .flatten()
                .map(|(key, model, tokens, requests)| {
                    json!({"object": "organization.usage.embeddings.result",
                        "input_tokens": tokens, "num_model_requests": requests,
                        "project_id": null, "user_id": null, "api_key_id": key, "model": model})
                })
                .collect()
        })
    }
}

struct Costs(Arc<Mutex<OaData>>);

impl Respond for Costs {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !authorised(req) {
            return error(401, "invalid_request_error", "Incorrect API key provided");
        }
        let q = query(req);
        if first(&q, "bucket_width") != Some("1d") {
            return error(
                400,
                "invalid_request_error",
                "costs only support bucket_width=1d",
            );
        }
        let data = self.0.lock().unwrap();
        buckets_page(&q, DAY, 2, |t| {
            data.costs
                .get(&(t.div_euclid(DAY) * DAY))
                .into_iter()
                .flatten()
                .map(|(key, usd)| json!({"object": "organization.costs.result",
                    "amount": {"value": usd, "currency": "usd"}, "line_item": null,
                    "project_id": "proj_1", "api_key_id": key, "quantity": null, "quantity_unit": null}))
                .collect()
        })
    }
}

impl FakeOpenAi {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let data = Arc::new(Mutex::new(OaData::default()));
        let mount = |m: Mock| m.with_priority(10);
        mount(
            Mock::given(method("GET"))
                .and(path("/v1/organization/projects"))
                .respond_with(Projects(Arc::clone(&data))),
        )
        .mount(&server)
        .await;
        mount(
            Mock::given(method("GET"))
                .and(path_regex(r"^/v1/organization/projects/[^/]+/api_keys$"))
                .respond_with(Keys(Arc::clone(&data))),
        )
        .mount(&server)
        .await;
        mount(
            Mock::given(method("GET"))
                .and(path(USAGE_PATH))
                .respond_with(Usage(Arc::clone(&data))),
        )
        .mount(&server)
        .await;
        mount(
            Mock::given(method("GET"))
                .and(path(EMBEDDINGS_PATH))
                .respond_with(Embeddings(Arc::clone(&data))),
        )
        .mount(&server)
        .await;
        crate::fake_openai_more::mount(&server, &data).await;
        crate::fake_key_admin::mount_openai(&server, &data).await;
        mount(
            Mock::given(method("GET"))
                .and(path("/v1/organization/costs"))
                .respond_with(Costs(Arc::clone(&data))),
        )
        .mount(&server)
        .await;
        Self { server, data }
    }

    pub fn add_project(&self, id: &str, archived: bool) {
        self.data
            .lock()
            .unwrap()
            .projects
            .push(json!({"id": id, "object": "organization.project",
            "name": format!("project {id}"), "created_at": 1_711_471_533,
            "archived_at": if archived { json!(1_720_000_000) } else { Value::Null },
            "status": if archived { "archived" } else { "active" }}));
    }

    pub fn add_key(
        &self,
        project: &str,
        id: &str,
        name: &str,
        access: &str,
        created_days_ago: i64,
    ) {
        let created = chrono::Utc::now().timestamp() - created_days_ago * DAY;
        self.data.lock().unwrap().keys.push((
            project.to_owned(),
            json!({
            "object": "organization.project.api_key", "id": id, "name": name,
            "redacted_value": "sk-abc...def", "created_at": created, "last_used_at": null,
            "owner_project_access": access,
            "owner": {"type": "user", "user": {"id": "user_abc", "name": "First Last",
                      "email": "user@example.com", "role": "owner", "created_at": 1_711_471_533}}}),
        ));
    }

    pub fn remove_key(&self, id: &str) {
        self.data
            .lock()
            .unwrap()
            .keys
            .retain(|(_, k)| k["id"] != id);
    }

    pub fn add_usage(&self, hour: i64, row: OaRow) {
        self.data
            .lock()
            .unwrap()
            .usage
            .entry(hour)
            .or_default()
            .push(row);
    }

    /// Embeddings usage of `key` on `model` in the hour starting at `t`.
    pub fn add_embeddings(&self, t: i64, key: &str, model: &str, tokens: i64, requests: i64) {
        self.data
            .lock()
            .unwrap()
            .embeddings
            .entry(t)
            .or_default()
            .push((key.to_owned(), model.to_owned(), tokens, requests));
    }

    pub fn add_cost(&self, day: i64, key: &str, usd: f64) {
        self.data
            .lock()
            .unwrap()
            .costs
            .entry(day)
            .or_default()
            .push((key.to_owned(), usd));
    }
}

pub fn oa_row(key: &str, model: &str, input: i64, output: i64, detailed: bool) -> OaRow {
    OaRow {
        key: key.to_owned(),
        model: model.to_owned(),
        input,
        cached: input / 4,
        output,
        requests: 1 + input / 1000,
        detailed,
        batch: false,
        tier: None,
        audio_in: 0,
        audio_out: 0,
    }
}
