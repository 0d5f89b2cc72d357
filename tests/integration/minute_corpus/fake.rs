//! A fake Anthropic Admin API over a [`Corpus`], on a simulated clock the replay sets. It serves
//! the usage report at `1m`, `1h` and `1d` (limits as documented: defaults 60/24/7, maxima
//! 1440/168/31), grouped by key and model, with only what the provider has published by the
//! simulated now; the key listing; and an empty cost report. Shapes as in `docs/providers.md`
//! and `fake_anthropic.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::DateTime;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::corpus::{Corpus, DAY, START};
use crate::fake_anthropic::{
    check_auth, error, key_new_shape, rfc3339, row_json, FakeRow, Tokens, COST_PATH, KEYS_PATH,
    USAGE_PATH,
};
use crate::helpers::{first, query};

/// The one model all corpus traffic uses: $3/M input, $15/M output (`src/prices.rs`).
pub const MODEL: &str = "claude-sonnet-4-5";
const INPUT_USD_PER_TOKEN: f64 = 3.0 / 1e6;
const OUTPUT_USD_PER_TOKEN: f64 = 15.0 / 1e6;

/// Token counts costing `usd` at [`MODEL`]'s price: 40 % of the money on input, 60 % on output.
pub fn tokens_for(usd: f64) -> Tokens {
    Tokens {
        uncached: (usd * 0.4 / INPUT_USD_PER_TOKEN).round() as i64,
        output: (usd * 0.6 / OUTPUT_USD_PER_TOKEN).round() as i64,
        ..Tokens::default()
    }
}

struct Shared {
    corpus: Arc<Corpus>,
    clock: Arc<Mutex<i64>>,
    /// Usage requests by bucket width, and other requests by path.
    requests: Mutex<BTreeMap<String, usize>>,
}

pub struct MinuteFake {
    pub server: MockServer,
    /// The simulated now, Unix seconds.
    pub clock: Arc<Mutex<i64>>,
    shared: Arc<Shared>,
}

impl MinuteFake {
    pub async fn start(corpus: Arc<Corpus>) -> Self {
        // Tens of thousands of requests per replay: do not keep them.
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        let clock = Arc::new(Mutex::new(START));
        let shared = Arc::new(Shared {
            corpus,
            clock: Arc::clone(&clock),
            requests: Mutex::new(BTreeMap::new()),
        });
        for (p, kind) in [
            (KEYS_PATH, Kind::Keys),
            (USAGE_PATH, Kind::Usage),
            (COST_PATH, Kind::Costs),
        ] {
            Mock::given(method("GET"))
                .and(path(p))
                .respond_with(Responder(Arc::clone(&shared), kind))
                .mount(&server)
                .await;
        }
        // Containment (#18): a key update is accepted and answered with the key.
        Mock::given(method("POST"))
            .and(wiremock::matchers::path_regex(
                r"^/v1/organizations/api_keys/[^/]+$",
            ))
            .respond_with(UpdateKey(Arc::clone(&shared)))
            .mount(&server)
            .await;
        Self {
            server,
            clock,
            shared,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn set_now(&self, now: i64) {
        *self.clock.lock().unwrap() = now;
    }

    /// Requests answered so far: `usage 1m`, `usage 1h`, `keys`, `costs`.
    pub fn requests(&self) -> BTreeMap<String, usize> {
        self.shared.requests.lock().unwrap().clone()
    }
}

struct UpdateKey(Arc<Shared>);

impl Respond for UpdateKey {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(e) = check_auth(req) {
            return e;
        }
        *self
            .0
            .requests
            .lock()
            .unwrap()
            .entry("key update".to_owned())
            .or_default() += 1;
        let id = req.url.path().rsplit('/').next().unwrap_or_default();
        let status = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|b| b["status"].as_str().map(str::to_owned))
            .unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(json!({"id": id, "type": "api_key",
            "name": id, "status": status, "created_at": rfc3339(START), "workspace_id": null}))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Keys,
    Usage,
    Costs,
}

struct Responder(Arc<Shared>, Kind);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(e) = check_auth(req) {
            return e;
        }
        let q = query(req);
        let now = *self.0.clock.lock().unwrap();
        let counter = match self.1 {
            Kind::Keys => "keys".to_owned(),
            Kind::Costs => "costs".to_owned(),
            Kind::Usage => format!("usage {}", first(&q, "bucket_width").unwrap_or("?")),
        };
        *self.0.requests.lock().unwrap().entry(counter).or_default() += 1;
        match self.1 {
            Kind::Keys => keys(&self.0.corpus, &q),
            Kind::Usage => usage(&self.0.corpus, &q, now),
            Kind::Costs => costs(&q, now),
        }
    }
}

fn bad(message: &str) -> ResponseTemplate {
    error(400, "invalid_request_error", message)
}

fn time_param(q: &[(String, String)], name: &str) -> Option<i64> {
    first(q, name)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp())
}

/// Every corpus key in one listing (paged by `limit` and `after_id`), created 60 days before
/// the corpus starts.
fn keys(corpus: &Corpus, q: &[(String, String)]) -> ResponseTemplate {
    let limit: usize = first(q, "limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return bad("limit must be between 1 and 1000");
    }
    let start = match first(q, "after_id") {
        Some(after) => match corpus.keys.iter().position(|k| k.id == after) {
            Some(i) => i + 1,
            None => return bad("unknown after_id"),
        },
        None => 0,
    };
    let end = (start + limit).min(corpus.keys.len());
    let created = rfc3339(START - 60 * DAY);
    let page: Vec<Value> = corpus.keys[start..end]
        .iter()
        .map(|k| key_new_shape(&k.id, &k.name, "active", &created, None))
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({
        "data": page,
        "has_more": end < corpus.keys.len(),
        "first_id": page.first().map(|k| k["id"].clone()),
        "last_id": page.last().map(|k| k["id"].clone()),
    }))
}

/// The usage report from `starting_at` (or the page token) to `ending_at` or the bucket holding
/// the simulated now, whichever is first.
fn usage(corpus: &Corpus, q: &[(String, String)], now: i64) -> ResponseTemplate {
    if q.iter().any(|(k, _)| k == "group_by") {
        return bad("group_by must be sent as group_by[]");
    }
    let groups: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "group_by[]")
        .map(|(_, v)| v.as_str())
        .collect();
    if !(groups.contains(&"api_key_id") && groups.contains(&"model")) {
        return bad("this fake expects group_by[]=api_key_id and model");
    }
    let (width, default_limit, max_limit) = match first(q, "bucket_width") {
        Some("1m") => (60, 60, 1440),
        Some("1h") => (3_600, 24, 168),
        Some("1d") => (DAY, 7, 31),
        _ => return bad("bucket_width must be 1m, 1h or 1d"),
    };
    let limit: i64 = match first(q, "limit").map(str::parse) {
        None => default_limit,
        Some(Ok(l)) if (1..=max_limit).contains(&l) => l,
        Some(_) => return bad(&format!("limit must be between 1 and {max_limit}")),
    };
    let Some(starting_at) = time_param(q, "starting_at") else {
        return bad("starting_at is required");
    };
    let mut end = now.div_euclid(width) * width + width;
    if let Some(ending_at) = time_param(q, "ending_at") {
        if ending_at <= starting_at {
            return bad("ending_at must be after starting_at");
        }
        end = end.min((ending_at + width - 1).div_euclid(width) * width);
    }
    // The page token is opaque to clients: here, the next bucket start.
    let from = match first(q, "page") {
        Some(p) => match p.strip_prefix("page_").and_then(|t| t.parse::<i64>().ok()) {
            Some(t) => t,
            None => return bad("bad page token"),
        },
        None => starting_at.div_euclid(width) * width,
    };
    let mut buckets = Vec::new();
    let mut t = from;
    while t < end && (buckets.len() as i64) < limit {
        let rows: Vec<Value> = corpus
            .keys
            .iter()
            .filter_map(|k| {
                let tokens = tokens_for(k.visible_between(t, t + width, now));
                (tokens != Tokens::default()).then(|| {
                    row_json(&FakeRow {
                        key: Some(k.id.clone()),
                        model: MODEL.to_owned(),
                        tokens,
                        ..FakeRow::default()
                    })
                })
            })
            .collect();
        buckets.push(
            json!({"starting_at": rfc3339(t), "ending_at": rfc3339(t + width), "results": rows}),
        );
        t += width;
    }
    let has_more = t < end;
    ResponseTemplate::new(200).set_body_json(json!({
        "data": buckets,
        "has_more": has_more,
        "next_page": if has_more { Value::String(format!("page_{t}")) } else { Value::Null },
    }))
}

/// Whole UTC days up to the simulated today, with no cost lines (the replay does not judge them).
fn costs(q: &[(String, String)], now: i64) -> ResponseTemplate {
    if first(q, "bucket_width") != Some("1d") {
        return bad("cost_report only supports bucket_width=1d");
    }
    let Some(start) = time_param(q, "starting_at") else {
        return bad("starting_at is required");
    };
    let today = now.div_euclid(DAY) * DAY;
    let end = time_param(q, "ending_at").unwrap_or(today).min(today);
    if start % DAY != 0 || end <= start {
        return bad("ending date must be after starting date");
    }
    let from = first(q, "page")
        .and_then(|p| p.strip_prefix("page_"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(start);
    let mut buckets = Vec::new();
    let mut t = from;
    while t < end && buckets.len() < 31 {
        buckets
            .push(json!({"starting_at": rfc3339(t), "ending_at": rfc3339(t + DAY), "results": []}));
        t += DAY;
    }
    let has_more = t < end;
    ResponseTemplate::new(200).set_body_json(json!({"data": buckets, "has_more": has_more,
        "next_page": if has_more { Value::String(format!("page_{t}")) } else { Value::Null }}))
}
