//! The fake's usage endpoints besides completions and embeddings: moderations, images, audio
//! speeches and transcriptions, file and web search calls. Each serves hourly buckets of the
//! result objects a test adds (`OaData::more`), in the documented envelope, and checks the
//! grouping each endpoint allows: `api_key_id` everywhere, `size` only on images; a grouping
//! the endpoint does not have is a 400, as the API answers.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fake_openai::{authorised, buckets_page, error, FakeOpenAi, OaData};
use crate::helpers::{first, query};

const HOUR: i64 = 3_600;

/// (path, result `object`, the groupings it allows).
pub const ENDPOINTS: [(&str, &str, &[&str]); 6] = [
    (
        "/v1/organization/usage/moderations",
        "organization.usage.moderations.result",
        &["project_id", "user_id", "api_key_id", "model"],
    ),
    (
        "/v1/organization/usage/images",
        "organization.usage.images.result",
        &[
            "project_id",
            "user_id",
            "api_key_id",
            "model",
            "size",
            "source",
        ],
    ),
    (
        "/v1/organization/usage/audio_speeches",
        "organization.usage.audio_speeches.result",
        &["project_id", "user_id", "api_key_id", "model"],
    ),
    (
        "/v1/organization/usage/audio_transcriptions",
        "organization.usage.audio_transcriptions.result",
        &["project_id", "user_id", "api_key_id", "model"],
    ),
    (
        "/v1/organization/usage/file_search_calls",
        "organization.usage.file_searches.result",
        &["project_id", "user_id", "api_key_id", "vector_store_id"],
    ),
    (
        "/v1/organization/usage/web_search_calls",
        "organization.usage.web_searches.result",
        &[
            "project_id",
            "user_id",
            "api_key_id",
            "model",
            "context_level",
        ],
    ),
];

pub async fn mount(server: &MockServer, data: &Arc<Mutex<OaData>>) {
    for (p, object, groups) in ENDPOINTS {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(More {
                data: Arc::clone(data),
                path: p,
                object,
                groups,
            })
            .with_priority(10)
            .mount(server)
            .await;
    }
}

struct More {
    data: Arc<Mutex<OaData>>,
    path: &'static str,
    object: &'static str,
    groups: &'static [&'static str],
}

impl Respond for More {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !authorised(req) {
            return error(401, "invalid_request_error", "Incorrect API key provided");
        }
        let q = query(req);
        if let Some((_, g)) = q
            .iter()
            .find(|(k, v)| k.starts_with("group_by") && !self.groups.contains(&v.as_str()))
        {
            return error(
                400,
                "invalid_request_error",
                &format!("Invalid group_by: {g}"),
            );
        }
        if first(&q, "bucket_width") != Some("1h") {
            return error(
                400,
                "invalid_request_error",
                "the fake serves bucket_width=1h",
            );
        }
        let data = self.data.lock().unwrap();
        buckets_page(&q, HOUR, 24, |t| {
            data.more
                .get(&(self.path.to_owned(), t))
                .into_iter()
                .flatten()
                .map(|r| {
                    let mut r = r.clone();
                    r["object"] = json!(self.object);
                    r
                })
                .collect()
        })
    }
}

impl FakeOpenAi {
    /// A result of the usage endpoint at `path` in the hour starting at `t` (its `object` is
    /// set to the endpoint's).
    pub fn add_more(&self, path: &str, t: i64, result: Value) {
        self.data
            .lock()
            .unwrap()
            .more
            .entry((path.to_owned(), t))
            .or_default()
            .push(result);
    }
}
