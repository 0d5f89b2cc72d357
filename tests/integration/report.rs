//! `keywatch report` against hand-computed totals of what the fake served.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::fake_anthropic::key_old_shape;
use crate::helpers::{row, spawn_app_with_lookback, this_hour, TestApp, HOUR};

const SONNET: &str = "claude-sonnet-4-20250514";

/// USD of `row(…, uncached, output)` on Sonnet 4 (see helpers::row for the cache classes).
fn cost(uncached: i64, output: i64) -> f64 {
    (uncached as f64 * 3.0
        + (uncached * 3) as f64 * 0.3
        + (uncached / 2) as f64 * 3.75
        + (uncached / 4) as f64 * 6.0
        + output as f64 * 15.0)
        / 1e6
}

/// Three days of hourly usage on two keys; returns what was served: (hour, key, usd).
fn seed(app: &TestApp) -> Vec<(i64, &'static str, f64)> {
    app.fake.add_key(key_old_shape(
        "apikey_a",
        "alpha",
        "active",
        "2026-10-01T00:00:00Z",
        None,
    ));
    app.fake.add_key(key_old_shape(
        "apikey_b",
        "beta",
        "active",
        "2026-10-01T00:00:00Z",
        Some("wrkspc_b"),
    ));
    let mut served = Vec::new();
    for h in 0..72 {
        let t = this_hour() - h * HOUR;
        let (ua, ub) = (1_000 + h * 37, 5_000 + (h % 5) * 999);
        app.fake
            .add_usage(t, row(Some("apikey_a"), SONNET, ua, ua / 3));
        served.push((t, "apikey_a", cost(ua, ua / 3)));
        if h % 3 == 0 {
            app.fake
                .add_usage(t, row(Some("apikey_b"), SONNET, ub, ub / 5));
            served.push((t, "apikey_b", cost(ub, ub / 5)));
        }
    }
    served
}

/// Per (local day, key id) → USD, from a `--by key --format csv` report.
fn csv_totals(csv: &str) -> BTreeMap<(String, String), f64> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column"))
    };
    let (period, key, usd) = (col("period"), col("key_id"), col("cost_usd"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                (f[period].to_owned(), f[key].to_owned()),
                f[usd].parse::<f64>().unwrap(),
            )
        })
        .collect()
}

fn expected(
    served: &[(i64, &str, f64)],
    tz: Tz,
    since_day: &str,
) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for (t, key, usd) in served {
        let day = DateTime::<Utc>::from_timestamp(*t, 0)
            .unwrap()
            .with_timezone(&tz)
            .format("%Y-%m-%d")
            .to_string();
        if day.as_str() >= since_day {
            *out.entry((day, key.to_string())).or_insert(0.0) += usd;
        }
    }
    out
}

async fn assert_report_matches(app: &TestApp, served: &[(i64, &str, f64)], tz: &str) {
    let zone: Tz = tz.parse().unwrap();
    let csv = app
        .cli_ok(&[
            "report",
            "--period",
            "day",
            "--by",
            "key",
            "--format",
            "csv",
            "--last",
            "2",
            "--timezone",
            tz,
        ])
        .await;
    let got = csv_totals(&csv);
    let first_day = got.keys().map(|(d, _)| d.clone()).min().expect("rows");
    let want = expected(served, zone, &first_day);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{csv}"
    );
    for (k, usd) in &want {
        assert!(
            (got[k] - usd).abs() < 0.005,
            "{k:?}: report {} vs served {usd} (to the cent)",
            got[k]
        );
    }
}

#[tokio::test]
async fn daily_report_by_key_matches_served_usage_times_prices_to_the_cent() {
    let app = spawn_app_with_lookback("4d", "").await;
    let served = seed(&app);
    app.cli_ok(&["run", "--once"]).await;

    assert_report_matches(&app, &served, "UTC").await;
    assert_report_matches(&app, &served, "America/New_York").await;

    let table = app
        .cli_ok(&["report", "--by", "key,model", "--last", "2"])
        .await;
    assert!(
        table.lines().all(|l| l.chars().count() <= 100),
        "fits 100 columns:\n{table}"
    );
    assert!(
        table.contains("alpha") && table.contains("total"),
        "{table}"
    );
    let by_ws = app
        .cli_ok(&[
            "report",
            "--by",
            "workspace",
            "--format",
            "json",
            "--last",
            "1",
        ])
        .await;
    let rows: serde_json::Value = serde_json::from_str(&by_ws).unwrap();
    let shares: f64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["share_pct"].as_f64().unwrap())
        .sum();
    assert!(
        (shares - 100.0).abs() < 1e-6,
        "shares add up to 100 %: {rows}"
    );
}

#[tokio::test]
async fn export_writes_an_evidence_folder_that_sha256sum_verifies() {
    let app = spawn_app_with_lookback("4d", "").await;
    seed(&app);
    app.cli_ok(&["run", "--once"]).await;
    let out = app.dir.path().join("evidence-apikey_a");

    let said = app
        .cli_ok(&[
            "export",
            "--key",
            "apikey_a",
            "--since",
            "3d",
            "--out",
            out.to_str().unwrap(),
        ])
        .await;

    assert!(said.contains("sha256sum -c SHA256SUMS"), "{said}");
    for file in [
        "key.json",
        "usage.csv",
        "alerts.json",
        "summary.txt",
        "SHA256SUMS",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("key.json")).unwrap()).unwrap();
    assert_eq!(key[0]["name"], "alpha");
    assert_eq!(key[0]["partial_key_hint"], "sk-ant-api03-R2D...igAA");
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        summary.contains("peak bucket:") && summary.contains("total cost:"),
        "{summary}"
    );
    let usage = std::fs::read_to_string(out.join("usage.csv")).unwrap();
    assert_eq!(
        usage.lines().count(),
        1 + 72,
        "a header and one row per hour served in 3 days"
    );

    // Evidence is never overwritten.
    let again = app
        .cli(
            &[
                "export",
                "--key",
                "apikey_a",
                "--since",
                "3d",
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
}

#[tokio::test]
async fn report_forecast_projects_each_monthly_budget() {
    let app = crate::helpers::spawn_app_with_lookback(
        "4d",
        "[[budgets]]\nname = \"org-month\"\nmonthly_usd = 1000.0\n",
    )
    .await;
    let served = seed(&app);
    app.cli_ok(&["run", "--once"]).await;

    let json = app
        .cli_ok(&["report", "--forecast", "--format", "json"])
        .await;
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let f = &rows[0];
    assert_eq!(f["budget"], "org-month");
    let month_start = {
        use chrono::Datelike;
        Utc::now()
            .date_naive()
            .with_day(1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let spent: f64 = served
        .iter()
        .filter(|(t, _, _)| *t >= month_start)
        .map(|(_, _, usd)| usd)
        .sum();
    assert!(
        (f["spent_usd"].as_f64().unwrap() - spent).abs() < 0.005,
        "{f}"
    );
    assert!(f["projected_usd"].as_f64().unwrap() >= f["spent_usd"].as_f64().unwrap());
    assert!(f["daily_rate_usd"].as_f64().unwrap() >= 0.0);
    let table = app.cli_ok(&["report", "--forecast"]).await;
    assert!(
        table.contains("org-month") && table.contains("median daily spend"),
        "{table}"
    );
}

#[tokio::test]
async fn reconcile_compares_with_the_cost_report_and_flags_an_unpriced_model() {
    use crate::fake_anthropic::cost_line;
    let app = spawn_app_with_lookback("4d", "").await;
    let served = seed(&app);
    let today = this_hour().div_euclid(86_400) * 86_400;
    let (d1, d2) = (today - 86_400, today - 2 * 86_400);
    let day_total = |d: i64| {
        served
            .iter()
            .filter(|(t, _, _)| *t >= d && *t < d + 86_400)
            .map(|(_, _, u)| u)
            .sum::<f64>()
    };
    // Yesterday also saw a model keywatch has no price for; the bill includes it.
    app.fake.add_usage(
        d1 + 5 * HOUR,
        row(Some("apikey_a"), "claude-nova-9", 100_000, 10_000),
    );
    {
        let mut data = app.fake.data.lock().unwrap();
        data.costs.insert(
            d1,
            vec![
                cost_line(None, "tokens", Some(SONNET), day_total(d1)),
                cost_line(None, "tokens", Some("claude-nova-9"), 2.0),
            ],
        );
        data.costs.insert(
            d2,
            vec![cost_line(
                Some("wrkspc_b"),
                "tokens",
                Some(SONNET),
                day_total(d2) * 1.01,
            )],
        );
    }
    app.cli_ok(&["run", "--once"]).await;

    let json = app
        .cli_ok(&["report", "--reconcile", "--format", "json", "--last", "3"])
        .await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let day = |t: i64| crate::fake_anthropic::rfc3339(t)[..10].to_owned();
    let yesterday = rows.iter().find(|r| r["day"] == day(d1)).unwrap();
    assert!(
        (yesterday["billed_usd"].as_f64().unwrap() - (day_total(d1) + 2.0)).abs() < 1e-3,
        "{yesterday}"
    );
    assert_eq!(yesterday["flagged"], true);
    assert!(
        yesterday["likely_cause"]
            .as_str()
            .unwrap()
            .contains("no price for model claude-nova-9"),
        "{yesterday}"
    );
    let before = rows.iter().find(|r| r["day"] == day(d2)).unwrap();
    assert_eq!(
        before["flagged"], false,
        "1 % is within the 5 % tolerance: {before}"
    );
    assert!(
        (before["difference_pct"].as_f64().unwrap() + 0.99).abs() < 0.05,
        "{before}"
    );

    let table = app.cli_ok(&["report", "--reconcile", "--last", "3"]).await;
    assert!(
        table.contains("FLAG: no price for model claude-nova-9"),
        "{table}"
    );
}
