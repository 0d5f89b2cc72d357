//! The fakes' key-changing endpoints (#18): Anthropic `POST /v1/organizations/api_keys/{id}`
//! with `{"status": "active"|"inactive"|"archived"}` answers the updated key object; OpenAI
//! `DELETE /v1/organization/projects/{project}/api_keys/{id}` removes the key and answers the
//! deletion receipt. Either can refuse (403 `permission_error`), as an admin key without write
//! permission is refused. Every call is counted.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fake_anthropic::{check_auth, error, FakeData};
use crate::fake_openai::OaData;

pub async fn mount_anthropic(server: &MockServer, data: &Arc<Mutex<FakeData>>) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1/organizations/api_keys/[^/]+$"))
        .respond_with(UpdateKey(Arc::clone(data)))
        .with_priority(10)
        .mount(server)
        .await;
}

pub async fn mount_openai(server: &MockServer, data: &Arc<Mutex<OaData>>) {
    Mock::given(method("DELETE"))
        .and(path_regex(
            r"^/v1/organization/projects/[^/]+/api_keys/[^/]+$",
        ))
        .respond_with(DeleteKey(Arc::clone(data)))
        .with_priority(10)
        .mount(server)
        .await;
}

struct UpdateKey(Arc<Mutex<FakeData>>);

impl Respond for UpdateKey {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(e) = check_auth(req) {
            return e;
        }
        let mut data = self.0.lock().unwrap();
        data.key_changes += 1;
        if data.refuse_key_changes {
            return error(
                403,
                "permission_error",
                "This API key does not have permission to update API keys",
            );
        }
        let id = req
            .url
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(_) => return error(400, "invalid_request_error", "body must be JSON"),
        };
        let status = body["status"].as_str().unwrap_or_default().to_owned();
        if !["active", "inactive", "archived"].contains(&status.as_str()) {
            return error(
                400,
                "invalid_request_error",
                "status: active, inactive or archived",
            );
        }
        match data.keys.iter_mut().find(|k| k["id"] == id.as_str()) {
            Some(k) => {
                k["status"] = json!(status);
                ResponseTemplate::new(200).set_body_json(k.clone())
            }
            None => error(404, "not_found_error", "API key not found"),
        }
    }
}

struct DeleteKey(Arc<Mutex<OaData>>);

impl Respond for DeleteKey {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !crate::fake_openai::authorised(req) {
            return crate::fake_openai::error(
                401,
                "invalid_request_error",
                "Incorrect API key provided",
            );
        }
        let mut data = self.0.lock().unwrap();
        data.key_changes += 1;
        if data.refuse_key_changes {
            return crate::fake_openai::error(
                403,
                "invalid_request_error",
                "insufficient permissions",
            );
        }
        let parts: Vec<&str> = req.url.path().split('/').collect();
        let (project, id) = (parts[4].to_owned(), parts[6].to_owned());
        let before = data.keys.len();
        data.keys
            .retain(|(p, k)| !(p == &project && k["id"] == id.as_str()));
        if data.keys.len() == before {
            return crate::fake_openai::error(404, "invalid_request_error", "No such API key");
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "organization.project.api_key.deleted", "id": id, "deleted": true}))
    }
}
