//! #13.8: on billed days a key without a billed row of its own counts its estimate.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::DAY;
use crate::daemon::{free_port, get, start_daemon_logging};
use crate::fake_openai::{oa_row, FakeOpenAi};
use crate::helpers::{first, query, spawn_app_with_lookback, this_hour, HOUR};

/// OpenAI's cost report for a few closed days: one key billed on its own, the other key's cost
/// in a row without `api_key_id` (unattributed), as the documented shape allows.
struct CostReport {
    days: Vec<i64>,
    billed_usd: f64,
    unattributed_usd: f64,
}

impl Respond for CostReport {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q = query(req);
        let start: i64 = first(&q, "start_time").unwrap().parse().unwrap();
        let data: Vec<Value> = self
            .days
            .iter()
            .filter(|d| **d >= start)
            .map(|d| {
                json!({"object": "bucket", "start_time": d, "end_time": d + DAY, "results": [
                    {"object": "organization.costs.result", "amount": {"value": self.billed_usd, "currency": "usd"},
                     "line_item": null, "project_id": "proj_1", "api_key_id": "key_billed",
                     "quantity": null, "quantity_unit": null},
                    {"object": "organization.costs.result", "amount": {"value": self.unattributed_usd, "currency": "usd"},
                     "line_item": null, "project_id": "proj_1", "api_key_id": null,
                     "quantity": null, "quantity_unit": null}]})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(
            json!({"object": "page", "data": data, "has_more": false, "next_page": null}),
        )
    }
}

const MINI: &str = "gpt-4o-mini-2024-07-18";

/// USD of `oa_row(…, input, output)` on gpt-4o-mini: a quarter of the input is cached.
fn mini_cost(input: i64, output: i64) -> f64 {
    let cached = input / 4;
    ((input - cached) as f64 * 0.15 + cached as f64 * 0.075 + output as f64 * 0.60) / 1e6
}

#[tokio::test]
async fn a_key_without_its_own_billed_row_counts_its_estimate_not_zero() {
    let today = this_hour().div_euclid(DAY) * DAY;
    let days: Vec<i64> = (1..=3).map(|d| today - d * DAY).collect();
    // key_unbilled: 100k input tokens an hour on the billed days.
    let per_day = 24.0 * mini_cost(100_000, 10_000);
    let oa = FakeOpenAi::start().await;
    Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/v1/organization/costs"))
        .respond_with(CostReport {
            days: days.clone(),
            billed_usd: 1.0,
            unattributed_usd: per_day + 0.25,
        })
        .with_priority(1)
        .mount(&oa.server)
        .await;
    let port = free_port();
    let month_start = {
        use chrono::Datelike;
        DateTime::<Utc>::from_timestamp(today, 0)
            .unwrap()
            .date_naive()
            .with_day(1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let in_month = days.iter().filter(|d| **d >= month_start).count() as f64;
    // A key budget at 60 % of the unbilled key's month-to-date estimate.
    let limit = (per_day * in_month).max(0.01) / 0.6;
    let app = spawn_app_with_lookback(
        "4d",
        &format!(
            "[[sources]]\nname = \"openai-test\"\nprovider = \"openai\"\n\
             admin_key_env = \"TEST_OPENAI_ADMIN_KEY\"\nbase_url = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[budgets]]\nname = \"unbilled-key\"\nkey_id = \"key_unbilled\"\nmonthly_usd = {limit}\nthresholds = [50]\n",
            oa.server.uri()
        ),
    )
    .await;
    oa.add_project("proj_1", false);
    oa.add_key("proj_1", "key_billed", "web", "active", 30);
    oa.add_key("proj_1", "key_unbilled", "batch", "active", 30);
    for d in &days {
        for h in 0..24 {
            oa.add_usage(
                d + h * HOUR,
                oa_row("key_unbilled", MINI, 100_000, 10_000, true),
            );
            oa.add_usage(
                d + h * HOUR,
                oa_row("key_billed", MINI, 50_000, 5_000, true),
            );
        }
    }
    app.cli_ok(&["run", "--once"]).await;

    // The store's answer for the three billed days, whatever today's date.
    let store = app.store().await;
    let spend = store
        .spend_by_key(HOUR, chrono_tz::Tz::UTC, days[2], today, today)
        .await
        .unwrap();
    store.close().await;
    let of = |key: &str| {
        spend
            .iter()
            .filter(|(s, k, _)| s == "openai-test" && k == key)
            .map(|(_, _, usd)| *usd)
            .sum::<f64>()
    };
    assert!((of("key_billed") - 3.0).abs() < 1e-9, "{spend:?}");
    assert!(
        (of("key_unbilled") - 3.0 * per_day).abs() < 1e-6,
        "the estimate stands where the bill has no row for the key: {spend:?}"
    );
    assert!(
        (of("unattributed") - 0.75).abs() < 1e-6,
        "the unattributed row less what went back to its key: {spend:?}"
    );

    // What the user sees: the key budget and /api/v1/keys, when a billed day is in this month.
    if in_month == 0.0 {
        eprintln!("today is the 1st (UTC): no billed day in this month to check");
        return;
    }
    let budgets: Vec<Value> =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let budgets: Vec<&Value> = budgets.iter().filter(|a| a["rule"] == "budget").collect();
    assert_eq!(budgets.len(), 1, "{budgets:#?}");
    assert!((budgets[0]["observed"].as_f64().unwrap() - per_day * in_month).abs() < 1e-6);
    let log = app.dir.path().join("daemon.log");
    let _daemon = start_daemon_logging(&app, &log, None);
    let (status, body) = get(&format!("http://127.0.0.1:{port}/api/v1/keys")).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<Value> = serde_json::from_str(&body).unwrap();
    let unbilled = keys.iter().find(|k| k["key_id"] == "key_unbilled").unwrap();
    assert!(
        unbilled["spend_mtd_usd"].as_f64().unwrap() >= per_day * in_month - 1e-6,
        "{unbilled}"
    );
}
