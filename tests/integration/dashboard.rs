//! The JSON API and the dashboard, served by a running daemon.

use std::time::Duration;

use serde_json::Value;

use crate::daemon::{free_port, get, start_daemon};
use crate::fake_anthropic::key_old_shape;
use crate::helpers::{spawn_app_with_lookback, TestApp};

/// A daemon over the detection scenario (a spike, a budget at 80 %, an old key, a used
/// inactive key, a key with a hostile name), with `[http]` on a free port.
async fn serve(extra: &str) -> (TestApp, tokio::process::Child, String) {
    let port = free_port();
    let probe = spawn_app_with_lookback("8d", "").await;
    let limit = crate::detection::seed(&probe);
    drop(probe);
    let app = spawn_app_with_lookback(
        "8d",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n[[budgets]]\nname = \"gateway\"\nkey_id = \"apikey_normal2\"\ndaily_usd = {limit}\nmonthly_usd = {}\n",
            limit * 20.0
        ),
    )
    .await;
    crate::detection::seed(&app);
    app.fake.add_key(key_old_shape(
        "apikey_xss",
        "<script>alert(1)</script>",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    let daemon = start_daemon(&app);
    let base = format!("http://127.0.0.1:{port}");
    // Wait until the first cycle has raised the alerts.
    for _ in 0..100 {
        if let (200, body) = get(&format!("{base}/api/v1/alerts")).await {
            if body.contains("\"spike\"") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (app, daemon, base)
}

async fn json(url: &str) -> (u16, Value) {
    let (status, body) = get(url).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}")),
    )
}

#[tokio::test]
async fn the_api_answers_with_the_numbers_of_the_cli() {
    let (_app, _daemon, base) = serve("").await;

    let (status, keys) = json(&format!("{base}/api/v1/keys")).await;
    assert_eq!(status, 200);
    let spiky = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == "apikey_spiky")
        .unwrap();
    assert_eq!(spiky["name"], "prod-rag-service");
    assert!(spiky["spend_mtd_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(spiky["age_days"], 30);
    // Its newest bucket with tokens (the fake serves usage up to the last hours).
    let last_used = spiky["last_used"].as_str().expect("last_used is set");
    let last_used = chrono::DateTime::parse_from_rfc3339(last_used).unwrap();
    let age = chrono::Utc::now().signed_duration_since(last_used);
    assert!(age < chrono::Duration::days(1), "last used {last_used}");

    let (_, alerts) = json(&format!("{base}/api/v1/alerts?status=firing")).await;
    assert!(alerts
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["rule"] == "spike" && a["version"] == 1));
    let (status, err) = json(&format!("{base}/api/v1/alerts?status=maybe")).await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("maybe"));

    let (status, usage) = json(&format!(
        "{base}/api/v1/usage?key=apikey_spiky&since=12h&width=1h"
    ))
    .await;
    assert_eq!(status, 200);
    assert!(usage.as_array().unwrap().len() >= 11);
    let (status, csv) = get(&format!(
        "{base}/api/v1/usage?key=apikey_spiky&since=12h&width=1h&format=csv"
    ))
    .await;
    assert_eq!(status, 200);
    assert!(
        csv.starts_with("source,bucket_start,bucket_end,model,"),
        "{csv}"
    );
    assert!(csv.lines().count() >= 12, "{csv}");
    let (status, err) = json(&format!("{base}/api/v1/usage")).await;
    assert_eq!((status, err["error"].is_string()), (400, true));
    let (status, err) = json(&format!(
        "{base}/api/v1/usage?key=apikey_spiky&since=yesterday"
    ))
    .await;
    assert_eq!(status, 400, "{err}");

    let (status, report) = json(&format!("{base}/api/v1/report?period=day&by=key")).await;
    assert_eq!(status, 200);
    assert!(report
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["key_id"] == "apikey_spiky"));
    let (_, budgets) = json(&format!("{base}/api/v1/budgets")).await;
    assert_eq!(budgets[0]["budget"], "gateway");
    assert!(budgets[0]["thresholds_crossed"].as_array().unwrap().len() >= 2);
}

#[tokio::test]
async fn with_a_token_everything_but_healthz_needs_it() {
    let (app, _daemon, base) = serve("token_env = \"TEST_HTTP_TOKEN\"").await;
    let _ = app;
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let (status, body) = get(&format!("{base}/api/v1/keys")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(get(&format!("{base}/")).await.0, 401);
    let ok = reqwest::Client::new()
        .get(format!("{base}/api/v1/keys"))
        .bearer_auth("s3cret-dashboard-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test]
async fn a_browser_signs_in_with_the_token_gets_a_strict_cookie_and_signs_out() {
    let (_app, _daemon, base) =
        serve("token_env = \"TEST_HTTP_TOKEN\"\nexternal_url = \"https://keywatch.example.com\"")
            .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let browser_get = |path: &str, cookie: Option<&str>| {
        let mut r = client
            .get(format!("{base}{path}"))
            .header("accept", "text/html,application/xhtml+xml");
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    // A page opened without a session goes to the form, remembering where it was going.
    let r = browser_get("/alerts?rule=spike", None).await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers()["location"],
        "/login?next=%2Falerts%3Frule%3Dspike"
    );
    let form = browser_get("/login?next=%2Falerts", None).await.unwrap();
    assert_eq!(form.status().as_u16(), 200);
    let html = form.text().await.unwrap();
    assert!(html.contains("type=\"password\"") && html.contains("value=\"/alerts\""));

    let login = |token: &str, origin: Option<&str>| {
        let mut r = client
            .post(format!("{base}/login"))
            .form(&[("token", token), ("next", "/alerts")]);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let wrong = login("not-the-token", None).await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("Wrong token."));
    let forged = login("s3cret-dashboard-token", Some("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403, "a cross-site form post");
    assert!(forged.headers().get("set-cookie").is_none());

    let ok = login(
        "s3cret-dashboard-token",
        Some("https://keywatch.example.com"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status().as_u16(), 303);
    assert_eq!(ok.headers()["location"], "/alerts");
    let set = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(part), "{part} missing from {set}");
    }
    assert!(
        !set.contains("s3cret-dashboard-token"),
        "the token is not the cookie"
    );
    let session = set.split(';').next().unwrap().to_owned();
    let page = browser_get("/alerts", Some(&session)).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("action=\"/logout\""));
    // The API takes the session too; scripts keep the bearer header.
    let api = client
        .get(format!("{base}/api/v1/alerts"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 200);
    let forged_cookie = session.replace("v1.", "v1.9");
    assert_eq!(
        browser_get("/", Some(&forged_cookie))
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );

    let out = client
        .post(format!("{base}/logout"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn pages_render_charts_alerts_and_escape_provider_text() {
    let (_app, _daemon, base) = serve("").await;

    let (status, overview) = get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(overview.contains("id=\"spend-per-day\""));
    assert!(overview.contains("data-series=\"prod-rag-service\""));
    assert!(overview.contains("gateway"), "budgets are listed");
    assert!(
        !overview.contains("<script>alert(1)</script>"),
        "provider text is escaped"
    );

    let (status, key) = get(&format!("{base}/keys/apikey_spiky?source=anthropic-test")).await;
    assert_eq!(status, 200);
    assert!(
        key.contains("data-series=\"baseline\"") && key.contains("data-series=\"spike threshold\"")
    );
    assert!(
        key.contains("class=\"alert-marker\" data-rule=\"spike\""),
        "the spike is marked on the chart"
    );
    assert!(
        key.contains("Last 2h, per minute")
            && key.contains("id=\"key-minutes\"")
            && key.contains("data-series=\"minute-level\""),
        "the recent minute stream and the minute check's level are drawn"
    );
    let (_, xss) = get(&format!("{base}/keys/apikey_xss")).await;
    assert!(
        xss.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !xss.contains("<script>alert")
    );

    let (_, alerts) = get(&format!("{base}/alerts?rule=spike")).await;
    assert!(alerts.contains("data-rule=\"spike\"") && !alerts.contains("data-rule=\"key_age\""));
}

/// Headless Chromium loads the overview and a key page from the running daemon, the DOM it
/// built holds the charts and the spike marker, and screenshots are kept as artifacts
/// (`target/browser-artifacts/`). `.ci/run` installs chromium and runs this.
#[tokio::test]
#[ignore = "needs chromium"]
async fn browser_shows_the_overview_and_the_key_page_with_the_spike() {
    let (_app, _daemon, base) = serve("").await;
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let chromium = |args: Vec<String>| {
        let mut cmd = std::process::Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args);
        cmd.output().expect("chromium runs")
    };
    for (name, path, series) in [
        ("overview", "/", 5),
        ("key", "/keys/apikey_spiky?source=anthropic-test", 3),
    ] {
        let url = format!("{base}{path}");
        let dom = chromium(vec!["--dump-dom".into(), url.clone()]);
        let dom = String::from_utf8_lossy(&dom.stdout);
        assert!(dom.contains("<svg"), "{name}: no chart in the DOM");
        assert!(
            dom.matches("data-series=").count() >= series,
            "{name}: expected {series} series"
        );
        if name == "key" {
            assert!(dom.contains("alert-marker"), "the spike is marked");
        }
        let shot = artifacts.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        chromium(vec![format!("--screenshot={}", shot.display()), url]);
        assert!(
            shot.metadata().map(|m| m.len() > 1_000).unwrap_or(false),
            "{name}: no screenshot"
        );
    }
}

#[tokio::test]
async fn the_key_list_searches_filters_sorts_and_the_overview_shows_every_budget_period() {
    let (app, _daemon, base) = serve("timezone = \"Europe/Berlin\"").await;

    let (status, all) = get(&format!("{base}/keys")).await;
    assert_eq!(status, 200);
    assert!(all.contains("6 of 6 keys"), "{all}");
    // Sorted by spend today, busiest first: the spiky key leads.
    let first = all.split("data-key=\"").nth(1).unwrap_or_default();
    assert!(first.starts_with("apikey_spiky"), "{all}");
    let (_, found) = get(&format!("{base}/keys?q=GATEWAY")).await;
    assert!(found.contains("1 of 1 keys (filtered from 6)"), "{found}");
    assert!(found.contains("data-key=\"apikey_normal2\""));
    let (_, inactive) = get(&format!("{base}/keys?status=inactive")).await;
    assert!(
        inactive.contains("data-key=\"apikey_inactive\"")
            && inactive.matches("data-key=").count() == 1
    );
    let (_, by_age) = get(&format!("{base}/keys?sort=age")).await;
    let oldest = by_age.split("data-key=\"").nth(1).unwrap_or_default();
    assert!(oldest.starts_with("apikey_old"), "{by_age}");
    let (_, none) = get(&format!("{base}/keys?q=no-such-key")).await;
    assert!(none.contains("No key matches."));
    let (status, _) = get(&format!("{base}/keys/no-such-key")).await;
    assert_eq!(status, 404);

    // Daily and monthly budget rows, axes with titles in the page's zone, data as of.
    app.cli_ok(&[
        "silence",
        "--key",
        "apikey_old",
        "--for",
        "2h",
        "--reason",
        "rotating it this week",
    ])
    .await;
    let (_, overview) = get(&format!("{base}/")).await;
    assert!(overview.contains("data-period=\"day\"") && overview.contains("data-period=\"month\""));
    assert!(overview.contains(">today<") && overview.contains(">this month<"));
    assert!(overview.contains(">USD per day<"), "a y axis title");
    assert!(overview.contains("day (Europe/Berlin), one bar per day"));
    assert!(overview.contains("class=\"zero\""), "a zero line");
    assert!(overview.contains("Data as of"));
    assert!(
        !overview.contains("class=\"banner\""),
        "no source is failing"
    );
    assert!(
        overview.contains("rotating it this week"),
        "the silence is listed"
    );
    let (_, api) = get(&format!("{base}/api/v1/silences")).await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let cli: serde_json::Value =
        serde_json::from_str(&app.cli_ok(&["silences", "--format", "json"]).await).unwrap();
    assert_eq!(api, cli, "the API lists silences as the CLI does");
    let (_, budgets) = get(&format!("{base}/api/v1/budgets")).await;
    let budgets: serde_json::Value = serde_json::from_str(&budgets).unwrap();
    let periods = budgets[0]["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 2, "the day and the month: {budgets:#}");
    assert_eq!(periods[0]["period"], "day");
    let (_, key) = get(&format!("{base}/keys/apikey_spiky?source=anthropic-test")).await;
    assert!(key.contains(">USD per bucket<") && key.contains("time (Europe/Berlin), one bar = 1h"));
    assert!(key.contains("UTC)"), "hover text has UTC beside the zone");
    // The incident view: burn now against normal, and the alert's story.
    assert!(
        key.contains("Latest bucket with usage: <b>$") && key.contains("× its normal"),
        "{key}"
    );
    assert!(
        key.contains("<h2>What happened</h2>") && key.contains(" fired</li>"),
        "{key}"
    );
    assert!(key.contains("Window: ") && key.contains("window=90d"));
    // Drill-down: a key's day on the overview opens that day's hours on its page.
    let link = overview
        .split("<a href=\"/keys/apikey_spiky?source=anthropic-test&amp;day=")
        .nth(1)
        .expect("the spiky key's days link to their hours");
    let day = &link[..10];
    let (status, hours) = get(&format!(
        "{base}/keys/apikey_spiky?source=anthropic-test&day={day}"
    ))
    .await;
    assert_eq!(status, 200);
    assert!(
        hours.contains(&format!("per bucket, on {day} (Europe/Berlin)")),
        "{hours}"
    );
    let wide = hours.split("class=\"chart narrow\"").next().unwrap();
    let bars = wide
        .split("id=\"key-usage\"")
        .nth(1)
        .unwrap()
        .matches("<rect")
        .count();
    assert!(bars <= 24, "one bar per hour of the day: {bars}");
    let (status, _) = get(&format!("{base}/keys/apikey_spiky?day=yesterday")).await;
    assert_eq!(status, 400);

    // The provider stops answering for good: a banner says which source and since when.
    app.fake.server.reset().await;
    app.age_poll_state(3_600).await;
    let (_, stale) = get(&format!("{base}/alerts")).await;
    assert!(
        stale.contains("class=\"banner\"") && stale.contains("anthropic-test"),
        "{stale}"
    );
}

/// The dashboard in headless Chromium, driven by `tests/browser/dashboard.mjs` (playwright-core)
/// at 1400 px and 390 px: sign-in and a wrong token refused, no horizontal overflow on any
/// page, legible chart axes, key search, sign-out. Screenshots land in
/// `target/browser-artifacts/`. `.ci/run` installs chromium and the script's dependencies.
#[tokio::test]
#[ignore = "needs chromium and node"]
async fn browser_at_laptop_and_phone_width_signs_in_without_overflow_with_axes_and_search() {
    let (_app, _daemon, base) =
        serve("token_env = \"TEST_HTTP_TOKEN\"\ntimezone = \"Europe/Berlin\"").await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "run `npm ci` in tests/browser first (.ci/run does)"
    );
    let chromium =
        std::env::var("KEYWATCH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let out = tokio::process::Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(&dir)
        .env("BASE", &base)
        .env("TOKEN", "s3cret-dashboard-token")
        .env("CHROMIUM", chromium)
        .env("ARTIFACTS", root.join("target/browser-artifacts"))
        .output()
        .await
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "{report}");
}

#[tokio::test]
async fn the_reports_page_shows_the_cli_table_and_downloads_the_same_csv() {
    let (app, _daemon, base) = serve("").await;
    let (status, html) = get(&format!("{base}/reports?period=day&by=key&last=3")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("id=\"report\"") && html.contains("prod-rag-service"),
        "{html}"
    );
    assert!(html.contains("format=csv"), "a CSV download link");
    let (status, csv) = get(&format!(
        "{base}/api/v1/report?period=day&by=key&last=3&format=csv"
    ))
    .await;
    assert_eq!(status, 200);
    let cli = app
        .cli_ok(&[
            "report", "--period", "day", "--by", "key", "--last", "3", "--format", "csv",
        ])
        .await;
    assert_eq!(csv, cli, "the download is what the CLI writes");
    let (status, bad) = get(&format!("{base}/reports?period=fortnight")).await;
    assert_eq!(status, 400);
    assert!(bad.contains("use day, week or month"), "{bad}");
}
