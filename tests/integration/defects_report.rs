//! Issue #13 items 7, 8 and 26 (reports, billed spend per key, digest messages), as a user
//! sees them: the real binary, real HTTP, a fake OpenAI cost report, real receivers.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::daemon::{free_port, get, start_daemon_logging};
use crate::fake_anthropic::key_old_shape;
use crate::fake_openai::{oa_row, FakeOpenAi};
use crate::helpers::{first, query, row, spawn_app_with, spawn_app_with_lookback, this_hour};
use crate::helpers::{TestApp, HOUR};
use crate::notify::{email, webhook};
use crate::receivers::{SmtpServer, WebhookReceiver};

const DAY: i64 = 86_400;
const SONNET: &str = "claude-sonnet-4-20250514";

fn ts(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

/// One priced bucket at 12:00 UTC on every day from `first` to `last` (RFC 3339 days).
async fn seed_daily(app: &TestApp, first: &str, last: &str) {
    let store = keywatch::store::Store::open(&app.db_path()).await.unwrap();
    let (from, to) = (
        ts(&format!("{first}T12:00:00Z")),
        ts(&format!("{last}T12:00:00Z")),
    );
    let rows: Vec<keywatch::store::UsageRecord> = (0..)
        .map(|d| from + d * DAY)
        .take_while(|t| *t <= to)
        .map(|t| keywatch::store::UsageRecord {
            key_id: "apikey_r".to_owned(),
            model: SONNET.to_owned(),
            bucket_start: t,
            tokens: keywatch::prices::TokenCounts {
                uncached_input: 1_000,
                output: 100,
                ..Default::default()
            },
            web_search_requests: 0,
            requests: Some(1),
            cost_usd: Some(0.0045),
        })
        .collect();
    for chunk in rows.chunks(100) {
        store
            .store_usage("anthropic-test", HOUR, chunk, None, 1)
            .await
            .unwrap();
    }
    store.close().await;
}

/// The distinct periods of a JSON report, in order.
fn labels(rows: &[Value]) -> Vec<String> {
    let set: BTreeSet<String> = rows
        .iter()
        .map(|r| r["period"].as_str().unwrap().to_owned())
        .collect();
    set.into_iter().collect()
}

async fn cli_report(app: &TestApp, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["report", "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&app.cli_ok(&all).await).unwrap()
}

/// (now, zone, period, --last, expected periods): days 1, 8 and 31 of months, DST changes.
/// now, zone, period, --last, the periods expected.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
);

const CASES: &[Case] = &[
    (
        "2026-10-31T12:00:00Z",
        "UTC",
        "month",
        Some("1"),
        &["2026-10"],
    ),
    (
        "2026-10-31T12:00:00Z",
        "UTC",
        "month",
        None,
        &["2026-08", "2026-09", "2026-10"],
    ),
    (
        "2026-10-31T12:00:00Z",
        "UTC",
        "month",
        Some("2"),
        &["2026-09", "2026-10"],
    ),
    (
        "2026-11-08T12:00:00Z",
        "Europe/Berlin",
        "month",
        None,
        &["2026-09", "2026-10", "2026-11"],
    ),
    (
        "2026-11-08T12:00:00Z",
        "Europe/Berlin",
        "month",
        Some("1"),
        &["2026-11"],
    ),
    // 00:30 on 1 December in Berlin, still 30 November in UTC.
    (
        "2026-11-30T23:30:00Z",
        "Europe/Berlin",
        "month",
        None,
        &["2026-10", "2026-11", "2026-12"],
    ),
    (
        "2026-11-30T23:30:00Z",
        "UTC",
        "month",
        None,
        &["2026-09", "2026-10", "2026-11"],
    ),
    // Berlin leaves summer time on 25 October; New York on 1 November.
    (
        "2026-10-25T12:00:00Z",
        "Europe/Berlin",
        "day",
        Some("3"),
        &["2026-10-23", "2026-10-24", "2026-10-25"],
    ),
    (
        "2026-10-25T12:00:00Z",
        "Europe/Berlin",
        "week",
        None,
        &["2026-W40", "2026-W41", "2026-W42", "2026-W43"],
    ),
    (
        "2026-11-01T12:00:00Z",
        "America/New_York",
        "month",
        None,
        &["2026-09", "2026-10", "2026-11"],
    ),
    (
        "2026-11-01T12:00:00Z",
        "America/New_York",
        "day",
        None,
        &[
            "2026-10-26",
            "2026-10-27",
            "2026-10-28",
            "2026-10-29",
            "2026-10-30",
            "2026-10-31",
            "2026-11-01",
        ],
    ),
    // Berlin entered summer time on 29 March; February has 28 days.
    (
        "2026-03-31T12:00:00Z",
        "Europe/Berlin",
        "month",
        Some("2"),
        &["2026-02", "2026-03"],
    ),
    (
        "2026-03-31T12:00:00Z",
        "Europe/Berlin",
        "month",
        None,
        &["2026-01", "2026-02", "2026-03"],
    ),
    (
        "2026-01-08T12:00:00Z",
        "Asia/Kolkata",
        "month",
        Some("2"),
        &["2025-12", "2026-01"],
    ),
    (
        "2026-01-01T02:00:00Z",
        "Asia/Kolkata",
        "week",
        Some("2"),
        &["2025-W52", "2026-W01"],
    ),
];

#[tokio::test]
async fn report_last_n_is_exactly_n_periods_and_the_api_serves_the_cli_rows() {
    let port = free_port();
    let app = spawn_app_with(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\ntimezone = \"Europe/Berlin\"\n\
         [storage.retention]\n\"1h\" = \"forever\"\n"
    ))
    .await;
    seed_daily(&app, "2025-12-01", "2026-12-01").await;

    let mut cli_rows = Vec::new();
    for (now, zone, period, last, want) in CASES {
        let mut args = vec!["--period", period, "--timezone", zone, "--until", now];
        if let Some(n) = last {
            args.extend(["--last", n]);
        }
        let rows = cli_report(&app, &args).await;
        assert_eq!(labels(&rows), *want, "report {args:?}");
        cli_rows.push(rows);
    }
    // --since and --until: the periods holding the first and the last second.
    let rows = cli_report(
        &app,
        &[
            "--period",
            "month",
            "--since",
            "2026-09-15T00:00:00Z",
            "--until",
            "2026-11-01T00:00:00Z",
        ],
    )
    .await;
    assert_eq!(labels(&rows), ["2026-09", "2026-10"]);
    // A period without usage totals 0.00, never -0.00.
    let table = app
        .cli_ok(&[
            "report",
            "--period",
            "day",
            "--since",
            "2025-11-20T00:00:00Z",
            "--until",
            "2025-11-22T00:00:00Z",
        ])
        .await;
    assert!(table.contains("total") && table.contains("0.00"), "{table}");
    assert!(!table.contains("-0.00"), "{table}");

    // The API: the same periods for the same parameters, the same row objects.
    let log = app.dir.path().join("daemon.log");
    let _daemon = start_daemon_logging(&app, &log, None);
    let base = format!("http://127.0.0.1:{port}/api/v1/report");
    for ((now, zone, period, last, want), cli) in CASES.iter().zip(&cli_rows) {
        let mut url = format!("{base}?period={period}&timezone={zone}&until={now}&by=key");
        if let Some(n) = last {
            url.push_str(&format!("&last={n}"));
        }
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(labels(&rows), *want, "{url}");
        assert_eq!(&rows, cli, "{url}: the API rows are the CLI's JSON rows");
    }
    // The default `last` per kind is the CLI's: 7 days, 4 weeks, 3 months ([http] timezone).
    for (period, n) in [("day", 7), ("week", 4), ("month", 3)] {
        let url = format!("{base}?period={period}&until=2026-11-30T12:00:00Z");
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{body}");
        let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(labels(&rows).len(), n, "{url}: {body}");
    }
    let (status, body) = get(&format!("{base}?period=month&since=1d&until=2d")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("since must be before until"), "{body}");
}

/// OpenAI's cost report for a few closed days: one key billed on its own, the other key's cost
/// in a row without `api_key_id` (unattributed), as the documented shape allows.
struct CostReport {
    days: Vec<i64>,
    billed_usd: f64,
    unattributed_usd: f64,
}

impl Respond for CostReport {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q = query(req);
        let start: i64 = first(&q, "start_time").unwrap().parse().unwrap();
        let data: Vec<Value> = self
            .days
            .iter()
            .filter(|d| **d >= start)
            .map(|d| {
                json!({"object": "bucket", "start_time": d, "end_time": d + DAY, "results": [
                    {"object": "organization.costs.result", "amount": {"value": self.billed_usd, "currency": "usd"},
                     "line_item": null, "project_id": "proj_1", "api_key_id": "key_billed",
                     "quantity": null, "quantity_unit": null},
                    {"object": "organization.costs.result", "amount": {"value": self.unattributed_usd, "currency": "usd"},
                     "line_item": null, "project_id": "proj_1", "api_key_id": null,
                     "quantity": null, "quantity_unit": null}]})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(
            json!({"object": "page", "data": data, "has_more": false, "next_page": null}),
        )
    }
}

const MINI: &str = "gpt-4o-mini-2024-07-18";

/// USD of `oa_row(…, input, output)` on gpt-4o-mini: a quarter of the input is cached.
fn mini_cost(input: i64, output: i64) -> f64 {
    let cached = input / 4;
    ((input - cached) as f64 * 0.15 + cached as f64 * 0.075 + output as f64 * 0.60) / 1e6
}

#[tokio::test]
async fn a_key_without_its_own_billed_row_counts_its_estimate_not_zero() {
    let today = this_hour().div_euclid(DAY) * DAY;
    let days: Vec<i64> = (1..=3).map(|d| today - d * DAY).collect();
    // key_unbilled: 100k input tokens an hour on the billed days.
    let per_day = 24.0 * mini_cost(100_000, 10_000);
    let oa = FakeOpenAi::start().await;
    Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/v1/organization/costs"))
        .respond_with(CostReport {
            days: days.clone(),
            billed_usd: 1.0,
            unattributed_usd: per_day + 0.25,
        })
        .with_priority(1)
        .mount(&oa.server)
        .await;
    let port = free_port();
    let month_start = {
        use chrono::Datelike;
        DateTime::<Utc>::from_timestamp(today, 0)
            .unwrap()
            .date_naive()
            .with_day(1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let in_month = days.iter().filter(|d| **d >= month_start).count() as f64;
    // A key budget at 60 % of the unbilled key's month-to-date estimate.
    let limit = (per_day * in_month).max(0.01) / 0.6;
    let app = spawn_app_with_lookback(
        "4d",
        &format!(
            "[[sources]]\nname = \"openai-test\"\nprovider = \"openai\"\n\
             admin_key_env = \"TEST_OPENAI_ADMIN_KEY\"\nbase_url = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[budgets]]\nname = \"unbilled-key\"\nkey_id = \"key_unbilled\"\nmonthly_usd = {limit}\nthresholds = [50]\n",
            oa.server.uri()
        ),
    )
    .await;
    oa.add_project("proj_1", false);
    oa.add_key("proj_1", "key_billed", "web", "active", 30);
    oa.add_key("proj_1", "key_unbilled", "batch", "active", 30);
    for d in &days {
        for h in 0..24 {
            oa.add_usage(
                d + h * HOUR,
                oa_row("key_unbilled", MINI, 100_000, 10_000, true),
            );
            oa.add_usage(
                d + h * HOUR,
                oa_row("key_billed", MINI, 50_000, 5_000, true),
            );
        }
    }
    app.cli_ok(&["run", "--once"]).await;

    // The store's answer for the three billed days, whatever today's date.
    let store = keywatch::store::Store::open_existing(&app.db_path())
        .await
        .unwrap();
    let spend = store
        .spend_by_key(HOUR, chrono_tz::Tz::UTC, days[2], today, today)
        .await
        .unwrap();
    store.close().await;
    let of = |key: &str| {
        spend
            .iter()
            .filter(|(s, k, _)| s == "openai-test" && k == key)
            .map(|(_, _, usd)| *usd)
            .sum::<f64>()
    };
    assert!((of("key_billed") - 3.0).abs() < 1e-9, "{spend:?}");
    assert!(
        (of("key_unbilled") - 3.0 * per_day).abs() < 1e-6,
        "the estimate stands where the bill has no row for the key: {spend:?}"
    );
    assert!(
        (of("unattributed") - 0.75).abs() < 1e-6,
        "the unattributed row less what went back to its key: {spend:?}"
    );

    // What the user sees: the key budget and /api/v1/keys, when a billed day is in this month.
    if in_month == 0.0 {
        eprintln!("today is the 1st (UTC): no billed day in this month to check");
        return;
    }
    let budgets: Vec<Value> =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let budgets: Vec<&Value> = budgets.iter().filter(|a| a["rule"] == "budget").collect();
    assert_eq!(budgets.len(), 1, "{budgets:#?}");
    assert!((budgets[0]["observed"].as_f64().unwrap() - per_day * in_month).abs() < 1e-6);
    let log = app.dir.path().join("daemon.log");
    let _daemon = start_daemon_logging(&app, &log, None);
    let (status, body) = get(&format!("http://127.0.0.1:{port}/api/v1/keys")).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<Value> = serde_json::from_str(&body).unwrap();
    let unbilled = keys.iter().find(|k| k["key_id"] == "key_unbilled").unwrap();
    assert!(
        unbilled["spend_mtd_usd"].as_f64().unwrap() >= per_day * in_month - 1e-6,
        "{unbilled}"
    );
}

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
        budget_alerts, 4,
        "50, 75, 90 and 100 % of a tiny budget: {open:#?}"
    );
    assert!(
        digest.body["open_alerts"].as_u64().unwrap() >= 4,
        "the digest counts the alerts of the pass before it: {}",
        digest.body
    );
}
