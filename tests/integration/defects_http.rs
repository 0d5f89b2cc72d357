//! Issue #13, the HTTP endpoint and the CLI's windows: bounded windows and ranges (1, 4),
//! connection limits and timeouts (21), Host check, security headers and the bearer scheme
//! (22), the key page for unknown keys and for the tokens metric (25). Every test runs the real
//! binary.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::daemon::{free_port, get, start_daemon};
use crate::fake_anthropic::key_old_shape;
use crate::helpers::{row, spawn_app_with, spawn_app_with_lookback, this_hour, TestApp, HOUR};

const SONNET: &str = "claude-sonnet-4-20250514";

async fn json(url: &str) -> (u16, Value) {
    let (status, body) = get(url).await;
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, value)
}

/// Polls `url` until it answers `status` (a daemon's first cycle takes a moment).
async fn wait_for(url: &str, status: u16) -> String {
    let mut last = (0, String::new());
    for _ in 0..300 {
        last = get(url).await;
        if last.0 == status {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered {status}: {} {}", last.0, last.1);
}

/// A year of 1-minute usage of one key, written straight into the database (no fake provider
/// serves 1-minute buckets), with one spiky minute near the end.
fn seed_a_year_of_minutes(app: &TestApp, key: &str) -> usize {
    let now = chrono::Utc::now().timestamp().div_euclid(60) * 60;
    let mut conn = rusqlite::Connection::open(app.db_path()).unwrap();
    let tx = conn.transaction().unwrap();
    let mut n = 0;
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO usage_buckets (source, key_id, bucket_width, bucket_start, model,
                    uncached_input_tokens, cache_read_input_tokens, cache_write_5m_tokens,
                    cache_write_1h_tokens, output_tokens, requests, cost_usd, updated_at)
                 VALUES ('anthropic-test', ?1, 60, ?2, ?3, ?4, 0, 0, 0, ?5, 1, ?6, ?7)",
            )
            .unwrap();
        for m in 1..=(365 * 1_440_i64) {
            let t = now - m * 60;
            let tokens = if m == 30 { 400_000 } else { 100 + (m % 50) };
            insert
                .execute(rusqlite::params![
                    key,
                    t,
                    SONNET,
                    tokens,
                    tokens / 10,
                    tokens as f64 * 3e-6,
                    now
                ])
                .unwrap();
            n += 1;
        }
    }
    tx.commit().unwrap();
    n
}

/// #13.1: absurd windows are refused with 400 naming the parameter and the maximum (one aborted
/// the daemon); a year of 1-minute data is drawn with a bounded chart off the async workers,
/// so `/healthz` answers while two such pages are computed; usage is paged.
#[tokio::test]
async fn key_page_windows_are_bounded_and_a_year_of_minutes_does_not_stall_healthz() {
    crate::backend::sqlite_only!("seeds a year of minutes through rusqlite (TODO: port)");
    let port = free_port();
    let app = spawn_app_with_lookback(
        "1d",
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n[storage.retention]\n\"1m\" = \"400d\"\n"),
    )
    .await;
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace("bucket_width = \"1h\"", "bucket_width = \"1m\""),
    )
    .unwrap();
    app.open_store().await.close().await;
    let rows = seed_a_year_of_minutes(&app, "apikey_big");
    let _daemon = start_daemon(&app);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/healthz"), 200).await;

    for (window, shown) in [
        ("1000000y", "1000000y"),
        ("1000y", "1000y"),
        ("401d", "401d"),
    ] {
        let (status, err) = json(&format!("{base}/keys/apikey_big?window={window}")).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["parameter"], "window", "{err}");
        assert_eq!(err["maximum"], "400d", "{err}");
        assert!(err["error"].as_str().unwrap().contains(shown), "{err}");
    }
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200, "still alive");

    // Two year-long pages at once; /healthz answers meanwhile.
    let started = Instant::now();
    let pages: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("{base}/keys/apikey_big?window=365d");
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .get(url)
                    .timeout(Duration::from_secs(120))
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.text().await.unwrap(),
                    started.elapsed(),
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let (status, _) = get(&format!("{base}/healthz")).await;
    let healthz = asked.elapsed();
    assert_eq!(status, 200);
    for p in pages {
        let (status, body, took) = p.await.unwrap();
        assert_eq!(status, 200, "{body}");
        // The wide drawing (the narrow one repeats the bars for phones).
        let wide = body.split("class=\"chart narrow\"").next().unwrap();
        let bars = wide.matches("<rect").count();
        assert!(bars > 100 && bars <= 240, "{bars} bars");
        assert!(
            body.contains("busiest of"),
            "the page says bars are downsampled"
        );
        assert!(
            body.contains("data-series=\"baseline\""),
            "the baseline is drawn"
        );
        eprintln!("a 365d key page over {rows} one-minute buckets took {took:?}");
    }
    eprintln!("/healthz answered in {healthz:?} while two were computed");
    assert!(
        healthz < Duration::from_secs(3),
        "/healthz took {healthz:?} while key pages were computed"
    );

    // The API: bounded ranges, and pages of at most 10,000 rows linked by `Link: rel=next`.
    let (status, err) = json(&format!("{base}/api/v1/usage?key=apikey_big&since=401d")).await;
    assert_eq!(
        (status, &err["parameter"], &err["maximum"]),
        (400, &"since".into(), &"400d".into()),
        "{err}"
    );
    let (status, err) = json(&format!(
        "{base}/api/v1/usage?key=apikey_big&since=1d&until=2099-01-01T00:00:00Z"
    ))
    .await;
    assert_eq!((status, &err["parameter"]), (400, &"until".into()), "{err}");
    let client = reqwest::Client::new();
    let first = client
        .get(format!(
            "{base}/api/v1/usage?key=apikey_big&since=400d&limit=5000"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let link = first
        .headers()
        .get("link")
        .expect("a Link header to the next page")
        .to_str()
        .unwrap()
        .to_owned();
    let page1: Vec<Value> = first.json().await.unwrap();
    assert_eq!(page1.len(), 5_000);
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(u, _)| u.to_owned())
        .unwrap_or_else(|| panic!("{link}"));
    let page2: Vec<Value> = client
        .get(format!("{base}{next}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page2.len(), 5_000);
    assert!(
        page2[0]["bucket_start"].as_str() > page1[4_999]["bucket_start"].as_str(),
        "the second page follows the first"
    );
    let (status, all) = json(&format!("{base}/api/v1/usage?key=apikey_big&since=8d")).await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 10_000, "at most 10,000 rows");
    let (status, err) = json(&format!("{base}/api/v1/usage?key=apikey_big&limit=20000")).await;
    assert_eq!((status, &err["parameter"]), (400, &"limit".into()), "{err}");
}

/// #13.1 and #13.4: the CLI refuses windows beyond 400 days with exit 1 and a message naming
/// the value and the bound (`report --since 999999999d` panicked).
#[tokio::test]
async fn cli_windows_beyond_400_days_exit_1_with_a_clear_message() {
    let app = spawn_app_with("").await;
    app.fake.add_key(key_old_shape(
        "apikey_a",
        "a",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    app.fake
        .add_usage(this_hour() - 4 * HOUR, row(Some("apikey_a"), SONNET, 10, 1));
    app.cli_ok(&["run", "--once"]).await;
    let out = app.dir.path().join("evidence");
    let out = out.to_str().unwrap();
    for args in [
        vec!["report", "--since", "999999999d"],
        vec!["report", "--until", "1000000y"],
        vec!["report", "--since", "3651d"],
        vec!["report", "--last", "121", "--period", "month"],
        vec!["history", "--key", "apikey_a", "--since", "1000y"],
        vec![
            "history",
            "--key",
            "apikey_a",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        vec![
            "history",
            "--key",
            "apikey_a",
            "--until",
            "9999-01-01T00:00:00Z",
        ],
        vec!["backtest", "--since", "100000000d"],
        vec![
            "export", "--key", "apikey_a", "--since", "500d", "--out", out,
        ],
    ] {
        let result = app.cli(&args, &[]).await;
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("400d")
                || stderr.contains("3650d")
                || stderr.contains("a day ahead")
                || stderr.contains("1 to 120 months"),
            "{args:?}: the bound is named: {stderr}"
        );
    }
    // Reports read whole days from the rollup, kept for ever: ten years back.
    app.cli_ok(&["report", "--since", "3650d", "--period", "month"])
        .await;
    app.cli_ok(&["report", "--last", "120", "--period", "month"])
        .await;
    app.cli_ok(&["history", "--key", "apikey_a", "--since", "400d"])
        .await;
    app.cli_ok(&["backtest", "--since", "400d"]).await;
}

/// #13.21: idle connections are closed after `http.idle_timeout` and at most
/// `http.max_connections` (lowered below the descriptor limit) are held, so a flood of idle
/// connections no longer takes the database's descriptors: afterwards `/healthz` and a
/// database read answer, and nothing failed to open the database.
#[tokio::test]
async fn idle_connections_are_capped_and_closed_and_the_database_keeps_its_descriptors() {
    let port = free_port();
    let app = spawn_app_with(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\nidle_timeout = \"3s\"\n"
    ))
    .await;
    app.fake.add_key(key_old_shape(
        "apikey_a",
        "a",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    let log = app.dir.path().join("daemon.log");
    // The descriptor limit of the 1,100-connection report, scaled down: 256 soft and hard.
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" --config \"$1\" run")
        .arg(env!("CARGO_BIN_EXE_keywatch"))
        .arg(&app.config_path)
        .envs(&app.env)
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true);
    let mut daemon = cmd.spawn().unwrap();
    let pid = daemon.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/api/v1/keys"), 200).await;

    let mut idle = Vec::new();
    for _ in 0..600 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            idle.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(
        fds <= 128 + 64,
        "the daemon holds {fds} descriptors with 600 idle connections at it"
    );
    // Every idle connection is closed by the daemon: at once beyond the cap, after the idle
    // timeout within it.
    let deadline = Instant::now() + Duration::from_secs(30);
    for mut s in idle {
        let mut buf = [0u8; 16];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("an idle connection got {n} bytes"),
            Err(_) => panic!("an idle connection was still open after 30 s"),
        }
    }
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let (status, body) = get(&format!("{base}/api/v1/keys")).await;
    assert_eq!(status, 200, "{body}");
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon runs");
    daemon.kill().await.unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("unable to open database file"), "{logged}");
    assert!(logged.contains("http.max_connections lowered"), "{logged}");
}

/// #13.22: a foreign Host is refused (DNS rebinding), every answer carries the security
/// headers, and the bearer scheme is case-insensitive.
#[tokio::test]
async fn foreign_hosts_are_refused_security_headers_are_sent_and_bearer_is_case_insensitive() {
    let port = free_port();
    let app = spawn_app_with(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\nallowed_hosts = [\"keywatch.example.com\"]\n"
    ))
    .await;
    let _daemon = start_daemon(&app);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/healthz"), 200).await;
    let client = reqwest::Client::new();
    let ask = |path: &str, host: Option<String>| {
        let mut r = client.get(format!("{base}{path}"));
        if let Some(h) = host {
            r = r.header("host", h);
        }
        r.send()
    };
    for host in [format!("evil.example:{port}"), "attacker.test".to_owned()] {
        let r = ask("/api/v1/keys", Some(host.clone())).await.unwrap();
        assert_eq!(r.status().as_u16(), 421, "{host}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("allowed_hosts"),
            "{body}"
        );
        assert_eq!(
            ask("/", Some(host.clone()))
                .await
                .unwrap()
                .status()
                .as_u16(),
            421
        );
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "keywatch.example.com".to_owned(),
    ] {
        let r = ask("/api/v1/keys", Some(host.clone())).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{host}");
    }
    for (path, status) in [
        ("/", 200),
        ("/healthz", 200),
        ("/api/v1/keys", 200),
        ("/nowhere", 404),
        ("/keys/apikey_nobody", 404),
        ("/api/v1/alerts?status=maybe", 400),
    ] {
        let r = ask(path, None).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let h = r.headers();
        let csp = h
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"))
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }

    // With a token: the scheme in any case.
    let port = free_port();
    let app = spawn_app_with(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"TEST_HTTP_TOKEN\"\n"
    ))
    .await;
    let _daemon = start_daemon(&app);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/healthz"), 200).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = client
            .get(format!("{base}/api/v1/keys"))
            .header("authorization", format!("{scheme} s3cret-dashboard-token"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{scheme}");
    }
    let r = client
        .get(format!("{base}/api/v1/keys"))
        .header("authorization", "bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("content-security-policy"));
}

/// #13.25: an unknown key is a 404 page that says so; with `metric = "tokens"` the key page
/// draws tokens against the token baseline, and export's busy level is in tokens (both used
/// dollars against a floor in tokens).
#[tokio::test]
async fn unknown_keys_are_404_and_the_key_page_draws_the_judged_metric() {
    let port = free_port();
    let app = spawn_app_with_lookback(
        "8d",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[detect.spike]\nmetric = \"tokens\"\nmin_baseline = 5000\n"
        ),
    )
    .await;
    app.fake.add_key(key_old_shape(
        "apikey_t",
        "tokens-key",
        "active",
        "2026-10-01T00:00:00Z",
        None,
    ));
    for h in 1..(3 * 24) {
        app.fake.add_usage(
            this_hour() - h * HOUR,
            row(Some("apikey_t"), SONNET, 1_000, 700),
        );
    }
    let _daemon = start_daemon(&app);
    let base = format!("http://127.0.0.1:{port}");
    // 1,000 uncached + 3,000 cache read + 500 + 250 cache writes + 700 output.
    let mut page = String::new();
    for _ in 0..300 {
        page = wait_for(&format!("{base}/keys/apikey_t?window=2d"), 200).await;
        if page.contains("tokens (baseline") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(page.contains("Tokens per bucket"), "{page}");
    assert!(
        page.contains(": 5450 tokens (baseline"),
        "bars are in tokens: {page}"
    );
    assert!(!page.contains("</title>$"), "{page}");

    let (status, body) = get(&format!("{base}/keys/unknown")).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("No key") && body.contains("unknown"),
        "{body}"
    );
    let (status, _) = get(&format!("{base}/keys/apikey_t?source=elsewhere")).await;
    assert_eq!(status, 404);

    // The evidence summary's busy level is in tokens too (it was dollars against a token floor).
    let out = app.dir.path().join("evidence");
    app.cli_ok(&[
        "export",
        "--key",
        "apikey_t",
        "--since",
        "2d",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        summary.contains("busy level:    5450 tokens per bucket")
            && summary.contains("peak / level:  1.0x"),
        "{summary}"
    );
}
