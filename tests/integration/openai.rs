//! OpenAI as a second provider, beside Anthropic in one daemon.

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_anthropic::key_old_shape;
use crate::fake_openai::{oa_row, FakeOpenAi, USAGE_PATH};
use crate::helpers::{row, spawn_app_with_lookback, this_hour, TestApp, HOUR};

const MINI: &str = "gpt-4o-mini-2024-07-18";
const DAY: i64 = 86_400;

async fn spawn_both(extra: &str) -> (TestApp, FakeOpenAi) {
    let oa = FakeOpenAi::start().await;
    let app = spawn_app_with_lookback(
        "8d",
        &format!(
            "[[sources]]\nname = \"openai-test\"\nprovider = \"openai\"\n\
             admin_key_env = \"TEST_OPENAI_ADMIN_KEY\"\nbase_url = \"{}\"\n{extra}",
            oa.server.uri()
        ),
    )
    .await;
    (app, oa)
}

fn diurnal(t: i64) -> i64 {
    let hour = (t.rem_euclid(DAY) / HOUR) as f64;
    20_000 + (60_000.0 * (-(hour - 15.0).powi(2) / 18.0).exp()) as i64
}

/// USD of an `oa_row` on gpt-4o-mini: a quarter of the input is cached.
fn mini_cost(input: i64, output: i64) -> f64 {
    let cached = input / 4;
    ((input - cached) as f64 * 0.15 + cached as f64 * 0.075 + output as f64 * 0.60) / 1e6
}

/// Two projects (one archived), three keys, a week of hourly traffic on two keys with the
/// spiky one at 40x in the judged hour, daily billed costs, and a little Anthropic traffic.
fn seed(app: &TestApp, oa: &FakeOpenAi) {
    oa.add_project("proj_1", false);
    oa.add_project("proj_old", true);
    oa.add_key("proj_1", "key_normal", "web", "active", 30);
    oa.add_key("proj_1", "key_spiky", "rag-worker", "active", 30);
    oa.add_key("proj_1", "key_disabled", "old-ci", "inactive", 30);
    oa.add_key("proj_old", "key_archived", "legacy", "active", 100);
    let now = this_hour();
    for h in 0..(8 * 24) {
        let t = now - h * HOUR;
        let u = diurnal(t);
        oa.add_usage(t, oa_row("key_normal", MINI, u, u / 10, h % 2 == 0));
        let s = if h == 4 { 40 * 80_000 } else { u };
        oa.add_usage(t, oa_row("key_spiky", MINI, s, s / 10, h % 2 == 1));
    }
    for d in 1..=8 {
        let day = now.div_euclid(DAY) * DAY - d * DAY;
        oa.add_cost(day, "key_normal", 1.23);
        oa.add_cost(day, "key_spiky", 2.34);
    }
    app.fake.add_key(key_old_shape(
        "apikey_a",
        "claude-app",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    app.fake.add_usage(
        now - 5 * HOUR,
        row(Some("apikey_a"), "claude-sonnet-4-20250514", 1_000, 100),
    );
}

async fn alerts(app: &TestApp) -> Vec<Value> {
    serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap()
}

/// The open alerts of one rule.
async fn alerts_of(app: &TestApp, rule: &str) -> Vec<Value> {
    alerts(app)
        .await
        .into_iter()
        .filter(|a| a["rule"] == rule)
        .collect()
}

#[tokio::test]
async fn both_providers_are_stored_and_an_openai_key_at_40x_fires_one_spike() {
    let (app, oa) = spawn_both("").await;
    seed(&app, &oa);

    app.cli_ok(&["run", "--once"]).await;

    let alerts = alerts(&app).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let spike = &alerts[0];
    assert_eq!(
        (
            spike["rule"].as_str(),
            spike["source"].as_str(),
            spike["key_id"].as_str()
        ),
        (Some("spike"), Some("openai-test"), Some("key_spiky"))
    );
    assert_eq!(spike["key_name"], "rag-worker");

    let stored = app.stored_rows().await;
    assert!(
        stored.iter().any(|r| r.key_id == "apikey_a"),
        "the Anthropic source is stored too"
    );
    let judged = stored
        .iter()
        .find(|r| r.key_id == "key_spiky" && r.bucket_start == this_hour() - 4 * HOUR)
        .unwrap();
    let input = 40 * 80_000;
    assert_eq!(
        (judged.tokens.uncached, judged.tokens.cache_read),
        (input - input / 4, input / 4)
    );
    assert!((judged.cost_usd.unwrap() - mini_cost(input, input / 10)).abs() < 1e-9);

    let csv = app
        .cli_ok(&[
            "history",
            "--key",
            "key_spiky",
            "--source",
            "openai-test",
            "--since",
            "3d",
            "--format",
            "csv",
        ])
        .await;
    let yesterday_noon =
        crate::fake_anthropic::rfc3339(this_hour().div_euclid(DAY) * DAY - DAY + 12 * HOUR);
    let line = csv
        .lines()
        .find(|l| l.contains(&yesterday_noon))
        .expect("a bucket from yesterday");
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(fields.len(), 15, "{line}");
    assert!(
        fields[11].parse::<i64>().unwrap() > 0,
        "request counts: {line}"
    );
    assert_eq!(
        fields[14], "2.340000",
        "the billed cost of that day: {line}"
    );

    let table = app
        .cli_ok(&["history", "--key", "key_spiky", "--since", "3d"])
        .await;
    assert!(
        table.contains("billed USD") && table.contains("2.3400"),
        "{table}"
    );
}

#[tokio::test]
async fn the_inventory_covers_every_page_archived_projects_and_inactive_keys() {
    let (app, oa) = spawn_both("").await;
    seed(&app, &oa);

    app.cli_ok(&["run", "--once"]).await;

    let store = app.store().await;
    let keys = store.all_keys().await.unwrap();
    store.close().await;
    let status = |id: &str| {
        keys.iter()
            .find(|k| k.key_id == id)
            .map(|k| (k.status.clone(), k.workspace_id.clone()))
    };
    assert_eq!(
        status("key_normal"),
        Some(("active".into(), Some("proj_1".into())))
    );
    assert_eq!(
        status("key_disabled"),
        Some(("inactive".into(), Some("proj_1".into())))
    );
    assert_eq!(
        status("key_archived"),
        Some(("archived".into(), Some("proj_old".into())))
    );
}

#[tokio::test]
async fn a_key_that_vanishes_from_the_listing_and_is_still_used_fires_inactive_key_usage() {
    let (app, oa) = spawn_both("").await;
    seed(&app, &oa);
    app.cli_ok(&["run", "--once"]).await;

    oa.remove_key("key_normal");
    app.cli_ok(&["run", "--once"]).await;
    let store = app.store().await;
    let gone = store.keys_by_id("key_normal").await.unwrap().remove(0);
    assert_eq!(gone.status, "deleted");
    assert!(gone.status_changed_at.is_some());
    assert!(
        alerts(&app)
            .await
            .iter()
            .all(|a| a["rule"] != "inactive_key_usage"),
        "usage from before the key vanished does not count"
    );
    // Six hours later, as the clock would have it, the key is still being used.
    crate::backend::on_pool!(store, |p| sqlx::query("UPDATE api_keys SET status_changed_at = status_changed_at - 6 * 3600 WHERE key_id = 'key_normal'")
        .execute(p)
        .await.map(|r| r.rows_affected()))
        .unwrap();
    store.close().await;

    app.cli_ok(&["run", "--once"]).await;

    let fired = alerts_of(&app, "inactive_key_usage").await;
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!(fired[0]["key_id"], "key_normal");
    assert!(fired[0]["summary"].as_str().unwrap().contains("deleted"));
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_and_the_poll_completes() {
    let (app, oa) = spawn_both("").await;
    seed(&app, &oa);
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1").set_body_json(
            serde_json::json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
        ))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&oa.server)
        .await;

    let started = std::time::Instant::now();
    app.cli_ok(&["run", "--once"]).await;

    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "waited as Retry-After asked"
    );
    assert!(app
        .stored_rows()
        .await
        .iter()
        .any(|r| r.key_id == "key_spiky"));
}

#[tokio::test]
async fn an_organisation_budget_adds_up_both_sources_and_a_source_budget_only_its_own() {
    // Today's spend, as the fakes will serve it, sets the limits: the organisation budget sees
    // both sources at 60 %, the Anthropic-only budget its share.
    let (probe, probe_oa) = spawn_both("").await;
    seed(&probe, &probe_oa);
    let today = this_hour().div_euclid(DAY) * DAY;
    let openai_today: f64 = (0..(8 * 24))
        .map(|h| this_hour() - h * HOUR)
        .filter(|t| *t >= today)
        .map(|t| {
            let u = diurnal(t);
            let s = if t == this_hour() - 4 * HOUR {
                40 * 80_000
            } else {
                u
            };
            mini_cost(u, u / 10) + mini_cost(s, s / 10)
        })
        .sum();
    drop((probe, probe_oa));
    let limit = openai_today / 0.6;
    let (app, oa) = spawn_both(&format!(
        "[[budgets]]\nname = \"org\"\ndaily_usd = {limit}\nthresholds = [50, 100]\n\
         [[budgets]]\nname = \"claude-only\"\nsource = \"anthropic-test\"\ndaily_usd = {limit}\n"
    ))
    .await;
    seed(&app, &oa);

    app.cli_ok(&["run", "--once"]).await;

    let budgets = alerts_of(&app, "budget").await;
    assert_eq!(budgets.len(), 1, "{budgets:#?}");
    assert_eq!(budgets[0]["budget"], "org");
    assert_eq!(budgets[0]["threshold"], 50.0);
}

#[tokio::test]
async fn a_monthly_budget_counts_billed_cost_for_closed_days_and_the_estimate_for_today() {
    let now = this_hour();
    let today = now.div_euclid(DAY) * DAY;
    let month_start = {
        use chrono::Datelike;
        let d = chrono::DateTime::from_timestamp(today, 0)
            .unwrap()
            .date_naive()
            .with_day(1)
            .unwrap();
        d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
    };
    // seed() bills $1.23 + $2.34 for each of the 8 days before today.
    let billed: f64 = (1..=8)
        .map(|d| today - d * DAY)
        .filter(|d| *d >= month_start)
        .count() as f64
        * 3.57;
    let estimated_today: f64 = (0..(8 * 24))
        .map(|h| now - h * HOUR)
        .filter(|t| *t >= today)
        .map(|t| {
            let u = diurnal(t);
            let s = if t == now - 4 * HOUR { 40 * 80_000 } else { u };
            mini_cost(u, u / 10) + mini_cost(s, s / 10)
        })
        .sum();
    let spent = billed + estimated_today;
    let (app, oa) = spawn_both(&format!(
        "[[budgets]]\nname = \"openai-month\"\nsource = \"openai-test\"\nmonthly_usd = {}\nthresholds = [50]\n",
        spent / 0.6
    ))
    .await;
    seed(&app, &oa);

    app.cli_ok(&["run", "--once"]).await;

    let budgets = alerts_of(&app, "budget").await;
    assert_eq!(budgets.len(), 1, "{budgets:#?}");
    let observed = budgets[0]["observed"].as_f64().unwrap();
    assert!(
        (observed - spent).abs() < 1e-6,
        "billed {billed} + estimated {estimated_today} != {observed}"
    );
}
