//! The fake's Usage and Cost Analytics API (beta): `GET /v1/organizations/analytics/cost`
//! grouped by `api_key_id` in `1d` buckets, as flat rows (`starting_at`, `ending_at`, `group`,
//! `cost` with `amount` in cents as a decimal string), paged by `next_page`. It requires the
//! beta header and the `group_by[]` array form, and answers 404 where the test has not turned
//! it on (`FakeData::analytics`), as an API without it does.

use std::sync::{Arc, Mutex};

use chrono::DateTime;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fake_anthropic::{check_auth, error, rfc3339, FakeData};
use crate::helpers::{first, query};

pub const ANALYTICS_COST_PATH: &str = "/v1/organizations/analytics/cost";
pub const ANALYTICS_BETA: &str = "analytics-usage-cost-2026-08-24";

pub async fn mount(server: &MockServer, data: &Arc<Mutex<FakeData>>) {
    Mock::given(method("GET"))
        .and(path(ANALYTICS_COST_PATH))
        .respond_with(CostAnalytics(Arc::clone(data)))
        .with_priority(10)
        .mount(server)
        .await;
}

struct CostAnalytics(Arc<Mutex<FakeData>>);

impl Respond for CostAnalytics {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if let Some(e) = check_auth(req) {
            return e;
        }
        let mut data = self.0.lock().unwrap();
        let Some(costs) = data.analytics.clone() else {
            return error(404, "not_found_error", "Not found");
        };
        let beta = req
            .headers
            .get("anthropic-beta")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !beta.split(',').any(|b| b.trim() == ANALYTICS_BETA) {
            return error(
                400,
                "invalid_request_error",
                "this endpoint requires the anthropic-beta header analytics-usage-cost-2026-08-24",
            );
        }
        let q = query(req);
        if q.iter().any(|(k, _)| k == "group_by") {
            return error(400, "invalid_request_error", "group_by must be group_by[]");
        }
        if first(&q, "group_by[]") != Some("api_key_id")
            || first(&q, "time_bucket_width") != Some("1d")
        {
            return error(
                400,
                "invalid_request_error",
                "the fake serves api_key_id by 1d only",
            );
        }
        let at = |key: &str| {
            first(&q, key)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp())
        };
        let (Some(start), Some(end)) = (at("starting_at"), at("ending_at")) else {
            return error(
                400,
                "invalid_request_error",
                "starting_at and ending_at are required here",
            );
        };
        if end <= start || end - start > 31 * 86_400 {
            return error(
                400,
                "invalid_request_error",
                "ending_at must be after starting_at, within 31 days",
            );
        }
        let rows: Vec<Value> = costs
            .range(start..end)
            .flat_map(|(day, keys)| {
                keys.iter().map(move |(key, usd)| {
                    json!({
                        "starting_at": rfc3339(*day), "ending_at": rfc3339(day + 86_400),
                        "group": {"api_key_id": key, "model": null, "workspace_id": null},
                        "cost": {"amount": format!("{}", usd * 100.0), "list_amount": format!("{}", usd * 100.0),
                                 "currency": "USD", "requests": 1},
                    })
                })
            })
            .collect();
        let from: usize = first(&q, "page")
            .and_then(|p| p.strip_prefix("row_"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let to = (from + data.analytics_page_size.max(1)).min(rows.len());
        data.analytics_requests += 1;
        let has_more = to < rows.len();
        ResponseTemplate::new(200).set_body_json(json!({
            "data": rows.get(from..to).unwrap_or_default(),
            "has_more": has_more,
            "next_page": if has_more { Value::String(format!("row_{to}")) } else { Value::Null },
        }))
    }
}
