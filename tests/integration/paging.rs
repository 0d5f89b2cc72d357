//! Adaptive usage paging (#16): the page size is keywatch's choice; a page over the body cap is
//! asked again with fewer buckets and the poll completes, with every row stored once.

use std::collections::BTreeSet;

use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_anthropic::{key_new_shape, USAGE_PATH};
use crate::helpers::{row, spawn_app_with_lookback, this_hour, without_cost, TestApp, HOUR};

/// Two listed keys that each use 150 models an hour (far more rows per key than the first
/// page's estimate of two), for two days: a 24-bucket page is about 3 MB.
fn seed_wide(app: &TestApp) {
    for id in ["apikey_W1", "apikey_W2"] {
        app.fake.add_key(key_new_shape(
            id,
            id,
            "active",
            "2026-05-01T00:00:00Z",
            None,
        ));
    }
    let now = this_hour();
    for h in 0..48 {
        for id in ["apikey_W1", "apikey_W2"] {
            for m in 0..150 {
                let model = format!("claude-model-{m:03}");
                app.fake
                    .add_usage(now - h * HOUR, row(Some(id), &model, 100 + h, 10 + m));
            }
        }
    }
}

/// The `limit` of every request to `path` the fake received.
async fn limits_asked(server: &wiremock::MockServer, path: &str) -> BTreeSet<u32> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == path)
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "limit")
                .and_then(|(_, v)| v.parse().ok())
        })
        .collect()
}

/// The hourly stream only: the minute stream's pages are not what these tests are about.
const HOURLY_ONLY: &str = "[detect.spike.fast]\nenabled = false\n";

/// Sets `[poll] max_page_mib`.
fn cap_pages(app: &TestApp, mib: u32) {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let text = text.replace(
        "retry_backoff = \"10ms\"",
        &format!("retry_backoff = \"10ms\"\nmax_page_mib = {mib}"),
    );
    std::fs::write(&app.config_path, text).unwrap();
}

#[tokio::test]
async fn a_page_over_the_cap_is_asked_again_smaller_and_the_poll_completes() {
    let app = spawn_app_with_lookback("2d", HOURLY_ONLY).await;
    seed_wide(&app);
    cap_pages(&app, 1);
    // Buckets per page as the fake serves them (at most the request's limit): the API's
    // default page size, so the first request's size is keywatch's own.
    app.fake.data.lock().unwrap().usage_page_size = 168;

    let report = app.run_once().await;

    assert!(
        report.failed_sources.is_empty(),
        "the poll completes although its first page was over the 1 MiB cap: {report:?}"
    );
    let stored = without_cost(&app.stored_rows().await);
    assert_eq!(stored.len(), 2 * 150 * 48, "every row of every hour, once");
    assert_eq!(stored, app.expected_rows(this_hour() - 48 * HOUR));
    let limits = limits_asked(&app.fake.server, USAGE_PATH).await;
    assert!(
        limits.len() >= 2 && limits.iter().all(|l| *l < 168),
        "pages were asked again with fewer buckets, never the API's maximum: {limits:?}"
    );

    // The next poll resumes from the cursor with the remembered, smaller size and completes.
    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty(), "{report:?}");
}

#[tokio::test]
async fn a_single_bucket_over_the_cap_fails_the_poll_with_a_message_naming_the_setting() {
    let app = spawn_app_with_lookback("2d", HOURLY_ONLY).await;
    // Serving and reading the 1 MiB page can take over the suite's 2 s request timeout on a
    // busy machine; a timeout halves the page and fails with another message (seen once).
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace("timeout = \"2s\"", "timeout = \"60s\""),
    )
    .unwrap();
    seed_wide(&app);
    // 300 rows an hour are about 60 kB; a cap this small cannot be configured, so one hour is
    // made larger than 1 MiB with 6,000 more rows.
    for m in 0..6_000 {
        app.fake.add_usage(
            this_hour() - 5 * HOUR,
            row(Some("apikey_W1"), &format!("claude-extra-{m:04}"), 1, 1),
        );
    }
    cap_pages(&app, 1);

    let report = app.run_once().await;

    assert_eq!(report.failed_sources, ["anthropic-test"]);
    let stored = app.stored_rows().await;
    assert!(
        stored
            .iter()
            .all(|r| r.bucket_start < this_hour() - 5 * HOUR),
        "the buckets before the oversized one are stored; nothing after it is skipped over"
    );
    assert!(!stored.is_empty());
    let error = app.usage_poll_state().await.last_error.unwrap_or_default();
    assert!(
        error.contains("larger than 1 MiB (poll.max_page_mib)"),
        "the recorded error names the setting: {error}"
    );
}

/// Pages of two hourly buckets (as at 10,000 keys, where a page holds one hour) are staged and
/// moved into the table in key order (#16). A page that fails part-way keeps every page read
/// before it, with the cursor where they end and nothing left staged; the next run completes
/// the history, every row once.
#[tokio::test]
async fn a_staged_catch_up_that_fails_part_way_keeps_what_it_read_with_its_cursor() {
    let app = spawn_app_with_lookback("2d", HOURLY_ONLY).await;
    let now = this_hour();
    for h in 0..48 {
        for id in ["apikey_S1", "apikey_S2"] {
            app.fake.add_usage(
                now - h * HOUR,
                row(Some(id), "claude-sonnet-4-5", 100 + h, 10),
            );
        }
    }
    app.fake.data.lock().unwrap().usage_page_size = 2;
    let from = now - 48 * HOUR;
    let failing = from + 20 * HOUR;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .and(query_param("page", format!("page_{failing}")))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(4)
        .expect(4)
        .with_priority(1)
        .mount(&app.fake.server)
        .await;

    let report = app.run_once().await;

    assert_eq!(report.failed_sources, ["anthropic-test"]);
    assert_eq!(app.cursor().await, Some(failing));
    let before: Vec<_> = app
        .expected_rows(from)
        .into_iter()
        .filter(|r| r.1 < failing)
        .collect();
    assert_eq!(before.len(), 2 * 19, "hours 47 to 29 ago, two keys");
    assert_eq!(without_cost(&app.stored_rows().await), before);
    let store = app.store().await;
    let staged: i64 = crate::backend::on_pool!(store, |p| sqlx::query_scalar(
        "SELECT COUNT(*) FROM usage_staging"
    )
    .fetch_one(p)
    .await)
    .unwrap();
    store.close().await;
    assert_eq!(staged, 0, "a failed catch-up leaves nothing staged");

    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty(), "{report:?}");
    assert_eq!(
        without_cost(&app.stored_rows().await),
        app.expected_rows(from)
    );
}

/// The daily cost report is sized like usage (#16): at 10,000 OpenAI keys, 31 days of per-key
/// costs are about 60 MB, over the default cap, and a cost poll that always asked for 31 days
/// failed every time. Here 4,000 keys' costs a day (about 750 kB) against a 1 MiB cap: two days
/// a page are refused, so keywatch asks for one, and every day is stored once.
#[tokio::test]
async fn a_cost_page_over_the_cap_is_asked_again_with_fewer_days_and_every_day_is_stored() {
    const DAY: i64 = 86_400;
    const KEYS: usize = 4_000;
    let oa = crate::fake_openai::FakeOpenAi::start().await;
    let app = spawn_app_with_lookback(
        "4d",
        &format!(
            "{HOURLY_ONLY}[[sources]]\nname = \"openai-test\"\nprovider = \"openai\"\n\
             admin_key_env = \"TEST_OPENAI_ADMIN_KEY\"\nbase_url = \"{}\"\n",
            oa.server.uri()
        ),
    )
    .await;
    cap_pages(&app, 1);
    let today = this_hour().div_euclid(DAY) * DAY;
    let days: Vec<i64> = (1..=4).map(|d| today - d * DAY).collect();
    for &day in &days {
        for k in 0..KEYS {
            oa.add_cost(day, &format!("key_{k:05}"), 0.5 + k as f64 / 1000.0);
        }
    }

    let report = app.run_once().await;

    assert!(
        report.failed_sources.is_empty(),
        "the cost poll completes although two days were over the 1 MiB cap: {report:?}"
    );
    let store = app.store().await;
    let per_day: Vec<(i64, i64, f64)> = crate::backend::on_pool!(store, |p| sqlx::query_as(
        "SELECT day_start, COUNT(*), SUM(amount_usd) FROM billed_costs
         WHERE source = 'openai-test' GROUP BY day_start ORDER BY day_start",
    )
    .fetch_all(p)
    .await)
    .unwrap();
    store.close().await;
    let expected_usd: f64 = (0..KEYS).map(|k| 0.5 + k as f64 / 1000.0).sum();
    let stored_days: Vec<i64> = per_day.iter().map(|d| d.0).collect();
    assert_eq!(stored_days, days.iter().rev().copied().collect::<Vec<_>>());
    for (day, n, usd) in per_day {
        assert_eq!(n, KEYS as i64, "every key's cost on day {day}, once");
        assert!((usd - expected_usd).abs() < 1e-6, "day {day}: {usd}");
    }
    let limits = limits_asked(&oa.server, "/v1/organization/costs").await;
    assert!(
        limits.contains(&1) && limits.iter().all(|l| *l <= 31),
        "cost pages were asked again with fewer days, never more than 31: {limits:?}"
    );
}
