//! #13.26: digest messages — the first one, the alerts it counts, its wording.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::{DAY, SONNET};
use crate::daemon::start_daemon_logging;
use crate::fake_anthropic::key_old_shape;
use crate::helpers::{row, spawn_app_with, this_hour, HOUR};
use crate::notify::{email, webhook};
use crate::receivers::{SmtpServer, WebhookReceiver};

/// A zone and an `at` for which now is before today's send time.
fn before_send_time() -> (&'static str, &'static str) {
    use chrono::Timelike;
    if Utc::now().hour() < 20 {
        ("UTC", "23:59")
    } else {
        ("Etc/GMT+6", "23:59")
    }
}

fn digest(name: &str, at: &str, zone: &str, notifiers: &str) -> String {
    format!(
        "[[digests]]\nname = \"{name}\"\nschedule = \"daily\"\nat = \"{at}\"\ntimezone = \"{zone}\"\nnotifiers = [{notifiers}]\n"
    )
}

#[tokio::test]
async fn a_first_start_sends_only_the_latest_closed_day_and_says_no_change_when_nothing_moved() {
    let smtp = SmtpServer::start(false);
    let (zone, at) = before_send_time();
    let app = spawn_app_with(&format!(
        "{}{}{}",
        email("mail", smtp.port),
        digest("late", at, zone, "\"mail\""),
        digest("early", "00:00", "UTC", "\"mail\""),
    ))
    .await;

    app.cli_ok(&["run", "--once"]).await;

    let mails: Vec<String> = smtp
        .mails()
        .into_iter()
        .map(|m| m.data)
        .filter(|d| d.contains("digest"))
        .collect();
    let yesterday = crate::fake_anthropic::rfc3339(this_hour().div_euclid(DAY) * DAY - DAY);
    assert_eq!(
        mails.len(),
        1,
        "only the early digest, for yesterday: {mails:#?}"
    );
    let mail = &mails[0];
    assert!(
        mail.contains(&format!("early digest {}", &yesterday[..10])),
        "{mail}"
    );
    assert!(mail.contains("keywatch daily digest"), "{mail}");
    assert!(!mail.contains("dayly"), "{mail}");
    assert!(mail.contains("Top movers by key: no change"), "{mail}");
    assert!(mail.contains("$0.00") && !mail.contains("$-0.00"), "{mail}");
}

#[tokio::test]
async fn the_digest_at_startup_counts_the_alerts_its_first_detection_fired() {
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&format!(
        "{}{}[[budgets]]\nname = \"tiny\"\ndaily_usd = 0.0001\n",
        webhook("hook", &hook.url(), "json", "critical"),
        digest("daily-spend", "00:00", "UTC", "\"hook\""),
    ))
    .await;
    app.fake.add_key(key_old_shape(
        "apikey_d",
        "digest-key",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    let yesterday = this_hour().div_euclid(DAY) * DAY - DAY;
    app.fake.add_usage(
        yesterday + 3 * HOUR,
        row(Some("apikey_d"), SONNET, 50_000, 5_000),
    );
    app.fake
        .add_usage(this_hour(), row(Some("apikey_d"), SONNET, 50_000, 5_000));
    let log = app.dir.path().join("daemon.log");
    let _daemon = start_daemon_logging(&app, &log, None);

    let mut digest = None;
    for _ in 0..600 {
        if let Some(d) = hook
            .received()
            .into_iter()
            .find(|r| r.body["type"] == "digest")
        {
            digest = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let digest = digest.unwrap_or_else(|| {
        panic!(
            "no digest within 60 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let open: Vec<Value> =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let budget_alerts = open.iter().filter(|a| a["rule"] == "budget").count();
    assert_eq!(
        budget_alerts, 1,
        "one alert for the tiny budget's day, past 100 %: {open:#?}"
    );
    assert!(
        digest.body["open_alerts"].as_u64().unwrap() >= 1,
        "the digest counts the alerts of the pass before it: {}",
        digest.body
    );
}
