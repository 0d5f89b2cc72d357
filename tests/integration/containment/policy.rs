//! By policy: a leaking `dev-*` key under `action = "deactivate"` is deactivated in the cycle
//! that fires its spike, and the notification says so; a leaking `prod-*` key beside it is
//! untouched; a dry-run policy calls nothing and records what it would have done; a refused
//! call is tried a few times, spaced, then reported as failed.

use serde_json::Value;

use crate::fake_anthropic::key_old_shape;
use crate::helpers::{row, spawn_app_with_lookback, this_hour, TestApp, HOUR};
use crate::notify::webhook;
use crate::receivers::WebhookReceiver;

const SONNET: &str = "claude-sonnet-4-20250514";

/// Two keys with a week of steady traffic, both leaking (40x) in the judged hour.
fn seed(app: &TestApp) {
    let f = &app.fake;
    f.add_key(key_old_shape(
        "apikey_dev",
        "dev-playground",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    f.add_key(key_old_shape(
        "apikey_prod",
        "prod-gateway",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    let now = this_hour();
    for h in 0..(8 * 24) {
        for key in ["apikey_dev", "apikey_prod"] {
            let u = if h == 4 || h == 5 {
                40 * 50_000
            } else {
                50_000
            };
            f.add_usage(now - h * HOUR, row(Some(key), SONNET, u, u / 10));
        }
    }
}

async fn app_with(policy: &str, hook: &WebhookReceiver) -> TestApp {
    let app = spawn_app_with_lookback(
        "8d",
        &format!(
            "{}\n[[containment]]\nname = \"dev-keys\"\nkey_name = \"dev-*\"\nrules = [\"spike\"]\n{policy}\n",
            webhook("hook", &hook.url(), "json", "info")
        ),
    )
    .await;
    seed(&app);
    app
}

async fn alerts(app: &TestApp) -> Vec<Value> {
    serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap()
}

fn spike_of<'a>(alerts: &'a [Value], key: &str) -> &'a Value {
    alerts
        .iter()
        .find(|a| a["rule"] == "spike" && a["key_id"] == key)
        .unwrap_or_else(|| panic!("no spike on {key}: {alerts:#?}"))
}

fn status_at_provider(app: &TestApp, id: &str) -> String {
    let data = app.fake.data.lock().unwrap();
    data.keys.iter().find(|k| k["id"] == id).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_leaking_dev_key_is_deactivated_in_the_cycle_its_spike_fires_and_prod_is_untouched() {
    let hook = WebhookReceiver::start().await;
    let app = app_with("action = \"deactivate\"", &hook).await;
    app.cli_ok(&["run", "--once"]).await;

    assert_eq!(status_at_provider(&app, "apikey_dev"), "inactive");
    assert_eq!(
        status_at_provider(&app, "apikey_prod"),
        "active",
        "outside every policy"
    );
    assert_eq!(app.fake.data.lock().unwrap().key_changes, 1);

    // The notification of the spike already says what was done, and how to undo it.
    let sent: Vec<Value> = hook.accepted().into_iter().map(|r| r.body).collect();
    let dev = sent
        .iter()
        .find(|b| b["rule"] == "spike" && b["key_id"] == "apikey_dev")
        .unwrap_or_else(|| panic!("{sent:#?}"));
    let summary = dev["summary"].as_str().unwrap();
    assert!(
        summary.contains("keywatch deactivated dev-playground at")
            && summary.contains("undo: keywatch keys activate --key apikey_dev"),
        "{summary}"
    );
    assert_eq!(dev["actions"][0]["action"], "deactivate");
    assert_eq!(dev["actions"][0]["result"], "done");
    assert_eq!(dev["actions"][0]["by"], "policy:dev-keys");
    let prod = sent
        .iter()
        .find(|b| b["rule"] == "spike" && b["key_id"] == "apikey_prod")
        .unwrap();
    assert_eq!(prod["actions"], serde_json::json!([]), "no actions: {prod}");

    // `keywatch alerts` shows the action; a second cycle does nothing again.
    let listed = alerts(&app).await;
    assert_eq!(
        spike_of(&listed, "apikey_dev")["actions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.cli_ok(&["run", "--once"]).await;
    let again = alerts(&app).await;
    let summary = spike_of(&again, "apikey_dev")["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        summary.matches("keywatch deactivated").count(),
        1,
        "once, not per pass: {summary}"
    );
    assert_eq!(
        app.fake.data.lock().unwrap().key_changes,
        1,
        "never twice for one episode"
    );
    let keys: Vec<Value> =
        serde_json::from_str(&app.cli_ok(&["keys", "--format", "json"]).await).unwrap();
    let dev = keys.iter().find(|k| k["key_id"] == "apikey_dev").unwrap();
    assert_eq!(dev["status"], "inactive");
    assert_eq!(dev["created_by"], "user:user_01WCz1FkmYMm4gnmykNKUu3Q");

    // The evidence export carries the action and its timeline.
    let out = app.dir.path().join("evidence");
    app.cli_ok(&[
        "export",
        "--key",
        "apikey_dev",
        "--since",
        "2d",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let actions: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("actions.json")).unwrap()).unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["policy"], "dev-keys");
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        summary.contains("deactivate done by policy:dev-keys"),
        "{summary}"
    );
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("actions.json"), "{sums}");
}

#[tokio::test]
async fn a_dry_run_policy_calls_nothing_and_records_what_it_would_have_done() {
    let hook = WebhookReceiver::start().await;
    let app = app_with("", &hook).await;
    app.cli_ok(&["run", "--once"]).await;
    assert_eq!(app.fake.data.lock().unwrap().key_changes, 0);
    assert_eq!(status_at_provider(&app, "apikey_dev"), "active");
    let listed = alerts(&app).await;
    let spike = spike_of(&listed, "apikey_dev");
    assert_eq!(spike["actions"][0]["result"], "dry-run");
    assert!(
        spike["summary"]
            .as_str()
            .unwrap()
            .contains("(dry-run) would have deactivated dev-playground"),
        "{spike}"
    );
}

#[tokio::test]
async fn a_refused_deactivation_is_tried_three_times_spaced_then_reported_failed() {
    let hook = WebhookReceiver::start().await;
    let app = app_with("action = \"deactivate\"", &hook).await;
    app.fake.data.lock().unwrap().refuse_key_changes = true;
    app.cli_ok(&["run", "--once"]).await;
    app.cli_ok(&["run", "--once"]).await;
    assert_eq!(
        app.fake.data.lock().unwrap().key_changes,
        1,
        "a second cycle within the minute does not call again"
    );
    let listed = alerts(&app).await;
    let spike = spike_of(&listed, "apikey_dev");
    assert_eq!(spike["actions"][0]["result"], "failed");
    let summary = spike["summary"].as_str().unwrap();
    assert!(
        summary.contains("could not deactivate dev-playground")
            && summary.contains("the provider refused; not tried again")
            && summary.contains("403"),
        "{summary}"
    );
    assert_eq!(
        summary.matches("Containment:").count(),
        1,
        "not repeated per pass: {summary}"
    );
}
