//! Issue #13 items 7, 8 and 26 (reports, billed spend per key, digest messages), as a user
//! sees them: the real binary, real HTTP, a fake OpenAI cost report, real receivers.

mod billing;
mod digests;

use std::collections::BTreeSet;

use chrono::DateTime;
use serde_json::Value;

use crate::daemon::{free_port, get, start_daemon_logging};
use crate::helpers::{spawn_app_with, TestApp, HOUR};

const DAY: i64 = 86_400;
const SONNET: &str = "claude-sonnet-4-20250514";

fn ts(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

/// One priced bucket at 12:00 UTC on every day from `first` to `last` (RFC 3339 days).
async fn seed_daily(app: &TestApp, first: &str, last: &str) {
    let store = app.open_store().await;
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
    // --since and --until: the periods holding the first and the last second (in UTC: without
    // --timezone the report would use [http] timezone, Berlin).
    let rows = cli_report(
        &app,
        &[
            "--timezone",
            "UTC",
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
        // One zone rule: the CLI without --timezone reports in [http] timezone too.
        let cli = cli_report(
            &app,
            &["--period", period, "--until", "2026-11-30T12:00:00Z"],
        )
        .await;
        assert_eq!(cli, rows, "{url}: the CLI's default zone is the API's");
    }
    // A date is that day's midnight in the report's zone, in the CLI and the API alike.
    let cli = cli_report(
        &app,
        &[
            "--period",
            "day",
            "--since",
            "2026-11-28",
            "--until",
            "2026-11-30T12:00:00Z",
        ],
    )
    .await;
    assert_eq!(labels(&cli), ["2026-11-28", "2026-11-29", "2026-11-30"]);
    let (status, body) = get(&format!(
        "{base}?period=day&since=2026-11-28&until=2026-11-30T12:00:00Z"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap(), cli);
    let (status, body) = get(&format!("{base}?period=month&since=1d&until=2d")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("since must be before until"), "{body}");
    // Every bad parameter is a JSON error naming it, with the bound where there is one.
    for (query, parameter, maximum) in [
        ("period=month&last=121", "last", Some(Value::from(120))),
        ("period=day&last=abc", "last", Some(Value::from(400))),
        ("period=week&last=0", "last", Some(Value::from(260))),
        ("since=3651d", "since", Some(Value::from("3650d"))),
        ("until=soon", "until", None),
    ] {
        let (status, body) = get(&format!("{base}?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{query}: {body}"));
        assert_eq!(v["parameter"], parameter, "{query}: {body}");
        if let Some(max) = maximum {
            assert_eq!(v["maximum"], max, "{query}: {body}");
        }
    }
}
