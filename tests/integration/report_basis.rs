//! One best known cost per report row, with its basis: the provider's bill for the closed UTC
//! days it billed per key, keywatch's estimate for the rest; and a period not over yet compared
//! like for like with the one before.

use serde_json::Value;

use crate::fake_openai::oa_row;
use crate::helpers::{spawn_app_with, this_hour, HOUR};

const DAY: i64 = 86_400;
/// gpt-4o at list prices: 750,000 uncached x $2.50 + 250,000 cached x $1.25 + 100,000 output x
/// $10 per million.
const ROW_USD: f64 = 3.1875;

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

async fn rows(app: &crate::helpers::TestApp, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["report", "--format", "json", "--timezone", "UTC"];
    all.extend(args);
    serde_json::from_str(&app.cli_ok(&all).await).unwrap()
}

#[tokio::test]
async fn a_billed_day_shows_the_bill_today_the_estimate_and_today_is_compared_like_for_like() {
    let (app, oa) = crate::helpers::spawn_with_openai().await;
    oa.add_key("proj_1", "key_b", "billing-bot", "active", 30);
    let now = this_hour();
    let today = now.div_euclid(DAY) * DAY;
    let yesterday = today - DAY;
    let row = oa_row("key_b", "gpt-4o", 1_000_000, 100_000, true);
    // Yesterday: an hour at its start and one at its end, billed at $7 (the estimate is
    // $6.375: a contract, or a price keywatch has wrong). Today: one hour, not billed yet.
    oa.add_usage(yesterday, row.clone());
    oa.add_usage(yesterday + 23 * HOUR, row.clone());
    oa.add_usage(today, row);
    oa.add_cost(yesterday, "key_b", 7.0);
    app.cli_ok(&["run", "--once"]).await;

    let got = rows(&app, &["--by", "key", "--last", "2"]).await;
    assert_eq!(got.len(), 2, "{got:#?}");
    let (before, now_row) = (&got[0], &got[1]);
    assert!(near(before["spend_usd"].as_f64().unwrap(), 7.0), "{before}");
    assert_eq!(before["cost_basis"], "billed");
    assert!(near(before["billed_usd"].as_f64().unwrap(), 7.0));
    assert!(
        near(before["cost_usd"].as_f64().unwrap(), 2.0 * ROW_USD),
        "the estimate stays beside the bill: {before}"
    );
    assert_eq!(before["partial"], false);

    assert!(near(now_row["spend_usd"].as_f64().unwrap(), ROW_USD));
    assert_eq!(now_row["cost_basis"], "estimated");
    assert_eq!(now_row["billed_usd"], Value::Null);
    assert_eq!(now_row["partial"], true);
    // Like for like: yesterday up to this point of the day held its first hour (and its last
    // only after 23:00), estimated, since part of a day is never billed.
    let elapsed = chrono::Utc::now().timestamp() - today;
    let before_to_date = if elapsed > 23 * HOUR {
        2.0 * ROW_USD
    } else {
        ROW_USD
    };
    assert!(
        near(
            now_row["change_usd"].as_f64().unwrap(),
            ROW_USD - before_to_date
        ),
        "compared with yesterday to the same point, not with the whole billed day: {now_row}"
    );

    // The two days as one span: the billed day and today's estimate.
    let since = crate::fake_anthropic::rfc3339(yesterday);
    let both = rows(
        &app,
        &["--by", "source", "--period", "week", "--since", &since],
    )
    .await;
    let spend: f64 = both.iter().map(|r| r["spend_usd"].as_f64().unwrap()).sum();
    let billed: f64 = both.iter().filter_map(|r| r["billed_usd"].as_f64()).sum();
    assert!(near(spend, 7.0 + ROW_USD), "{both:#?}");
    assert!(near(billed, 7.0), "{both:#?}");
    assert_eq!(
        both.last().unwrap()["cost_basis"],
        "estimated",
        "part of the spend is an estimate: {both:#?}"
    );

    // By model the bill cannot be split: every figure is the estimate, and the table says so.
    let by_model = rows(&app, &["--by", "key,model", "--last", "2"]).await;
    assert!(near(
        by_model[0]["spend_usd"].as_f64().unwrap(),
        2.0 * ROW_USD
    ));
    assert_eq!(by_model[0]["cost_basis"], "estimated");
    let table = app
        .cli_ok(&[
            "report",
            "--by",
            "key,model",
            "--last",
            "2",
            "--timezone",
            "UTC",
        ])
        .await;
    assert!(
        table.contains("by model or tier, every figure is an estimate: cost reports carry neither"),
        "{table}"
    );
    let table = app
        .cli_ok(&["report", "--by", "key", "--last", "2", "--timezone", "UTC"])
        .await;
    let label = |t: i64| crate::fake_anthropic::rfc3339(t)[..10].to_owned();
    assert!(
        table.contains("7.00 billed")
            && table.contains(&format!(
                "its change is against {} up to the same point",
                label(yesterday)
            )),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
}

/// An Anthropic organisation whose admin key may read the cost analytics API (beta): yesterday's
/// bill per key lands as billed cost, and what the report bills beyond the keys goes to
/// `unattributed`; refused, keys keep their estimates.
async fn anthropic_day(analytics: bool) -> (crate::helpers::TestApp, Vec<Value>, usize) {
    use crate::fake_anthropic::{cost_line, key_new_shape};
    let app = spawn_app_with("").await;
    app.fake.add_key(key_new_shape(
        "apikey_M",
        "money",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    let yesterday = this_hour().div_euclid(DAY) * DAY - DAY;
    let sonnet = "claude-sonnet-4-20250514";
    app.fake.add_usage(
        yesterday + 3 * HOUR,
        crate::helpers::row(Some("apikey_M"), sonnet, 100_000, 10_000),
    );
    {
        let mut data = app.fake.data.lock().unwrap();
        data.costs.insert(
            yesterday,
            vec![
                cost_line(None, "tokens", Some(sonnet), 4.5),
                cost_line(None, "web_search", None, 0.5),
            ],
        );
        if analytics {
            data.analytics = Some(
                [(
                    yesterday,
                    vec![
                        (Some("apikey_M".to_owned()), 4.0),
                        (Some("apikey_Z".to_owned()), 0.25),
                        (None, 0.5),
                    ],
                )]
                .into(),
            );
        }
    }
    app.cli_ok(&["run", "--once"]).await;
    let got = rows(&app, &["--by", "key", "--last", "2"]).await;
    let asked = app.fake.data.lock().unwrap().analytics_requests;
    (app, got, asked)
}

fn key_row<'a>(rows: &'a [Value], key: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["key_id"] == key && r["partial"] == false)
        .unwrap_or_else(|| panic!("no closed-day row for {key}: {rows:#?}"))
}

#[tokio::test]
async fn anthropic_cost_per_key_from_the_analytics_api_is_billed_and_the_rest_unattributed() {
    let (app, got, asked) = anthropic_day(true).await;
    assert!(asked >= 2, "three rows at two a page: {asked} requests");
    let m = key_row(&got, "apikey_M");
    assert!(near(m["spend_usd"].as_f64().unwrap(), 4.0), "{m}");
    assert_eq!(m["cost_basis"], "billed");
    assert!(
        m["cost_usd"].as_f64().unwrap() > 0.0,
        "the estimate stays beside the bill: {m}"
    );
    // The report bills $5.00; the keys hold $4.25 and the Workbench $0.50: the $0.25 left is
    // unattributed.
    let workbench = key_row(&got, "workbench");
    assert!(
        near(workbench["spend_usd"].as_f64().unwrap(), 0.5),
        "{workbench}"
    );
    let rest = key_row(&got, "unattributed");
    assert!(near(rest["spend_usd"].as_f64().unwrap(), 0.25), "{rest}");
    let z = key_row(&got, "apikey_Z");
    assert!(near(z["spend_usd"].as_f64().unwrap(), 0.25), "{z}");
    let day: f64 = got
        .iter()
        .filter(|r| r["partial"] == false)
        .map(|r| r["spend_usd"].as_f64().unwrap())
        .sum();
    assert!(near(day, 5.0), "the day adds up to the bill: {got:#?}");

    // Refused on a later poll (the beta withdrawn): the cost report is stored again, and the
    // per-key split stored before stays.
    app.fake.data.lock().unwrap().analytics = None;
    app.cli_ok(&["run", "--once"]).await;
    let again = rows(&app, &["--by", "key", "--last", "2"]).await;
    let m = key_row(&again, "apikey_M");
    assert_eq!(m["cost_basis"], "billed", "{m}");
    assert!(near(m["spend_usd"].as_f64().unwrap(), 4.0), "{m}");
}

#[tokio::test]
async fn where_the_analytics_beta_is_refused_anthropic_keys_keep_their_estimates() {
    let (_app, got, _) = anthropic_day(false).await;
    let m = key_row(&got, "apikey_M");
    assert_eq!(m["cost_basis"], "estimated", "{m}");
    assert!(near(
        m["spend_usd"].as_f64().unwrap(),
        m["cost_usd"].as_f64().unwrap()
    ));
    assert!(
        got.iter().all(|r| r["key_id"] != "unattributed"),
        "{got:#?}"
    );
}

#[tokio::test]
async fn a_bucket_read_again_replaces_its_tier_split() {
    use crate::fake_anthropic::{key_new_shape, FakeRow, Tokens};
    let app = spawn_app_with("").await;
    app.fake.add_key(key_new_shape(
        "apikey_T",
        "tiers",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    let row = FakeRow {
        key: Some("apikey_T".to_owned()),
        model: "claude-sonnet-4-20250514".to_owned(),
        tokens: Tokens {
            uncached: 1_000_000,
            ..Tokens::default()
        },
        tier: Some("batch".to_owned()),
        ..FakeRow::default()
    };
    // The current hour, read again by every poll.
    app.fake.add_usage(this_hour(), row);
    app.cli_ok(&["run", "--once"]).await;
    let tiers = |got: &[Value]| -> Vec<(String, f64)> {
        got.iter()
            .map(|r| {
                (
                    r["tier"].as_str().unwrap().to_owned(),
                    r["spend_usd"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let got = rows(&app, &["--by", "tier", "--last", "1"]).await;
    // $3 a million input tokens, half in batch.
    assert_eq!(tiers(&got), vec![("batch".to_owned(), 1.5)], "{got:#?}");

    // The provider now reports the hour as standard traffic: the old split goes.
    app.fake
        .data
        .lock()
        .unwrap()
        .usage
        .values_mut()
        .flatten()
        .for_each(|r| r.tier = None);
    app.cli_ok(&["run", "--once"]).await;
    let got = rows(&app, &["--by", "tier", "--last", "1"]).await;
    assert_eq!(tiers(&got), vec![("standard".to_owned(), 3.0)], "{got:#?}");
}
