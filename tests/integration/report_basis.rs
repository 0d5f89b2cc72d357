//! One best known cost per report row, with its basis: the provider's bill for the closed UTC
//! days it billed per key, keywatch's estimate for the rest; and a period not over yet compared
//! like for like with the one before.

use serde_json::Value;

use crate::fake_openai::{oa_row, FakeOpenAi};
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
    let oa = FakeOpenAi::start().await;
    let app = spawn_app_with(&format!(
        "[[sources]]\nname = \"openai-test\"\nprovider = \"openai\"\n\
         admin_key_env = \"TEST_OPENAI_ADMIN_KEY\"\nbase_url = \"{}\"\n",
        oa.server.uri()
    ))
    .await;
    oa.add_project("proj_1", false);
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
        table.contains("every figure is an estimate: the providers' cost reports carry no model"),
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
