//! Detection end to end: a week of traffic with one of each problem, `run --once`, then
//! `keywatch alerts --format json` as an operator would read it.

use serde_json::Value;

use crate::fake_anthropic::key_old_shape;
use crate::helpers::{row, spawn_app_with_lookback, this_hour, TestApp, HOUR};

const SONNET: &str = "claude-sonnet-4-20250514";
const DAY: i64 = 86_400;

/// USD of a `row(…, uncached, output)` on Sonnet 4 (see helpers::row for the cache classes).
fn cost(uncached: i64, output: i64) -> f64 {
    (uncached as f64 * (3.0 + 0.3 * 3.0 + 3.75 / 2.0 + 6.0 / 4.0) + output as f64 * 15.0) / 1e6
}

/// A smooth daily curve: quiet at night, busiest mid-afternoon UTC.
fn diurnal(t: i64) -> i64 {
    let hour = (t.rem_euclid(DAY) / HOUR) as f64;
    20_000 + (60_000.0 * (-(hour - 15.0).powi(2) / 18.0).exp()) as i64
}

fn created(days_ago: i64) -> String {
    crate::fake_anthropic::rfc3339(chrono::Utc::now().timestamp() - days_ago * DAY)
}

/// Returns the daily limit that puts the budgeted key at 80 % today.
pub fn seed(app: &TestApp) -> f64 {
    let f = &app.fake;
    for (id, name, status, age) in [
        ("apikey_normal1", "web-frontend", "active", 30),
        ("apikey_normal2", "gateway-prod", "active", 30),
        ("apikey_spiky", "prod-rag-service", "active", 30),
        ("apikey_old", "legacy-batch", "active", 209),
        ("apikey_inactive", "retired-bot", "inactive", 60),
    ] {
        f.add_key(key_old_shape(id, name, status, &created(age), None));
    }
    let now = this_hour();
    let today = now.div_euclid(DAY) * DAY;
    let mut budget_spend = 0.0;
    for h in 0..(8 * 24) {
        let t = now - h * HOUR;
        let u = diurnal(t);
        for key in [
            "apikey_normal1",
            "apikey_normal2",
            "apikey_old",
            "apikey_spiky",
        ] {
            let u = if key == "apikey_spiky" && (h == 4 || h == 5) {
                40 * 80_000
            } else {
                u
            };
            f.add_usage(t, row(Some(key), SONNET, u, u / 10));
        }
        f.add_usage(t, row(Some("apikey_inactive"), SONNET, 5_000, 500));
        if t >= today {
            budget_spend += cost(u, u / 10);
        }
    }
    budget_spend / 0.8
}

async fn alerts_json(app: &TestApp) -> Vec<Value> {
    let out = app.cli_ok(&["alerts", "--format", "json"]).await;
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn find<'a>(alerts: &'a [Value], rule: &str, key: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["rule"] == rule && a["key_id"] == key)
        .collect()
}

#[tokio::test]
async fn one_alert_per_condition_and_none_for_normal_keys_and_a_second_run_adds_nothing() {
    let probe = spawn_app_with_lookback("8d", "").await;
    let limit = seed(&probe);
    drop(probe);
    let app = spawn_app_with_lookback(
        "8d",
        &format!(
            "[[budgets]]\nname = \"gateway\"\nkey_id = \"apikey_normal2\"\ndaily_usd = {limit}\n"
        ),
    )
    .await;
    seed(&app);

    app.cli_ok(&["run", "--once"]).await;
    let alerts = alerts_json(&app).await;

    let spike = find(&alerts, "spike", "apikey_spiky");
    assert_eq!(spike.len(), 1, "{alerts:#?}");
    assert_eq!(spike[0]["severity"], "critical");
    assert_eq!(spike[0]["key_name"], "prod-rag-service");
    assert_eq!(spike[0]["threshold"], 10.0);
    assert!(spike[0]["observed"].as_f64().unwrap() > 20.0 * spike[0]["baseline"].as_f64().unwrap());
    assert!(spike[0]["summary"]
        .as_str()
        .unwrap()
        .contains("prod-rag-service"));

    // 80 % crosses 50 and 75: one alert for the budget's period, at the higher threshold.
    let budget = find(&alerts, "budget", "apikey_normal2");
    assert_eq!(
        budget.len(),
        1,
        "one incident per budget period: {alerts:#?}"
    );
    assert_eq!(budget[0]["threshold"], 75.0);
    assert_eq!(budget[0]["budget"], "gateway");
    assert_eq!(budget[0]["severity"], "warning");

    let age = find(&alerts, "key_age", "apikey_old");
    assert_eq!(age.len(), 1);
    assert_eq!(age[0]["observed"], 209.0);
    assert_eq!(age[0]["unit"], "days");

    let inactive = find(&alerts, "inactive_key_usage", "apikey_inactive");
    assert_eq!(inactive.len(), 1);
    assert_eq!(inactive[0]["severity"], "critical");

    assert_eq!(alerts.len(), 4, "nothing for the normal keys: {alerts:#?}");
    for a in &alerts {
        assert_eq!(a["version"], 1);
        assert_eq!(a["status"], "firing");
        assert_eq!(a["source"], "anthropic-test");
    }

    let again = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(again.status.code(), Some(0));
    let after = alerts_json(&app).await;
    let ids = |v: &[Value]| {
        let mut ids: Vec<String> = v
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&after), ids(&alerts), "a second run adds nothing");
    let store = app.store().await;
    assert_eq!(
        store.alert_events().await.unwrap().len(),
        4,
        "no new state changes"
    );
    store.close().await;

    let table = app.cli_ok(&["alerts"]).await;
    assert!(
        table.lines().all(|l| l.chars().count() <= 80),
        "fits 80 columns:\n{table}"
    );
    assert!(table.contains("CRITICAL"), "{table}");
}

#[tokio::test]
async fn a_silenced_key_still_alerts_but_its_state_change_is_marked_silenced() {
    let app = spawn_app_with_lookback("8d", "").await;
    seed(&app);
    let out = app
        .cli(
            &[
                "silence",
                "--key",
                "apikey_spiky",
                "--for",
                "1h",
                "--reason",
                "load test",
            ],
            &[],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    app.cli(&["run", "--once"], &[]).await;

    let store = app.store().await;
    let alerts = store.alerts(false).await.unwrap();
    let spike = alerts
        .iter()
        .find(|a| a.key_id.as_deref() == Some("apikey_spiky"))
        .unwrap();
    let events = store.alert_events().await.unwrap();
    let spike_event = events.iter().find(|e| e.alert_id == spike.id).unwrap();
    assert!(spike_event.silenced);
    assert!(events
        .iter()
        .filter(|e| e.alert_id != spike.id)
        .all(|e| !e.silenced));
    store.close().await;

    let list = app.cli_ok(&["silences"]).await;
    assert!(
        list.contains("load test") && list.contains("active until"),
        "{list}"
    );
    let id = list.split_whitespace().next().unwrap();
    assert!(app.cli_ok(&["unsilence", id]).await.contains("removed"));
    assert!(app.cli_ok(&["silences"]).await.contains("removed"));
    assert_eq!(
        app.cli(&["unsilence", id], &[]).await.status.code(),
        Some(1)
    );
}

#[tokio::test]
async fn backtest_replays_the_spike_rule_over_stored_history() {
    let app = spawn_app_with_lookback("8d", "").await;
    seed(&app);
    app.cli_ok(&["run", "--once"]).await;

    let out = app
        .cli_ok(&["backtest", "--since", "3d", "--format", "json"])
        .await;

    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 1, "only the injected spike: {rows:#?}");
    assert_eq!(rows[0]["key_id"], "apikey_spiky");
    // The spike covers the buckets 5 and 4 hours ago; with settle = 3h the bucket 4 hours ago
    // is the last settled one, so the replay sees it start 5 hours ago and still open.
    let five_hours_ago = crate::fake_anthropic::rfc3339(this_hour() - 5 * HOUR);
    assert_eq!(rows[0]["fires_at"], five_hours_ago);
    assert_eq!(rows[0]["resolves_at"], Value::Null);
    let table = app.cli_ok(&["backtest", "--since", "3d"]).await;
    assert!(
        table.contains("prod-rag-service") && table.contains("1 spike alerts"),
        "{table}"
    );
}

#[tokio::test]
async fn a_source_that_keeps_failing_raises_source_unhealthy_and_resolves_on_recovery() {
    let mut app = spawn_app_with_lookback("8d", "").await;
    seed(&app);
    let good = app.env["TEST_ANTHROPIC_ADMIN_KEY"].clone();
    app.env.insert(
        "TEST_ANTHROPIC_ADMIN_KEY".into(),
        "sk-ant-admin01-REVOKED".into(),
    );
    for _ in 0..3 {
        let out = app.cli(&["run", "--once"], &[]).await;
        assert_eq!(out.status.code(), Some(75));
    }
    let alerts = alerts_json(&app).await;
    let unhealthy: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"] == "source_unhealthy")
        .collect();
    assert_eq!(unhealthy.len(), 1, "{alerts:#?}");
    let summary = unhealthy[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("never been polled successfully") && summary.contains("401"),
        "{summary}"
    );

    app.env.insert("TEST_ANTHROPIC_ADMIN_KEY".into(), good);
    app.cli_ok(&["run", "--once"]).await;
    let alerts = alerts_json(&app).await;
    assert!(
        alerts.iter().all(|a| a["rule"] != "source_unhealthy"),
        "{alerts:#?}"
    );
    let all = app.cli_ok(&["alerts", "--all", "--format", "json"]).await;
    let all: Vec<Value> = serde_json::from_str(&all).unwrap();
    let resolved = all
        .iter()
        .find(|a| a["rule"] == "source_unhealthy")
        .unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["ends_at"].is_string());
}

#[tokio::test]
async fn alerts_are_filtered_by_rule_key_source_and_severity_and_silences_list_as_json() {
    let app = spawn_app_with_lookback("8d", "").await;
    seed(&app);
    app.cli_ok(&["run", "--once"]).await;
    let list = |args: &[&str]| {
        let mut all = vec!["alerts", "--format", "json"];
        all.extend(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let get = |args: Vec<String>| {
        let app = &app;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            serde_json::from_str::<Vec<Value>>(&app.cli_ok(&args).await).unwrap()
        }
    };
    let everything = get(list(&[])).await;
    let spikes = get(list(&["--rule", "spike"])).await;
    assert!(!spikes.is_empty() && spikes.iter().all(|a| a["rule"] == "spike"));
    let critical = get(list(&["--severity", "critical"])).await;
    assert!(
        critical.iter().all(|a| a["severity"] == "critical"),
        "{critical:#?}"
    );
    assert!(critical.len() < everything.len(), "key_age is a warning");
    let old = get(list(&["--key", "apikey_old", "--source", "anthropic-test"])).await;
    assert!(!old.is_empty() && old.iter().all(|a| a["key_id"] == "apikey_old"));
    assert!(get(list(&["--source", "elsewhere"])).await.is_empty());
    let out = app.cli(&["alerts", "--severity", "loud"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "a bad argument is exit 1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("one of info, warning, critical"));

    app.cli_ok(&[
        "silence",
        "--key",
        "apikey_old",
        "--for",
        "2h",
        "--reason",
        "known, rotating",
    ])
    .await;
    let silences: Vec<Value> =
        serde_json::from_str(&app.cli_ok(&["silences", "--format", "json"]).await).unwrap();
    assert_eq!(silences.len(), 1);
    assert_eq!(silences[0]["key_id"], "apikey_old");
    assert_eq!(silences[0]["state"], "active");
    assert_eq!(silences[0]["reason"], "known, rotating");
}
