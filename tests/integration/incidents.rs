//! One incident per budget period: the thresholds a budget's spend crosses day by day share one
//! PagerDuty `dedup_key` and one open alert, each crossing still notifies, and every
//! notification links back to the dashboard (`http.external_url`).

use serde_json::Value;

use crate::defects_output::header;
use crate::fake_anthropic::{key_old_shape, rfc3339};
use crate::helpers::{row, spawn_app_with, this_hour, TestApp};
use crate::notify::{email, webhook};
use crate::receivers::{SmtpServer, WebhookReceiver};

const SONNET: &str = "claude-sonnet-4-20250514";

/// USD of a `row(…, uncached, output)` on Sonnet 4 (see helpers::row for the cache classes).
fn cost(uncached: i64, output: i64) -> f64 {
    (uncached as f64 * (3.0 + 0.3 * 3.0 + 3.75 / 2.0 + 6.0 / 4.0) + output as f64 * 15.0) / 1e6
}

/// Spend of `uncached` tokens (and a tenth of that output) on a new key in the current hour.
fn spend(app: &TestApp, key: &str, uncached: i64) {
    let created = rfc3339(chrono::Utc::now().timestamp() - 86_400);
    app.fake.add_key(key_old_shape(
        key,
        &format!("{key}-svc"),
        "active",
        &created,
        None,
    ));
    app.fake
        .add_usage(this_hour(), row(Some(key), SONNET, uncached, uncached / 10));
}

/// The new keys' first minutes would page as spikes beside the budget: not these tests' subject.
async fn silence_spikes(app: &TestApp) {
    app.cli_ok(&[
        "silence",
        "--rule",
        "spike",
        "--for",
        "1h",
        "--reason",
        "budget test",
    ])
    .await;
}

async fn run_once(app: &TestApp) {
    let out = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test]
async fn a_budget_crossing_50_then_75_then_100_percent_is_one_pagerduty_incident() {
    let pd = WebhookReceiver::start().await;
    let slack = WebhookReceiver::start().await;
    let smtp = SmtpServer::start(false);
    let limit = cost(600_000, 60_000) / 0.6;
    let app = spawn_app_with(&format!(
        "[http]\nlisten = \"127.0.0.1:{}\"\nexternal_url = \"https://keywatch.example.com\"\n\
         [[budgets]]\nname = \"team\"\ndaily_usd = {limit}\n{}{}{}",
        crate::daemon::free_port(),
        webhook("pd", &pd.url(), "pagerduty", "info"),
        webhook("slack", &slack.url(), "slack", "info"),
        email("mail", smtp.port),
    ))
    .await;

    silence_spikes(&app).await;
    spend(&app, "apikey_a", 600_000); // 60 %
    run_once(&app).await;
    spend(&app, "apikey_b", 200_000); // 80 %
    run_once(&app).await;
    spend(&app, "apikey_c", 250_000); // 105 %
    run_once(&app).await;
    run_once(&app).await; // nothing new: no page

    let events: Vec<Value> = pd
        .accepted()
        .into_iter()
        .map(|r| r.body)
        .filter(|e| e["payload"]["class"] == "budget")
        .collect();
    let seen: Vec<(&str, &str, f64)> = events
        .iter()
        .map(|e| {
            (
                e["dedup_key"].as_str().unwrap(),
                e["payload"]["severity"].as_str().unwrap(),
                e["payload"]["custom_details"]["threshold"]
                    .as_f64()
                    .unwrap(),
            )
        })
        .collect();
    let id = seen[0].0;
    assert_eq!(
        seen,
        [
            (id, "info", 50.0),
            (id, "warning", 75.0),
            (id, "critical", 100.0)
        ],
        "one dedup_key, updated as severity rises: {events:#?}"
    );
    let last = &events[2];
    assert_eq!(last["event_action"], "trigger");
    let link = format!("https://keywatch.example.com/alerts#alert-{id}");
    assert_eq!(last["client"], "keywatch");
    assert_eq!(last["client_url"], link.as_str());
    assert_eq!(last["links"][0]["href"], link.as_str());
    let details = &last["payload"]["custom_details"];
    assert!(
        details["numbers"]
            .as_str()
            .unwrap()
            .ends_with("(100% crossed)"),
        "{details:#}"
    );
    assert_eq!(details["budget"], "team");
    assert!(last["payload"]["timestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    // One open row in the alert list, at the highest threshold.
    let alerts: Vec<Value> =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let budget: Vec<&Value> = alerts.iter().filter(|a| a["rule"] == "budget").collect();
    assert_eq!(budget.len(), 1, "{alerts:#?}");
    assert_eq!(
        (&budget[0]["threshold"], &budget[0]["severity"]),
        (&Value::from(100.0), &Value::from("critical"))
    );

    // Slack got each crossing too, each with a button to the alert.
    let posts: Vec<_> = slack
        .accepted()
        .into_iter()
        .filter(|p| p.body["text"].as_str().unwrap().contains(" budget: "))
        .collect();
    assert_eq!(posts.len(), 3, "{posts:#?}");
    let blocks = posts[2].body["blocks"].as_array().unwrap();
    let button = &blocks.last().unwrap()["elements"][0];
    assert_eq!(button["type"], "button");
    assert_eq!(button["url"], link.as_str());

    // Email: each crossing is its own message, threaded onto the first, with an HTML table.
    let mails: Vec<String> = smtp
        .mails()
        .into_iter()
        .map(|m| m.data)
        .filter(|d| header(d, "Message-ID").is_some_and(|m| m.starts_with(&format!("<{id}."))))
        .collect();
    assert_eq!(mails.len(), 3, "{mails:#?}");
    let ids: Vec<String> = mails
        .iter()
        .map(|m| header(m, "Message-ID").unwrap())
        .collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    for later in &mails[1..] {
        assert_eq!(header(later, "In-Reply-To").as_ref(), Some(&ids[0]));
    }
    for m in &mails {
        assert!(m.contains("multipart/alternative"), "{m}");
        assert!(m.contains("Content-Type: text/html"), "{m}");
        assert!(m.contains("Content-Type: text/plain"), "{m}");
    }
}

#[tokio::test]
async fn a_late_retry_never_tells_alertmanager_an_older_state() {
    let am = WebhookReceiver::start().await;
    let limit = cost(600_000, 60_000) / 0.6;
    let app = spawn_app_with(&format!(
        "[[budgets]]\nname = \"team\"\ndaily_usd = {limit}\n\
         [[notifiers]]\nname = \"am\"\nkind = \"webhook\"\nformat = \"alertmanager\"\n\
         url = \"{}\"\nmin_severity = \"info\"\n",
        am.server.uri()
    ))
    .await;
    silence_spikes(&app).await;
    // The 50 % crossing cannot be delivered: Alertmanager is down.
    am.fail_next(1_000);
    spend(&app, "apikey_a", 600_000);
    let out = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(out.status.code(), Some(75), "left pending");
    // Back up, and the spend is at 80 % by now: both crossings are queued, only 75 % is told.
    am.fail_next(0);
    spend(&app, "apikey_b", 200_000);
    run_once(&app).await;
    let told: Vec<(String, String)> = am
        .accepted()
        .iter()
        .flat_map(|r| r.body.as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == "budget")
        .map(|a| {
            (
                a["labels"]["threshold"].as_str().unwrap().to_owned(),
                a["endsAt"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(!told.is_empty(), "{told:?}");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (threshold, ends) in &told {
        assert_eq!(threshold, "75", "never the older 50 %: {told:?}");
        assert!(ends.as_str() > now.as_str(), "firing: {told:?}");
    }
}
