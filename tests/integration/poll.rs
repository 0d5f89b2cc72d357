//! Polling the Anthropic usage report into SQLite: exact, idempotent, resumable.

use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_anthropic::{key_new_shape, key_old_shape, USAGE_PATH};
use crate::helpers::{row, spawn_app, this_hour, without_cost, TestApp, HOUR};

const SONNET: &str = "claude-sonnet-4-20250514";
const HAIKU: &str = "claude-3-5-haiku-20241022";

/// Three keys (both listing shapes, two pages), two days of traffic with idle hours, Workbench
/// usage without a key, and older usage outside the lookback.
fn seed(app: &TestApp) {
    let f = &app.fake;
    f.add_key(key_old_shape(
        "apikey_01A",
        "prod-rag",
        "active",
        "2026-05-01T00:00:00Z",
        Some("wrkspc_01"),
    ));
    f.add_key(key_old_shape(
        "apikey_01B",
        "ci-bot",
        "active",
        "2026-06-01T00:00:00Z",
        None,
    ));
    f.add_key(key_new_shape(
        "apikey_01C",
        "old-batch",
        "inactive",
        "2025-01-01T00:00:00Z",
        Some("wrkspc_02"),
    ));
    let now = this_hour();
    for h in 0..48 {
        let t = now - h * HOUR;
        if h % 5 != 3 {
            f.add_usage(t, row(Some("apikey_01A"), SONNET, 1_000 + h * 10, 400 + h));
        }
        if h % 7 == 0 {
            f.add_usage(t, row(Some("apikey_01B"), HAIKU, 50, 20));
            f.add_usage(t, row(None, HAIKU, 5, 2));
        }
    }
    // Before the 2-day lookback: must not be fetched on first start.
    f.add_usage(
        now - 60 * HOUR,
        row(Some("apikey_01A"), SONNET, 9_999, 9_999),
    );
}

fn lookback_start() -> i64 {
    this_hour() - 48 * HOUR
}

async fn assert_everything_served_is_stored(app: &TestApp) {
    assert_eq!(
        without_cost(&app.stored_rows().await),
        app.expected_rows(lookback_start())
    );
}

/// Answers usage requests with `response`, `times` times (and expects exactly that many), ahead
/// of the fake's normal answers.
async fn usage_fault(app: &TestApp, response: ResponseTemplate, times: u64, priority: u8) {
    usage_fault_on(app, Mock::given(method("GET")), response, times, priority).await;
}

async fn usage_fault_on(
    app: &TestApp,
    mock: wiremock::MockBuilder,
    response: ResponseTemplate,
    times: u64,
    priority: u8,
) {
    mock.and(path(USAGE_PATH))
        .respond_with(response)
        .up_to_n_times(times)
        .expect(times)
        .with_priority(priority)
        .mount(&app.fake.server)
        .await;
}

#[tokio::test]
async fn run_once_stores_exactly_the_served_usage_with_costs() {
    let app = spawn_app().await;
    seed(&app);

    let report = app.run_once().await;

    assert!(report.failed_sources.is_empty(), "{report:?}");
    let stored = app.stored_rows().await;
    assert_everything_served_is_stored(&app).await;
    assert!(stored.iter().any(|r| r.key_id == "workbench"));
    // Each row is priced from its token classes (Sonnet 4: 3 / 15 / 3.75 / 6 / 0.30 per MTok).
    for r in stored.iter().filter(|r| r.model == SONNET) {
        let t = r.tokens;
        let expected = (t.uncached as f64 * 3.0
            + t.output as f64 * 15.0
            + t.cache_5m as f64 * 3.75
            + t.cache_1h as f64 * 6.0
            + t.cache_read as f64 * 0.30)
            / 1e6;
        assert!((r.cost_usd.unwrap() - expected).abs() < 1e-12, "{r:?}");
    }
}

#[tokio::test]
async fn inventory_from_both_listing_shapes_across_pages_is_stored() {
    let app = spawn_app().await;
    seed(&app);

    app.run_once().await;

    let store = app.store().await;
    let keys = store.all_keys().await.unwrap();
    let summary: Vec<_> = keys
        .iter()
        .map(|k| {
            (
                k.key_id.as_str(),
                k.name.as_deref(),
                k.status.as_str(),
                k.workspace_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("apikey_01A", Some("prod-rag"), "active", Some("wrkspc_01")),
            ("apikey_01B", Some("ci-bot"), "active", None),
            (
                "apikey_01C",
                Some("old-batch"),
                "inactive",
                Some("wrkspc_02")
            ),
        ]
    );
}

#[tokio::test]
async fn a_second_run_changes_nothing() {
    let app = spawn_app().await;
    seed(&app);
    app.run_once().await;
    let first = app.stored_rows().await;

    let report = app.run_once().await;

    assert!(report.failed_sources.is_empty());
    // Same rows, same values, and not even rewritten (updated_at unchanged).
    assert_eq!(app.stored_rows().await, first);
}

#[tokio::test]
async fn a_late_row_in_an_already_stored_bucket_is_picked_up() {
    let app = spawn_app().await;
    seed(&app);
    app.run_once().await;
    // settle = 3h: the buckets of the last three hours are re-read on every poll.
    assert_eq!(app.cursor().await, Some(this_hour() - 3 * HOUR));

    app.fake.add_usage(
        this_hour() - 2 * HOUR,
        row(Some("apikey_01B"), SONNET, 777, 77),
    );
    app.run_once().await;

    let stored = app.stored_rows().await;
    assert_everything_served_is_stored(&app).await;
    assert!(stored
        .iter()
        .any(|r| r.key_id == "apikey_01B" && r.tokens.uncached == 777));
}

#[tokio::test]
async fn rate_limit_then_server_error_are_retried_within_the_poll() {
    let app = spawn_app().await;
    seed(&app);
    let rate_limited = ResponseTemplate::new(429)
        .insert_header("retry-after", "1")
        .set_body_json(serde_json::json!({"type": "error",
            "error": {"type": "rate_limit_error", "message": "slow down"}, "request_id": null}));
    usage_fault(&app, rate_limited, 1, 1).await;
    usage_fault(
        &app,
        ResponseTemplate::new(500).set_body_string("<html>Internal Server Error</html>"),
        1,
        2,
    )
    .await;

    let report = app.run_once().await;

    assert!(report.failed_sources.is_empty(), "{report:?}");
    assert_everything_served_is_stored(&app).await;
}

#[tokio::test]
async fn a_malformed_body_is_retried_then_left_for_the_next_run() {
    let app = spawn_app().await;
    seed(&app);
    // retries = 3: four attempts, all malformed.
    usage_fault(
        &app,
        ResponseTemplate::new(200).set_body_string(r#"{"data": [{"starting_at": 12"#),
        4,
        1,
    )
    .await;

    let report = app.run_once().await;

    assert_eq!(report.failed_sources, ["anthropic-test"]);
    assert!(app.stored_rows().await.is_empty());
    assert_eq!(app.cursor().await, None);

    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty());
    assert_everything_served_is_stored(&app).await;
}

#[tokio::test]
async fn a_failing_page_keeps_earlier_pages_and_never_advances_the_cursor_past_them() {
    let app = spawn_app().await;
    seed(&app);
    // Pages hold 24 buckets: the second page starts 24 hours after the lookback start.
    let second_page = lookback_start() + 24 * HOUR;
    let on_second_page =
        Mock::given(method("GET")).and(query_param("page", format!("page_{second_page}")));
    usage_fault_on(&app, on_second_page, ResponseTemplate::new(503), 4, 1).await;

    let report = app.run_once().await;

    assert_eq!(report.failed_sources, ["anthropic-test"]);
    assert_eq!(app.cursor().await, Some(second_page));
    let stored = without_cost(&app.stored_rows().await);
    let first_page: Vec<_> = app
        .expected_rows(lookback_start())
        .into_iter()
        .filter(|r| r.1 < second_page)
        .collect();
    assert_eq!(stored, first_page);

    // The next run resumes from the cursor and completes the history.
    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty());
    assert_everything_served_is_stored(&app).await;
}

#[tokio::test]
async fn an_unpriced_model_is_stored_with_its_tokens_and_no_cost() {
    let app = spawn_app().await;
    app.fake.add_usage(
        this_hour() - 5 * HOUR,
        row(Some("apikey_01A"), "claude-nova-9", 100, 10),
    );

    app.run_once().await;

    let stored = app.stored_rows().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].model, "claude-nova-9");
    assert_eq!(stored[0].tokens.uncached, 100);
    assert_eq!(stored[0].cost_usd, None);
}
