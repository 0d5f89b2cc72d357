//! Notifications end to end: detection writes the outbox, `run --once` delivers it to real
//! receivers — a webhook endpoint that verifies Standard Webhooks signatures and an SMTP server.

use serde_json::Value;

use crate::fake_anthropic::{key_old_shape, rfc3339};
use crate::helpers::{row, spawn_app_with, this_hour, TestApp, HOUR};
use crate::receivers::{SmtpServer, WebhookReceiver};

const DAY: i64 = 86_400;

fn created(days_ago: i64) -> String {
    rfc3339(chrono::Utc::now().timestamp() - days_ago * DAY)
}

/// A 209-day-old active key (key_age, warning) and a used inactive key (inactive_key_usage,
/// critical).
pub fn seed(app: &TestApp) {
    app.fake.add_key(key_old_shape(
        "apikey_old",
        "legacy-batch",
        "active",
        &created(209),
        None,
    ));
    app.fake.add_key(key_old_shape(
        "apikey_gone",
        "retired-bot",
        "inactive",
        &created(60),
        None,
    ));
    // settle = 3h: the bucket 4 hours ago is the one judged.
    app.fake.add_usage(
        this_hour() - 4 * HOUR,
        row(Some("apikey_gone"), "claude-sonnet-4-20250514", 5_000, 500),
    );
}

pub fn webhook(name: &str, url: &str, format: &str, min: &str) -> String {
    let auth = match format {
        "json" => "secret_env = \"TEST_WEBHOOK_SECRET\"\n",
        "pagerduty" => "routing_key_env = \"TEST_PD_ROUTING_KEY\"\n",
        _ => "",
    };
    format!("[[notifiers]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{url}\"\nformat = \"{format}\"\n{auth}min_severity = \"{min}\"\n")
}

pub fn email(name: &str, port: u16) -> String {
    format!(
        "[[notifiers]]\nname = \"{name}\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nfrom = \"keywatch@example.com\"\nto = [\"oncall@example.com\"]\n"
    )
}

async fn run_once(app: &TestApp) -> i32 {
    app.cli(&["run", "--once"], &[])
        .await
        .status
        .code()
        .unwrap()
}

#[tokio::test]
async fn firing_and_resolved_reach_a_signed_webhook_exactly_once_each() {
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&webhook("hook", &hook.url(), "json", "warning")).await;
    seed(&app);

    assert_eq!(run_once(&app).await, 0);
    assert_eq!(run_once(&app).await, 0);

    let got = hook.received();
    assert_eq!(
        got.len(),
        2,
        "one POST per firing alert, none on the second run: {got:#?}"
    );
    assert!(
        got.iter().all(|r| r.signed),
        "every POST verifies with standardwebhooks"
    );
    let age = got.iter().find(|r| r.body["rule"] == "key_age").unwrap();
    assert_eq!(age.body["status"], "firing");
    assert_eq!(age.body["version"], 1);
    assert_eq!(age.body["key_name"], "legacy-batch");
    let alerts: Value =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let listed = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "key_age")
        .unwrap();
    assert_eq!(
        &age.body, listed,
        "the webhook receives the alert object `alerts` lists"
    );

    // The key is deactivated: key_age resolves, and the resolve is delivered too.
    app.fake.set_key_status("apikey_old", "inactive");
    assert_eq!(run_once(&app).await, 0);
    let got = hook.received();
    assert_eq!(got.len(), 3, "{got:#?}");
    let resolved = &got[2];
    assert_eq!(
        (
            resolved.body["rule"].as_str(),
            resolved.body["status"].as_str()
        ),
        (Some("key_age"), Some("resolved"))
    );
    assert!(resolved.body["ends_at"].is_string());
    assert_ne!(resolved.webhook_id, age.webhook_id);
}

#[tokio::test]
async fn a_receiver_outage_is_retried_across_runs_with_the_same_webhook_id_and_never_duplicated() {
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&webhook("hook", &hook.url(), "json", "critical")).await;
    seed(&app);
    hook.fail_next(3);

    // Each run is a separate process: what is pending survives the restart in SQLite.
    assert_eq!(run_once(&app).await, 75, "a delivery is still pending");
    assert_eq!(hook.accepted().len(), 0);
    assert_eq!(
        hook.received().len(),
        3,
        "run --once retries a few times within the run"
    );

    assert_eq!(run_once(&app).await, 0);
    assert_eq!(run_once(&app).await, 0);

    let got = hook.received();
    assert_eq!(
        got.len(),
        4,
        "three failures, one success, then nothing: {got:#?}"
    );
    assert_eq!(hook.accepted().len(), 1);
    assert!(
        got.iter().all(|r| r.webhook_id == got[0].webhook_id),
        "retries keep the webhook-id"
    );
    assert_eq!(got[3].body["rule"], "inactive_key_usage");
}

#[tokio::test]
async fn min_severity_and_silences_decide_who_is_told() {
    let critical_only = WebhookReceiver::start().await;
    let everything = WebhookReceiver::start().await;
    let app = spawn_app_with(&format!(
        "{}{}",
        webhook("pager", &critical_only.url(), "json", "critical"),
        webhook("log", &everything.url(), "json", "info")
    ))
    .await;
    seed(&app);
    app.cli_ok(&[
        "silence",
        "--rule",
        "key_age",
        "--for",
        "1d",
        "--reason",
        "rotation planned",
    ])
    .await;

    assert_eq!(run_once(&app).await, 0);

    let rules = |r: &WebhookReceiver| {
        r.received()
            .iter()
            .map(|x| x.body["rule"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(rules(&critical_only), ["inactive_key_usage"]);
    assert_eq!(
        rules(&everything),
        ["inactive_key_usage"],
        "the silenced key_age alert is not sent"
    );
    let alerts = app.cli_ok(&["alerts"]).await;
    assert!(
        alerts.contains("key_age"),
        "silenced alerts are still detected and listed"
    );
}

#[tokio::test]
async fn slack_and_pagerduty_receive_their_own_formats() {
    let slack = WebhookReceiver::start().await;
    let pd = WebhookReceiver::start().await;
    let app = spawn_app_with(&format!(
        "{}{}",
        webhook("slack", &slack.url(), "slack", "critical"),
        webhook("pd", &pd.url(), "pagerduty", "critical")
    ))
    .await;
    seed(&app);

    assert_eq!(run_once(&app).await, 0);

    let message = &slack.received()[0].body;
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("CRITICAL inactive_key_usage: retired-bot"),
        "{message}"
    );
    assert!(message["blocks"].as_array().unwrap().len() >= 2);
    let event = &pd.received()[0].body;
    assert_eq!(event["routing_key"], "R0UT1NGKEY-test");
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["payload"]["severity"], "critical");
    assert!(event["dedup_key"].as_str().unwrap().starts_with("kw_"));
    assert_eq!(event["payload"]["source"], "keywatch/anthropic-test");
}

#[tokio::test]
async fn alerts_due_together_arrive_as_one_email_through_a_real_smtp_server() {
    let smtp = SmtpServer::start(false);
    let app = spawn_app_with(&email("mail", smtp.port)).await;
    seed(&app);

    assert_eq!(run_once(&app).await, 0);

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "two alerts, one grouped email");
    let mail = &mails[0];
    assert_eq!(mail.from, "keywatch@example.com");
    assert_eq!(mail.to, ["oncall@example.com"]);
    assert!(
        mail.data
            .contains("Subject: [keywatch] 2 alerts: 2 firing, 0 resolved"),
        "{}",
        mail.data
    );
    for needle in [
        "legacy-batch",
        "retired-bot",
        "Rotate the key",
        "Alert id: kw_",
    ] {
        assert!(
            mail.data.contains(needle),
            "{needle} missing:\n{}",
            mail.data
        );
    }
}

#[tokio::test]
async fn an_smtp_server_that_rejects_the_recipient_keeps_the_mail_pending() {
    let smtp = SmtpServer::start(true);
    let app = spawn_app_with(&email("mail", smtp.port)).await;
    seed(&app);

    let out = app.cli(&["run", "--once"], &[]).await;

    assert_eq!(out.status.code(), Some(75));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("550"), "the SMTP reply is logged: {log}");
    assert!(smtp.mails().is_empty());
}

#[tokio::test]
async fn test_notify_reports_what_each_notifier_answered() {
    let hook = WebhookReceiver::start().await;
    let smtp = SmtpServer::start(false);
    let app = spawn_app_with(&format!(
        "{}{}{}",
        webhook("hook", &hook.url(), "json", "info"),
        email("mail", smtp.port),
        webhook(
            "broken",
            "http://127.0.0.1:9/nothing-listens-here",
            "slack",
            "info"
        )
    ))
    .await;

    let out = app.cli(&["test-notify"], &[]).await;

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("hook: ok (HTTP 200)"), "{stdout}");
    assert!(stdout.contains("mail: ok (SMTP 250"), "{stdout}");
    assert!(stdout.contains("broken: FAILED"), "{stdout}");
    assert!(hook.received()[0].signed);
    assert_eq!(hook.received()[0].body["rule"], "test");
    assert!(smtp.mails()[0].data.contains("test alert"));

    let one = app.cli(&["test-notify", "--notifier", "hook"], &[]).await;
    assert_eq!(one.status.code(), Some(0));
}

#[tokio::test]
async fn a_notification_undeliverable_past_its_maximum_age_is_expired_and_logged() {
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&format!(
        "{}[delivery]\nexpire_after = \"1h\"\n",
        webhook("hook", &hook.url(), "json", "critical")
    ))
    .await;
    seed(&app);
    hook.fail_next(100);
    assert_eq!(run_once(&app).await, 75);
    // Age the pending delivery past delivery.expire_after, as two hours of outage would.
    let store = app.store().await;
    crate::backend::on_pool!(store, |p| sqlx::query(
        "UPDATE deliveries SET created_at = created_at - 7200"
    )
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .unwrap();
    store.close().await;

    let out = app.cli(&["run", "--once"], &[]).await;

    assert_eq!(out.status.code(), Some(0), "nothing is pending any more");
    assert!(String::from_utf8_lossy(&out.stderr).contains("giving up on a notification"));
    let store = app.store().await;
    let counts = store.outbox_counts().await.unwrap();
    store.close().await;
    assert_eq!(
        (counts.pending, counts.delivered, counts.expired),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn with_the_receiver_down_for_the_first_cycle_mail_goes_first_webhooks_next_and_nothing_twice(
) {
    let smtp = SmtpServer::start(false);
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&format!(
        "{}{}",
        email("mail", smtp.port),
        webhook("hook", &hook.url(), "json", "info")
    ))
    .await;
    seed(&app);
    hook.fail_next(usize::MAX); // down: every attempt of the first run answers 503

    assert_eq!(run_once(&app).await, 75, "webhooks are still pending");
    hook.fail_next(0); // back up
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].data.contains("legacy-batch") && mails[0].data.contains("retired-bot"));
    assert!(hook.accepted().is_empty());

    assert_eq!(run_once(&app).await, 0);
    let accepted = hook.accepted();
    assert_eq!(
        accepted.len(),
        2,
        "every alert's webhook, once: {accepted:#?}"
    );
    assert!(accepted.iter().all(|r| r.signed));
    let mut rules: Vec<_> = accepted
        .iter()
        .map(|r| r.body["rule"].as_str().unwrap())
        .collect();
    rules.sort();
    assert_eq!(rules, ["inactive_key_usage", "key_age"]);
    assert_eq!(smtp.mails().len(), 1, "no duplicate mail");

    let before = hook.received().len();
    assert_eq!(run_once(&app).await, 0);
    assert_eq!(hook.received().len(), before, "a third run sends nothing");
    assert_eq!(smtp.mails().len(), 1);
}

#[tokio::test]
async fn a_daily_digest_goes_out_once_per_period_with_the_report_attached() {
    let smtp = SmtpServer::start(false);
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&format!(
        "{}{}[[digests]]\nname = \"daily-spend\"\nschedule = \"daily\"\nat = \"00:00\"\ntimezone = \"UTC\"\nnotifiers = [\"mail\", \"hook\"]\n",
        email("mail", smtp.port),
        webhook("hook", &hook.url(), "json", "critical")
    ))
    .await;
    let yesterday = this_hour().div_euclid(DAY) * DAY - DAY;
    app.fake.add_key(key_old_shape(
        "apikey_d",
        "digest-key",
        "active",
        &created(10),
        None,
    ));
    app.fake.add_usage(
        yesterday + 3 * HOUR,
        row(Some("apikey_d"), "claude-sonnet-4-20250514", 50_000, 5_000),
    );

    assert_eq!(run_once(&app).await, 0);
    assert_eq!(run_once(&app).await, 0, "a restart does not send it again");

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one digest mail");
    let label = rfc3339(yesterday)[..10].to_owned();
    let mail = &mails[0].data;
    assert!(
        mail.contains(&format!("daily-spend digest {label}")),
        "{mail}"
    );
    assert!(
        mail.contains("digest-key") && mail.contains("Top movers by key"),
        "{mail}"
    );
    assert!(
        mail.contains("text/csv") && mail.contains(&format!("keywatch-daily-spend-{label}.csv")),
        "{mail}"
    );
    let posts: Vec<_> = hook
        .received()
        .into_iter()
        .filter(|r| r.body["type"] == "digest")
        .collect();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].signed);
    assert_eq!(posts[0].body["period"], label.as_str());
    assert!(posts[0].body["spend_usd"].as_f64().unwrap() > 0.0);
}
