//! Regressions of the defects issue (#13) in polling, provider decoding, source health and
//! retention: a short lookback, absurd token counts, a clock running ahead, failing secondary
//! streams, a success no detection pass saw, cycling page tokens, and unpruned tables.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keywatch::alerts::{evaluate, Rule};
use keywatch::config::Config;
use keywatch::poller::{PollOutcome, Poller};
use keywatch::store::{CostDay, DeliveryState, DigestSend, Store, COSTS_STREAM, KEYS_STREAM};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::fake_anthropic::{FakeRow, Tokens, COST_PATH, KEYS_PATH, USAGE_PATH};
use crate::helpers::{
    first, query, row, spawn_app_with, spawn_app_with_lookback, this_hour, without_cost, TestApp,
    HOUR,
};

const SONNET: &str = "claude-sonnet-4-20250514";
const DAY: i64 = 86_400;

/// A poller for the app's only source, as `keywatch run` builds it, on its own store.
async fn poller(app: &TestApp) -> (Poller, Store, Config) {
    let config = app.config();
    let store = Store::connect(&config.storage).await.unwrap();
    let poller = Poller::new(
        &config.sources[0],
        &config.poll,
        config.prices.clone(),
        store.clone(),
    )
    .unwrap();
    (poller, store, config)
}

fn at(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap()
}

fn seed_two_days(app: &TestApp) {
    for h in 0..48 {
        app.fake.add_usage(
            this_hour() - h * HOUR,
            row(Some("apikey_01A"), SONNET, 1_000 + h, 100),
        );
    }
}

async fn source_unhealthy(store: &Store) -> Vec<keywatch::alerts::Alert> {
    store
        .alerts(false)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.rule == Rule::SourceUnhealthy)
        .collect()
}

// #13.2: `lookback` shorter than the time since 00:00 UTC panicked in the cost window.
#[tokio::test]
async fn a_lookback_shorter_than_the_time_since_midnight_polls_every_stream() {
    let app = spawn_app_with_lookback("1h", "").await;
    seed_two_days(&app);
    // As of yesterday noon (always 12 h after midnight, whenever the test runs).
    let noon = Utc::now().timestamp().div_euclid(DAY) * DAY - DAY / 2;
    let (poller, store, _) = poller(&app).await;
    let outcome = poller.poll_once(at(noon), &CancellationToken::new()).await;
    assert!(
        matches!(&outcome, PollOutcome::Done { failed_streams, .. } if failed_streams.is_empty()),
        "{outcome:?}"
    );
    let costs = store
        .poll_state("anthropic-test", COSTS_STREAM)
        .await
        .unwrap();
    assert_eq!(costs.last_success_at, Some(noon), "{costs:?}");
    store.close().await;

    // The real binary at the real time (the panic struck from 01:00 UTC on).
    let out = app.cli(&["run", "--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// #13.3: counts whose daily sum overflowed i64 corrupted the rollup; `report` then panicked.
#[tokio::test]
async fn absurd_token_counts_are_refused_at_decode_naming_the_field_and_report_still_works() {
    let app = spawn_app_with("").await;
    let huge = Tokens {
        output: 5_000_000_000_000_000_000,
        ..Tokens::default()
    };
    for h in [5, 6] {
        app.fake.add_usage(
            this_hour() - h * HOUR,
            FakeRow {
                key: Some("apikey_01A".to_owned()),
                model: SONNET.to_owned(),
                tokens: huge,
                ..FakeRow::default()
            },
        );
    }
    let out = app.cli(&["run", "--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("output_tokens = 5000000000000000000") && stderr.contains("10^12"),
        "the error names the field and the ceiling: {stderr}"
    );
    assert!(
        app.stored_rows().await.is_empty(),
        "nothing of the page is stored"
    );
    for args in [&["report"][..], &["report", "--format", "json"][..]] {
        let out = app.cli(args, &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }

    // Both providers' decoders, at the ceiling and one above it.
    let anthropic = |n: u64| {
        format!(
            r#"{{"data":[{{"starting_at":"2026-05-01T10:00:00Z","ending_at":"2026-05-01T11:00:00Z",
            "results":[{{"api_key_id":"k","model":"m","cache_read_input_tokens":{n}}}]}}],"has_more":false,"next_page":null}}"#
        )
    };
    assert!(keywatch::providers::anthropic::decode_usage(
        anthropic(keywatch::providers::MAX_COUNT).as_bytes()
    )
    .is_ok());
    let err = keywatch::providers::anthropic::decode_usage(
        anthropic(keywatch::providers::MAX_COUNT + 1).as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cache_read_input_tokens"), "{err}");
    let openai = format!(
        r#"{{"object":"page","data":[{{"object":"bucket","start_time":1730419200,"end_time":1730505600,
        "results":[{{"input_tokens":{},"output_tokens":1,"num_model_requests":1,"api_key_id":"key_1","model":"gpt-4o"}}]}}],
        "has_more":false,"next_page":null}}"#,
        u64::MAX
    );
    let err = keywatch::providers::openai::decode_usage(openai.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input_tokens") && err.contains("key_1"),
        "{err}"
    );
    // A negative count names where it is.
    let err = keywatch::providers::anthropic::decode_usage(
        anthropic(0).replace(":0}", ":-5}").as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("data[0].results[0].cache_read_input_tokens"),
        "{err}"
    );
}

// #13.5: a clock ahead by more than the retention deleted every usage row, and after the
// clock was corrected the cursor stayed in the future and nothing was fetched again.
#[tokio::test]
async fn a_clock_running_ahead_deletes_nothing_and_polling_resumes_when_it_is_corrected() {
    let app = spawn_app_with("").await;
    seed_two_days(&app);
    let (poller, store, config) = poller(&app).await;
    let cancel = CancellationToken::new();
    let real = Utc::now().timestamp();
    assert!(matches!(
        poller.poll_once(at(real), &cancel).await,
        PollOutcome::Done { .. }
    ));
    let stored = app.stored_rows().await.len();
    assert_eq!(stored, 48);

    // The host clock runs 500 days ahead (default retention of hourly usage: 400 days) for a
    // poll and a retention pass.
    let ahead = real + 500 * DAY;
    poller.poll_once(at(ahead), &cancel).await;
    let pruned = keywatch::retention::prune_at(&store, &config, ahead, &cancel)
        .await
        .unwrap();
    assert_eq!(pruned.usage_rows, 0, "{pruned:?}");
    assert_eq!(app.stored_rows().await.len(), 48, "hourly rows");

    // Even if the history were gone, the corrected clock reads the lookback again.
    crate::backend::on_pool!(store, |p| sqlx::query("DELETE FROM usage_buckets")
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .unwrap();
    let back = Utc::now().timestamp() + 60;
    assert!(matches!(
        poller.poll_once(at(back), &cancel).await,
        PollOutcome::Done { .. }
    ));
    assert_eq!(
        without_cost(&app.stored_rows().await),
        app.expected_rows(this_hour() - 48 * HOUR)
    );
    let cursor = app.cursor().await.unwrap();
    assert!(
        cursor <= back,
        "cursor {cursor} is ahead of the clock {back}"
    );
    store.close().await;
}

// #13.9: a failing key listing or cost report failed the whole poll (usage backed off to
// 30 minutes) and a cost 403 raised source_unhealthy saying the admin key was revoked.
#[tokio::test]
async fn a_failing_key_listing_and_cost_report_back_off_on_their_own_and_usage_goes_on() {
    let app = spawn_app_with("").await;
    seed_two_days(&app);
    let error = |status: u16, kind: &str| {
        ResponseTemplate::new(status).set_body_json(json!({"type": "error",
            "error": {"type": kind, "message": "not allowed"}, "request_id": "req_1"}))
    };
    Mock::given(method("GET"))
        .and(path(COST_PATH))
        .respond_with(error(403, "permission_error"))
        .with_priority(1)
        .mount(&app.fake.server)
        .await;
    Mock::given(method("GET"))
        .and(path(KEYS_PATH))
        .respond_with(error(500, "api_error"))
        .with_priority(1)
        .mount(&app.fake.server)
        .await;
    let (poller, store, config) = poller(&app).await;
    let t0 = Utc::now().timestamp();
    for i in 0..6 {
        let outcome = poller
            .poll_once(at(t0 + i * 60), &CancellationToken::new())
            .await;
        // Usage succeeded: the daemon's poll loop keeps its interval.
        assert!(
            matches!(&outcome, PollOutcome::Done { .. }),
            "poll {i}: {outcome:?}"
        );
    }
    let usage = store
        .usage_poll_state("anthropic-test", HOUR)
        .await
        .unwrap();
    assert_eq!(usage.consecutive_failures, 0);
    assert_eq!(usage.last_success_at, Some(t0 + 300));
    for stream in [KEYS_STREAM, COSTS_STREAM] {
        let s = store.poll_state("anthropic-test", stream).await.unwrap();
        // Six cycles, but each failing stream backed off: 3 or 4 attempts.
        assert!((3..=4).contains(&s.consecutive_failures), "{stream}: {s:?}");
    }
    let cost_requests = app
        .fake
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == COST_PATH)
        .count();
    assert!(
        cost_requests <= 4,
        "{cost_requests} cost requests in 6 polls"
    );

    evaluate(&store, &config, at(t0 + 300)).await.unwrap();
    let alerts = source_unhealthy(&store).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let summary = &alerts[0].summary;
    println!("source_unhealthy: {summary}");
    assert!(
        summary.contains("cost report")
            && summary.contains("key listing")
            && summary.contains("Usage is still polled"),
        "{summary}"
    );
    assert!(!summary.contains("revoked"), "{summary}");
    store.close().await;
}

// #13.10: a success no detection pass saw, then a new failure, opened a second alert and the
// first stayed firing for ever.
#[tokio::test]
async fn a_success_no_pass_saw_does_not_leave_the_first_source_unhealthy_alert_firing() {
    let app = spawn_app_with("").await;
    seed_two_days(&app);
    let (poller, store, config) = poller(&app).await;
    let cancel = CancellationToken::new();
    let t0 = Utc::now().timestamp();
    let down = Arc::new(AtomicBool::new(false));
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .and(Down(Arc::clone(&down)))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&app.fake.server)
        .await;
    assert!(matches!(
        poller.poll_once(at(t0), &cancel).await,
        PollOutcome::Done { .. }
    ));
    down.store(true, Ordering::SeqCst);
    for i in 1..=4 {
        assert!(matches!(
            poller.poll_once(at(t0 + i * 60), &cancel).await,
            PollOutcome::Failed(_)
        ));
    }
    evaluate(&store, &config, at(t0 + 240)).await.unwrap();
    let first = source_unhealthy(&store).await;
    assert_eq!(first.len(), 1, "{first:#?}");

    // A success that no detection pass sees, then a new outage.
    down.store(false, Ordering::SeqCst);
    let outcome = poller.poll_once(at(t0 + 300), &cancel).await;
    assert!(matches!(outcome, PollOutcome::Done { .. }), "{outcome:?}");
    down.store(true, Ordering::SeqCst);
    for i in 6..=10 {
        poller.poll_once(at(t0 + i * 60), &cancel).await;
    }
    evaluate(&store, &config, at(t0 + 600)).await.unwrap();
    let firing = source_unhealthy(&store).await;
    assert_eq!(firing.len(), 1, "one outage, one alert: {firing:#?}");
    assert_ne!(firing[0].id, first[0].id, "the first episode is resolved");
    store.close().await;
}

/// Matches while the provider is "down".
struct Down(Arc<AtomicBool>);

impl wiremock::Match for Down {
    fn matches(&self, _: &Request) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Page tokens that cycle A → B → A, for the usage report and the key listing.
struct Cycling;

impl Respond for Cycling {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q = query(req);
        if req.url.path() == KEYS_PATH {
            let next = match first(&q, "after_id") {
                Some("k1") => "k2",
                _ => "k1",
            };
            return ResponseTemplate::new(200).set_body_json(json!({"data": [],
                "has_more": true, "first_id": null, "last_id": next}));
        }
        let next = match first(&q, "page") {
            Some("A") => "B",
            _ => "A",
        };
        ResponseTemplate::new(200)
            .set_body_json(json!({"data": [], "has_more": true, "next_page": next}))
    }
}

// #13.11: cycling next_page tokens were followed for ever and no alert was raised.
#[tokio::test]
async fn cycling_page_tokens_end_the_poll_at_once_and_raise_source_unhealthy() {
    let app = spawn_app_with("").await;
    for p in [USAGE_PATH, KEYS_PATH] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(Cycling)
            .with_priority(1)
            .mount(&app.fake.server)
            .await;
    }
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), app.cli(&["run", "--once"], &[]))
        .await
        .expect("run --once ends although the provider's paging never does");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("paging did not end"), "{stderr}");
    println!(
        "cycling page tokens: run --once ended after {:?}",
        started.elapsed()
    );

    let alerts: serde_json::Value =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let unhealthy: Vec<_> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "source_unhealthy")
        .collect();
    assert_eq!(unhealthy.len(), 1, "{alerts:#}");
    let summary = unhealthy[0]["summary"].as_str().unwrap();
    println!("source_unhealthy: {summary}");
    assert!(
        summary.contains("paging did not end") && summary.contains("key listing"),
        "{summary}"
    );
}

// #13.15: provider_costs and digest_sends were never pruned.
#[tokio::test]
async fn provider_costs_and_sent_digests_are_pruned_with_their_retention() {
    let app = spawn_app_with("").await;
    let text = std::fs::read_to_string(&app.config_path).unwrap().replace(
        &app.storage_section(),
        &format!(
            "{}[storage.retention]\n\"1d\" = \"30d\"\nalerts = \"30d\"\n",
            app.storage_section()
        ),
    );
    std::fs::write(&app.config_path, text).unwrap();
    let config = app.config();
    let store = Store::connect(&config.storage).await.unwrap();
    let now = Utc::now().timestamp();
    let today = now.div_euclid(DAY) * DAY;
    let line = |usd: f64| keywatch::providers::CostLine {
        workspace_id: None,
        cost_type: "tokens".to_owned(),
        model: Some(SONNET.to_owned()),
        usd,
    };
    let days: Vec<CostDay> = [60, 45, 10, 1]
        .iter()
        .map(|d| CostDay {
            day: today - d * DAY,
            per_key: Some(vec![("apikey_01A".to_owned(), 1.0)]),
            lines: vec![line(1.0)],
        })
        .collect();
    store
        .store_billed("anthropic-test", &days, today - DAY, now)
        .await
        .unwrap();
    let send = |period: &str| DigestSend {
        digest: "daily".to_owned(),
        period: period.to_owned(),
        notifier: "ops".to_owned(),
        subject: "s".to_owned(),
        body: "b".to_owned(),
        payload: "{}".to_owned(),
        csv: String::new(),
        attempts: 0,
        created_at: 0,
        next_attempt_at: 0,
    };
    let (old, kept_pending, recent) = (send("old"), send("old-pending"), send("recent"));
    // A weekly digest's only send, older than the retention: kept, or the week would be sent
    // again every day (review of #13.15).
    let weekly = DigestSend {
        digest: "weekly".to_owned(),
        ..send("weekly-latest")
    };
    store
        .queue_digest(std::slice::from_ref(&weekly), now - 60 * DAY)
        .await
        .unwrap();
    store
        .mark_digest(&weekly, DeliveryState::Delivered, 0, now - 60 * DAY, "ok")
        .await
        .unwrap();
    store
        .queue_digest(&[old.clone(), kept_pending], now - 60 * DAY)
        .await
        .unwrap();
    store
        .mark_digest(&old, DeliveryState::Delivered, 0, now - 60 * DAY, "ok")
        .await
        .unwrap();
    store
        .queue_digest(std::slice::from_ref(&recent), now)
        .await
        .unwrap();
    store
        .mark_digest(&recent, DeliveryState::Delivered, 0, now, "ok")
        .await
        .unwrap();

    let pruned = keywatch::retention::prune_at(&store, &config, now, &CancellationToken::new())
        .await
        .unwrap();

    assert_eq!(
        pruned.billed_rows, 4,
        "two old days in both tables: {pruned:?}"
    );
    assert_eq!(pruned.digest_sends, 1, "{pruned:?}");
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            crate::backend::on_pool!(store, |p| sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(p)
                .await)
            .unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM provider_costs").await, 2);
    assert_eq!(count("SELECT COUNT(*) FROM billed_costs").await, 2);
    let periods: Vec<String> = crate::backend::on_pool!(store, |p| sqlx::query_scalar(
        "SELECT period FROM digest_sends ORDER BY period"
    )
    .fetch_all(p)
    .await)
    .unwrap();
    assert_eq!(
        periods,
        ["old-pending", "recent", "weekly-latest"],
        "pending ones and each digest's newest are kept"
    );
    store.close().await;
}
