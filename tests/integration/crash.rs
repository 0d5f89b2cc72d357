//! Crash safety: `keywatch run` killed with SIGKILL at many random moments (backfill pages,
//! transactions, deliveries in flight) and restarted each time. Afterwards the store holds
//! exactly what the provider served, each alert exists once, and every notification reached the
//! receiver; one re-sent after a kill between the POST and its commit carries the same
//! `webhook-id`.
//!
//! KEYWATCH_CRASH_KILLS (default 50) and KEYWATCH_CRASH_SEED change the run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::detection::seed;
use crate::helpers::{spawn_app_with_lookback, this_hour, without_cost, TestApp, HOUR};
use crate::receivers::{WebhookReceiver, WEBHOOK_SECRET};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn fifty_sigkills_lose_nothing_and_duplicate_nothing() {
    assert!(!WEBHOOK_SECRET.is_empty());
    let kills = env_or("KEYWATCH_CRASH_KILLS", 50);
    let seed_value = env_or("KEYWATCH_CRASH_SEED", 20_261_126);
    let mut rng = fastrand::Rng::with_seed(seed_value);

    let hook = WebhookReceiver::start().await;
    hook.set_delay(Duration::from_millis(120));
    let probe = spawn_app_with_lookback("8d", "").await;
    let limit = seed(&probe);
    drop(probe);
    let app = spawn_app_with_lookback(
        "8d",
        &format!(
            "[[budgets]]\nname = \"gateway\"\nkey_id = \"apikey_normal2\"\ndaily_usd = {limit}\n\
             [[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nformat = \"json\"\n\
             secret_env = \"TEST_WEBHOOK_SECRET\"\nmin_severity = \"info\"\n",
            hook.url()
        ),
    )
    .await;
    seed(&app);
    // Small, slow pages (32 of them) spread the backfill over eight seconds of runs.
    {
        let mut data = app.fake.data.lock().unwrap();
        data.usage_delay = Duration::from_millis(250);
        data.usage_page_size = 6;
    }
    let expected = app.expected_rows(this_hour() - 8 * 24 * HOUR);

    let mut phases: BTreeMap<&str, u32> = BTreeMap::new();
    for _ in 0..kills {
        let mut daemon = crate::daemon::start_daemon(&app);
        tokio::time::sleep(Duration::from_millis(rng.u64(0..1_500))).await;
        daemon.kill().await.unwrap(); // SIGKILL
        daemon.wait().await.unwrap();
        let stored = if crate::backend::is_postgres() || app.db_path().exists() {
            app.stored_rows().await.len()
        } else {
            0
        };
        let phase = if stored == 0 {
            "before the first page"
        } else if stored < expected.len() {
            "mid-backfill"
        } else {
            "after backfill (detection, deliveries, re-polls)"
        };
        *phases.entry(phase).or_default() += 1;
    }

    // One clean cycle finishes whatever the last kill interrupted (on PostgreSQL once the
    // killed daemon's lease has lapsed: `run --once` refuses beside a live leader).
    if crate::backend::is_postgres() {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    app.fake.data.lock().unwrap().usage_delay = Duration::ZERO;
    hook.set_delay(Duration::ZERO);
    app.cli_ok(&["run", "--once"]).await;

    // Usage: exactly what was served, once.
    assert_eq!(without_cost(&app.stored_rows().await), expected);

    // Alerts: one per condition, each delivered, signed, under one webhook-id.
    let (alerts, notifications, resent) = alerts_delivered_once(&app, &hook).await;
    for (rule, key) in [
        ("spike", "apikey_spiky"),
        ("key_age", "apikey_old"),
        ("budget", "apikey_normal2"),
    ] {
        assert!(
            alerts
                .iter()
                .any(|a| a["rule"] == rule && a["key_id"] == key),
            "{rule} on {key}: {alerts:#?}"
        );
    }

    println!(
        "crash test (seed {seed_value}): {kills} SIGKILLs {phases:?}; {} rows, {} alerts, {} notifications, {resent} killed between POST and commit and re-sent with the same webhook-id",
        expected.len(),
        alerts.len(),
        notifications
    );
}

/// The stored alerts, after checking that each condition has one alert and every alert's state
/// reached `hook`, signed, never under two `webhook-id`s; with the number of distinct
/// notifications and of re-sends (a kill between the POST and its commit).
pub async fn alerts_delivered_once(
    app: &TestApp,
    hook: &WebhookReceiver,
) -> (Vec<Value>, usize, usize) {
    let alerts: Vec<Value> =
        serde_json::from_str(&app.cli_ok(&["alerts", "--all", "--format", "json"]).await).unwrap();
    let mut conditions = BTreeSet::new();
    for a in &alerts {
        let condition = (
            a["rule"].to_string(),
            a["key_id"].to_string(),
            a["threshold"].to_string(),
        );
        assert!(
            conditions.insert(condition.clone()),
            "{condition:?} twice: {alerts:#?}"
        );
    }
    let accepted = hook.accepted();
    assert!(accepted.iter().all(|r| r.signed));
    let mut ids_per_event: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for r in &hook.received() {
        let event = (r.body["id"].to_string(), r.body["status"].to_string());
        ids_per_event
            .entry(event)
            .or_default()
            .insert(r.webhook_id.clone().unwrap_or_default());
    }
    for a in &alerts {
        let event = (a["id"].to_string(), a["status"].to_string());
        assert!(
            accepted
                .iter()
                .any(|r| (r.body["id"].to_string(), r.body["status"].to_string()) == event),
            "{event:?} was never delivered"
        );
    }
    for (event, ids) in &ids_per_event {
        assert_eq!(
            ids.len(),
            1,
            "{event:?} was sent under several webhook-ids: {ids:?}"
        );
    }
    let resent = hook.received().len() - ids_per_event.len();
    (alerts, ids_per_event.len(), resent)
}
