//! Money right (#17): each usage row is priced at the rates its service tier, inference geo and
//! speed set, with web searches on top, and a bucket's rows add up to what the provider bills.

use crate::fake_anthropic::{key_new_shape, FakeRow, Tokens};
use crate::fake_openai::oa_row;
use crate::helpers::{spawn_app_with, this_hour, HOUR};

const OPUS_46: &str = "claude-opus-4-6";
const SONNET_4: &str = "claude-sonnet-4-20250514";

fn opus_row(tier: Option<&str>, geo: Option<&str>, speed: Option<&str>) -> FakeRow {
    FakeRow {
        key: Some("apikey_M".to_owned()),
        model: OPUS_46.to_owned(),
        // $5 + $2.50 at Opus 4.6's standard $5 / $25 per million.
        tokens: Tokens {
            uncached: 1_000_000,
            output: 100_000,
            ..Tokens::default()
        },
        tier: tier.map(str::to_owned),
        geo: geo.map(str::to_owned),
        speed: speed.map(str::to_owned),
        web_searches: 0,
    }
}

/// The key the Anthropic tests use, `apikey_M`, in the fake's listing.
fn add_money_key(app: &crate::helpers::TestApp) {
    app.fake.add_key(key_new_shape(
        "apikey_M",
        "money",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
}

fn cents(usd: Option<f64>) -> i64 {
    (usd.expect("a priced row") * 100.0).round() as i64
}

#[tokio::test]
async fn batch_us_only_fast_mode_and_web_searches_are_priced_at_their_own_rates() {
    let app = spawn_app_with("").await;
    add_money_key(&app);
    let hour = this_hour() - 5 * HOUR;
    // One key's hour of Opus 4.6 as four rows: standard, batch (half), US-only (1.1x) and
    // fast mode (6x).
    app.fake.add_usage(hour, opus_row(None, None, None));
    app.fake
        .add_usage(hour, opus_row(Some("batch"), None, None));
    app.fake.add_usage(hour, opus_row(None, Some("us"), None));
    app.fake.add_usage(hour, opus_row(None, None, Some("fast")));
    // The documented example row: 10,000 input and 200 output tokens of Sonnet 4 with ten web
    // searches is $0.033 of tokens and $0.10 of searches.
    app.fake.add_usage(
        hour,
        FakeRow {
            key: Some("apikey_M".to_owned()),
            model: SONNET_4.to_owned(),
            tokens: Tokens {
                uncached: 10_000,
                output: 200,
                ..Tokens::default()
            },
            web_searches: 10,
            ..FakeRow::default()
        },
    );

    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty(), "{report:?}");

    let rows = app.stored_rows().await;
    let opus: Vec<_> = rows.iter().filter(|r| r.model == OPUS_46).collect();
    assert_eq!(
        opus.len(),
        1,
        "the four rows are one stored bucket: {rows:#?}"
    );
    assert_eq!(opus[0].tokens.uncached, 4_000_000);
    assert_eq!(opus[0].tokens.output, 400_000);
    // 7.50 + 3.75 + 8.25 + 45.00; priced as one standard row it was 30.00.
    assert_eq!(cents(opus[0].cost_usd), 6_450);
    let sonnet: Vec<_> = rows.iter().filter(|r| r.model == SONNET_4).collect();
    assert_eq!(sonnet.len(), 1);
    assert_eq!(
        (sonnet[0].cost_usd.unwrap() * 1000.0).round() as i64,
        133,
        "$0.033 of tokens and $0.10 of web searches"
    );

    // What finance reads: the key's spend in `history`.
    let history = app
        .cli_ok(&[
            "history", "--key", "apikey_M", "--since", "1d", "--format", "csv",
        ])
        .await;
    let total: f64 = history
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(12).and_then(|c| c.parse::<f64>().ok()))
        .sum();
    assert!(
        (total - 64.633).abs() < 0.005,
        "history total {total}: {history}"
    );

    // Finance's split by tier: the price classes apart, standard the rest.
    let json = app
        .cli_ok(&[
            "report",
            "--by",
            "tier",
            "--since",
            "1d",
            "--format",
            "json",
            "--timezone",
            "UTC",
        ])
        .await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let tier = |t: &str| -> i64 {
        let usd: f64 = rows
            .iter()
            .filter(|r| r["tier"] == t)
            .map(|r| r["spend_usd"].as_f64().unwrap())
            .sum();
        (usd * 1000.0).round() as i64
    };
    assert_eq!(tier("standard"), 7_633, "{json}");
    assert_eq!(tier("batch"), 3_750, "{json}");
    assert_eq!(tier("standard/us"), 8_250, "{json}");
    assert_eq!(tier("standard/fast"), 45_000, "{json}");
    assert!(rows.iter().all(|r| r["cost_basis"] != "billed"));
}

#[tokio::test]
async fn openai_batch_and_flex_rows_cost_half_of_standard() {
    let (app, oa) = crate::helpers::spawn_with_openai().await;
    oa.add_key("proj_1", "key_b", "batcher", "active", 30);
    let hour = this_hour() - 5 * HOUR;
    // gpt-4o: $2.50 input, $1.25 cached, $10 output per million. 1M input (a quarter cached)
    // and 100k output is 750,000 x 2.5 + 250,000 x 1.25 + 100,000 x 10 = $3.1875 standard.
    let standard = oa_row("key_b", "gpt-4o", 1_000_000, 100_000, true);
    oa.add_usage(hour, standard.clone());
    oa.add_usage(
        hour,
        crate::fake_openai::OaRow {
            batch: true,
            ..standard.clone()
        },
    );
    oa.add_usage(
        hour,
        crate::fake_openai::OaRow {
            tier: Some("flex".to_owned()),
            ..standard
        },
    );

    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty(), "{report:?}");

    let rows = app.stored_rows().await;
    let row: Vec<_> = rows.iter().filter(|r| r.key_id == "key_b").collect();
    assert_eq!(row.len(), 1, "{rows:#?}");
    // 3.1875 + 1.59375 + 1.59375; priced as one standard row it was 9.5625.
    assert_eq!((row[0].cost_usd.unwrap() * 10_000.0).round() as i64, 63_750);
}

/// An organisation whose admin key is refused the fast-mode beta still has its usage read: the
/// page is asked again without grouping by speed, and so are the later pages of the process. Fast-mode usage is
/// then priced at standard rates; batch and US-only are still priced at theirs.
#[tokio::test]
async fn usage_is_read_without_the_speed_grouping_where_the_fast_mode_beta_is_refused() {
    let app = spawn_app_with("").await;
    app.fake.data.lock().unwrap().refuse_fast_mode_beta = true;
    add_money_key(&app);
    let hour = this_hour() - 5 * HOUR;
    app.fake
        .add_usage(hour, opus_row(Some("batch"), None, None));
    app.fake
        .add_usage(hour, opus_row(None, Some("us"), Some("fast")));

    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty(), "{report:?}");
    let rows = app.stored_rows().await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    // 3.75 (batch) + 8.25 (US-only; fast mode unseen, so standard speed).
    assert_eq!(cents(rows[0].cost_usd), 1_200);

    let (with_beta, without): (Vec<_>, Vec<_>) = app
        .fake
        .server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path().ends_with("usage_report/messages"))
        .partition(|r| r.headers.get("anthropic-beta").is_some());
    assert_eq!(with_beta.len(), 1, "asked once with the beta, refused");
    assert!(
        without
            .iter()
            .all(|r| !r.url.query().unwrap_or("").contains("speed")),
        "then read without grouping by speed, in this poll and after"
    );
    assert!(!without.is_empty());
}

/// Usage on a model without a price is never $0 in silence: the `unpriced_usage` rule names it,
/// the budget alert says its dollars are a floor and how many tokens it leaves out, and the
/// report marks the estimate as a floor.
#[tokio::test]
async fn an_unpriced_model_is_a_floor_in_the_budget_alert_and_the_report() {
    const NEW: &str = "claude-nova-9";
    let app =
        spawn_app_with("[[budgets]]\nname = \"team-day\"\ndaily_usd = 8.0\nthresholds = [50]\n")
            .await;
    app.fake.add_key(key_new_shape(
        "apikey_U",
        "unpriced",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    let now = this_hour();
    // $4.50 of Sonnet 4 this hour (over half the $8 daily budget), and a model without a price
    // this hour and in the bucket the rules judge.
    app.fake.add_usage(
        now,
        FakeRow {
            key: Some("apikey_U".to_owned()),
            model: SONNET_4.to_owned(),
            tokens: Tokens {
                uncached: 1_000_000,
                output: 100_000,
                ..Tokens::default()
            },
            ..FakeRow::default()
        },
    );
    for t in [now, now - 4 * HOUR] {
        app.fake.add_usage(
            t,
            FakeRow {
                key: Some("apikey_U".to_owned()),
                model: NEW.to_owned(),
                tokens: Tokens {
                    uncached: 700_000,
                    ..Tokens::default()
                },
                ..FakeRow::default()
            },
        );
    }

    app.cli_ok(&["run", "--once"]).await;

    let alerts: Vec<serde_json::Value> =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let of = |rule: &str| -> Vec<&serde_json::Value> {
        alerts.iter().filter(|a| a["rule"] == rule).collect()
    };
    let unpriced = of("unpriced_usage");
    assert_eq!(unpriced.len(), 1, "{alerts:#?}");
    assert!(unpriced[0]["summary"].as_str().unwrap().contains(NEW));
    let budget = of("budget");
    assert_eq!(budget.len(), 1, "{alerts:#?}");
    assert_eq!(budget[0]["observed"], 4.5, "the priced dollars only");
    // The budget's day is today in UTC: the judged bucket's row counts when it is today too.
    let today = now.div_euclid(86_400) * 86_400;
    let in_today = [now, now - 4 * HOUR]
        .iter()
        .filter(|t| **t >= today)
        .count();
    let summary = budget[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!(
            "The spend is a floor: {} tokens on claude-nova-9 without a price",
            700_000 * in_today
        )),
        "{summary}"
    );

    let table = app
        .cli_ok(&["report", "--by", "key", "--since", "1d"])
        .await;
    assert!(
        table.contains(">=4.50") && table.contains("tokens on models without a price are left out"),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
    let json = app
        .cli_ok(&["report", "--by", "key", "--since", "1d", "--format", "json"])
        .await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let today = rows.last().expect("today's row");
    assert_eq!(today["cost_basis"], "floor", "{json}");
    assert_eq!(today["currency"], "USD");
    assert_eq!(today["partial"], true, "today is not over");

    // The evidence export's summary says its total is a floor, naming the model.
    let out = app.dir.path().join("evidence");
    app.cli_ok(&[
        "export",
        "--key",
        "apikey_U",
        "--since",
        "1d",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        summary.contains("total cost:    at least $4.5000") && summary.contains("on claude-nova-9"),
        "{summary}"
    );
}

/// OpenAI audio tokens are priced at their own rates (they are part of the totals), and the
/// embeddings report's usage is stored beside completions, priced per token.
#[tokio::test]
async fn openai_audio_tokens_and_embeddings_are_priced_to_the_cent() {
    let (app, oa) = crate::helpers::spawn_with_openai().await;
    oa.add_key("proj_1", "key_v", "voice", "active", 30);
    let hour = this_hour() - 5 * HOUR;
    // 1M input (250k cached) and 500k output on gpt-realtime, of which 400k input and 200k
    // output are audio: text 350k x $4 + 250k x $0.40 + 300k x $16 = $6.30, audio
    // 400k x $32 + 200k x $64 = $25.60.
    oa.add_usage(
        hour,
        crate::fake_openai::OaRow {
            audio_in: 400_000,
            audio_out: 200_000,
            ..oa_row("key_v", "gpt-realtime-2025-08-28", 1_000_000, 500_000, true)
        },
    );
    // Embeddings: 5M tokens of 3-small ($0.10) and 2M of 3-large ($0.26).
    oa.add_embeddings(hour, "key_v", "text-embedding-3-small", 5_000_000, 40);
    oa.add_embeddings(hour, "key_v", "text-embedding-3-large", 2_000_000, 10);

    let report = app.run_once().await;
    assert!(report.failed_sources.is_empty(), "{report:?}");

    let rows = app.stored_rows().await;
    let cost_of = |model: &str| {
        let r: Vec<_> = rows
            .iter()
            .filter(|r| r.key_id == "key_v" && r.model == model)
            .collect();
        assert_eq!(r.len(), 1, "{model}: {rows:#?}");
        cents(r[0].cost_usd)
    };
    assert_eq!(cost_of("gpt-realtime-2025-08-28"), 3_190);
    assert_eq!(cost_of("text-embedding-3-small"), 10);
    assert_eq!(cost_of("text-embedding-3-large"), 26);
    let day_total: i64 = rows
        .iter()
        .filter(|r| r.key_id == "key_v")
        .map(|r| cents(r.cost_usd))
        .sum();
    assert_eq!(day_total, 3_226, "the key's dollars for the day");
}

/// Sets `[poll]` keys in the test app's config.
fn set_poll(app: &crate::helpers::TestApp, keys: &str) {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let text = text.replace(
        "retry_backoff = \"10ms\"",
        &format!("retry_backoff = \"10ms\"\n{keys}"),
    );
    std::fs::write(&app.config_path, text).unwrap();
}

/// Where the re-read of late usage stands: its position (`cursor`) while one is under way, and
/// when the last one ended (`last_success_at`).
async fn late_state(app: &crate::helpers::TestApp) -> keywatch::store::PollState {
    let store = app.store().await;
    let state = store
        .poll_state("anthropic-test", "late:3600")
        .await
        .unwrap();
    store.close().await;
    state
}

/// Polls until a re-read of late usage has ended (a slice a poll), at most `n` polls.
async fn until_reread_ends(app: &crate::helpers::TestApp, n: usize) {
    let ended = late_state(app).await.last_success_at;
    for _ in 0..n {
        let report = app.run_once().await;
        assert!(report.failed_sources.is_empty(), "{report:?}");
        if late_state(app).await.last_success_at != ended {
            return;
        }
    }
    panic!("the re-read did not end within {n} polls");
}

/// A row the provider publishes after the bucket settled (here 30 hours late) lands with the
/// next re-read of `poll.late_window`, read a slice a poll, and `report --reconcile` shows how
/// much arrived late on its day; with the re-read off it is never read.
#[tokio::test]
async fn usage_published_after_its_bucket_settled_lands_with_the_late_reread() {
    for (late_window, lands) in [("48h", true), ("0s", false)] {
        let app = spawn_app_with("").await;
        // 30-minute re-reads with 1-minute polls: 7 hourly buckets a poll.
        set_poll(
            &app,
            &format!("late_window = \"{late_window}\"\nlate_every = \"30m\""),
        );
        add_money_key(&app);
        let hour = this_hour() - 30 * HOUR;
        app.fake.add_usage(hour, opus_row(None, None, None));
        app.run_once().await;
        if lands {
            // The first re-read of a database: priced again, nothing counted as late.
            until_reread_ends(&app, 10).await;
        }
        assert_eq!(app.stored_rows().await.len(), 1);

        // Published late: the batch half of that hour. Half an hour passes (the last re-read
        // is moved back in the store, as the clock would).
        app.fake
            .add_usage(hour, opus_row(Some("batch"), None, None));
        app.age_poll_state(3600).await;
        if lands {
            let before = app.stored_rows().await;
            app.run_once().await;
            assert_eq!(
                app.stored_rows().await,
                before,
                "the first slice does not reach 30 hours back"
            );
            assert!(
                late_state(&app).await.cursor.is_some(),
                "a re-read under way"
            );
            until_reread_ends(&app, 10).await;
        } else {
            app.run_once().await;
        }
        let rows = app.stored_rows().await;
        let expected = if lands { 750 + 375 } else { 750 };
        assert_eq!(
            cents(rows[0].cost_usd),
            expected,
            "late_window = {late_window}: {rows:#?}"
        );
        let json = app
            .cli_ok(&["report", "--reconcile", "--format", "json", "--last", "3"])
            .await;
        let days: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let day = crate::fake_anthropic::rfc3339(hour)[..10].to_owned();
        let that_day = days
            .iter()
            .find(|d| d["day"] == day.as_str())
            .unwrap_or_else(|| panic!("{day} in {json}"));
        let late = that_day["late_usd"].as_f64();
        if lands {
            assert_eq!(late.map(|u| (u * 100.0).round()), Some(375.0), "{json}");
        } else {
            assert_eq!(late, None, "{json}");
        }
    }
}

/// A slice of the re-read that fails (the provider down for a moment) leaves the usage cursor
/// and the re-read's position where they stood, and the poll goes on: the next poll reads the
/// slice again.
#[tokio::test]
async fn a_reread_slice_that_fails_moves_neither_cursor() {
    use wiremock::matchers::{method, path, query_param};
    let app = spawn_app_with("").await;
    set_poll(&app, "late_window = \"48h\"\nlate_every = \"30m\"");
    add_money_key(&app);
    app.fake
        .add_usage(this_hour() - 30 * HOUR, opus_row(None, None, None));
    app.fake.data.lock().unwrap().usage_page_size = 4;
    app.run_once().await;
    let cursor = app.cursor().await.expect("a cursor after the first run");

    // The slice's second page fails for one poll: its first try and the client's 3 retries.
    let failing = (this_hour() - 48 * HOUR) + 4 * HOUR;
    wiremock::Mock::given(method("GET"))
        .and(path(crate::fake_anthropic::USAGE_PATH))
        .and(query_param("page", format!("page_{failing}")))
        .respond_with(wiremock::ResponseTemplate::new(503))
        .up_to_n_times(4)
        .with_priority(1)
        .mount(&app.fake.server)
        .await;

    let report = app.run_once().await;
    assert!(
        report.failed_sources.is_empty(),
        "the poll goes on: {report:?}"
    );
    assert_eq!(app.cursor().await, Some(cursor), "the usage cursor stays");
    assert_eq!(
        late_state(&app).await.cursor,
        None,
        "the re-read has not moved"
    );

    app.run_once().await;

    assert_eq!(
        late_state(&app).await.cursor,
        Some(this_hour() - 41 * HOUR),
        "the slice is read again, then the next"
    );
}
