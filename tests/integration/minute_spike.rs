//! #15 end to end through the real binary: a leak in progress is alerted from the recent minute
//! stream by `run --once` (the hourly check, with `settle = 3h`, would see it hours later), as
//! one alert that a second run does not repeat, and `backtest` replays the minute check.

use serde_json::Value;

use crate::fake_anthropic::key_old_shape;
use crate::helpers::{row, spawn_app_with_lookback, this_hour, TestApp, HOUR};

const SONNET: &str = "claude-sonnet-4-20250514";

/// Eight days of 50,000 input tokens an hour on `apikey_leak`; 40 times that in the previous
/// and the current hour (the fake spreads each hour evenly over its minutes).
fn seed(app: &TestApp) {
    let created = crate::fake_anthropic::rfc3339(this_hour() - 30 * 86_400);
    app.fake.add_key(key_old_shape(
        "apikey_leak",
        "dev-playground",
        "active",
        &created,
        None,
    ));
    for h in 0..(8 * 24) {
        let u = if h <= 1 { 40 * 50_000 } else { 50_000 };
        app.fake.add_usage(
            this_hour() - h * HOUR,
            row(Some("apikey_leak"), SONNET, u, u / 10),
        );
    }
}

async fn spikes(app: &TestApp) -> Vec<Value> {
    let out = app.cli_ok(&["alerts", "--all", "--format", "json"]).await;
    let all: Vec<Value> = serde_json::from_str(&out).unwrap();
    all.into_iter().filter(|a| a["rule"] == "spike").collect()
}

#[tokio::test]
async fn a_leak_in_progress_is_alerted_from_the_minute_stream_once() {
    let app = spawn_app_with_lookback("8d", "").await;
    seed(&app);

    app.cli_ok(&["run", "--once"]).await;
    let spikes_now = spikes(&app).await;
    assert_eq!(spikes_now.len(), 1, "{spikes_now:#?}");
    let a = &spikes_now[0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["key_name"], "dev-playground");
    let summary = a["summary"].as_str().unwrap();
    assert!(
        summary.contains("dev-playground (anthropic-test) is burning")
            && summary.contains("spent since it began")
            && summary.contains("/day at this rate"),
        "{summary}"
    );
    let began = chrono::DateTime::parse_from_rfc3339(a["starts_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        began >= this_hour() - HOUR - 60 && began <= chrono::Utc::now().timestamp(),
        "the first elevated minute, not the hour of the hourly check: {a:#?}"
    );
    assert!(a["observed"].as_f64().unwrap() > 20.0 * a["baseline"].as_f64().unwrap());

    // Another poll and detection pass: still one alert, not a second page.
    app.cli_ok(&["run", "--once"]).await;
    assert_eq!(spikes(&app).await.len(), 1);

    let out = app
        .cli_ok(&["backtest", "--since", "1d", "--format", "json"])
        .await;
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        rows.iter()
            .any(|r| r["rule"] == "spike (minute check)" && r["key_id"] == "apikey_leak"),
        "{rows:#?}"
    );
}
