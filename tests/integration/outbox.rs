//! #14: one outbox for alerts and digests — a digest is retried, backed off, delivered once with
//! a stable `webhook-id`, and expired exactly like an alert notification.

use std::sync::Arc;

use keywatch::notify::{Mode, Outbox};
use keywatch::store::Store;

use crate::helpers::spawn_app_with;
use crate::notify::webhook;
use crate::receivers::WebhookReceiver;

fn digest(notifier: &str) -> String {
    format!(
        "[[digests]]\nname = \"daily\"\nschedule = \"daily\"\nat = \"00:00\"\ntimezone = \"UTC\"\nnotifiers = [\"{notifier}\"]\n"
    )
}

async fn digest_states(store: &Store) -> Vec<(String, String, i64)> {
    crate::backend::on_pool!(store, |p| sqlx::query_as(
        "SELECT notifier, state, attempts FROM digest_sends ORDER BY notifier"
    )
    .fetch_all(p)
    .await)
    .unwrap()
}

#[tokio::test]
async fn a_digest_is_retried_backed_off_and_expired_like_an_alert() {
    let flaky = WebhookReceiver::start().await;
    let dead = WebhookReceiver::start().await;
    flaky.fail_next(usize::MAX);
    dead.fail_next(usize::MAX);
    let app = spawn_app_with(&format!(
        "[delivery]\ntimeout = \"1s\"\nexpire_after = \"6h\"\n{}{}{}{}",
        webhook("flaky", &flaky.url(), "json", "critical"),
        webhook("dead", &dead.url(), "json", "critical"),
        digest("flaky"),
        digest("dead").replace("\"daily\"\nschedule", "\"daily-dead\"\nschedule"),
    ))
    .await;
    let report = app.run_once().await;
    assert_eq!(
        report.undelivered, 2,
        "both digests are left pending: {report:?}"
    );

    let store = app.open_store().await;
    let outbox = Outbox::new(Arc::new(app.config()));
    let t0 = chrono::Utc::now().timestamp();
    let first_pass = flaky.received().len();
    for minute in 1..=60 {
        outbox
            .deliver_at(&store, Mode::Due, t0 + minute * 60)
            .await
            .unwrap();
    }
    let in_the_hour = flaky.received().len() - first_pass;
    assert!(
        (1..=6).contains(&in_the_hour),
        "{in_the_hour} attempts for one digest in an hour of 5xx: the outbox's back-off"
    );
    flaky.fail_next(0);
    for minute in 61..=400 {
        outbox
            .deliver_at(&store, Mode::Due, t0 + minute * 60)
            .await
            .unwrap();
    }
    let accepted = flaky.accepted();
    assert_eq!(accepted.len(), 1, "delivered once: {accepted:#?}");
    assert_eq!(accepted[0].body["type"], "digest");
    let ids: std::collections::BTreeSet<_> = flaky
        .received()
        .iter()
        .map(|r| r.webhook_id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "retries reuse the webhook-id");
    let states = digest_states(&store).await;
    assert_eq!(states[1].0, "flaky");
    assert_eq!(states[1].1, "delivered");
    assert_eq!(
        (states[0].0.as_str(), states[0].1.as_str()),
        ("dead", "expired"),
        "past delivery.expire_after the dead receiver's digest is given up: {states:?}"
    );
    let dead_attempts = dead.received().len();
    outbox
        .deliver_at(&store, Mode::All, t0 + 500 * 60)
        .await
        .unwrap();
    assert_eq!(
        dead.received().len(),
        dead_attempts,
        "never tried after expiry"
    );
}

#[tokio::test]
async fn a_digest_whose_notifier_was_removed_is_given_up_not_retried() {
    let hook = WebhookReceiver::start().await;
    hook.fail_next(usize::MAX);
    let app = spawn_app_with(&format!(
        "{}{}",
        webhook("hook", &hook.url(), "json", "critical"),
        digest("hook"),
    ))
    .await;
    app.run_once().await;
    let mut config = app.config();
    config.notifiers.clear();
    let store = app.open_store().await;
    let report = Outbox::new(Arc::new(config))
        .deliver(&store, Mode::All)
        .await
        .unwrap();
    assert_eq!(report.expired, 1, "{report:?}");
    let states = digest_states(&store).await;
    assert_eq!(states[0].1, "expired", "{states:?}");
    let why: String = crate::backend::on_pool!(store, |p| sqlx::query_scalar(
        "SELECT last_result FROM digest_sends"
    )
    .fetch_one(p)
    .await)
    .unwrap();
    assert_eq!(why, "the notifier is no longer configured");
}
