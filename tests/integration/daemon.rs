//! The daemon as an operator runs it: the HTTP endpoint, and shutdown in the middle of work.

use std::time::{Duration, Instant};

use crate::helpers::{
    row, spawn_app_with, spawn_app_with_lookback, this_hour, without_cost, TestApp, HOUR,
};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_daemon(app: &TestApp) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .arg("--config")
        .arg(&app.config_path)
        .arg("run")
        .envs(&app.env)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// `keywatch run` with its stderr in `log` (at `RUST_LOG=level`, or the default level).
pub fn start_daemon_logging(
    app: &TestApp,
    log: &std::path::Path,
    level: Option<&str>,
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"));
    cmd.arg("--config")
        .arg(&app.config_path)
        .arg("run")
        .envs(&app.env)
        .env_remove("RUST_LOG");
    if let Some(level) = level {
        cmd.env("RUST_LOG", level);
    }
    cmd.stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

pub async fn get(url: &str) -> (u16, String) {
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(url).await {
            let status = r.status().as_u16();
            return (status, r.text().await.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

async fn sigterm(child: &mut tokio::process::Child) -> (Option<i32>, Duration) {
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    (status.code(), started.elapsed())
}

/// Every sample line of the Prometheus text format: `name{labels} value`.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {l}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {l}"
            );
            assert_eq!(
                series.matches('{').count(),
                series.matches('}').count(),
                "{l}"
            );
            (
                series.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            )
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_polls_and_readyz_turns_503_when_the_provider_goes_quiet() {
    let port = free_port();
    let app = spawn_app_with(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    app.fake.add_usage(
        this_hour() - 4 * HOUR,
        row(Some("apikey_01A"), "claude-sonnet-4-20250514", 10, 1),
    );
    let mut daemon = start_daemon(&app);
    let base = format!("http://127.0.0.1:{port}");

    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let mut ready = (0, String::new());
    for _ in 0..100 {
        ready = get(&format!("{base}/readyz")).await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);

    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    // Every family carries its HELP text, as `promtool check metrics` wants.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP:\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "keywatch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let samples = samples(&text);
    // Series that have had no event yet are there at 0 from the start.
    assert!(
        samples
            .iter()
            .any(|(s, v)| s.starts_with("keywatch_polls_total")
                && s.contains("outcome=\"failed\"")
                && *v == 0.0),
        "{text}"
    );
    let polls = samples
        .iter()
        .find(|(s, _)| {
            s.starts_with("keywatch_polls_total")
                && s.contains("outcome=\"ok\"")
                && s.contains("anthropic-test")
        })
        .unwrap_or_else(|| panic!("no poll counted:\n{text}"));
    assert!(polls.1 >= 1.0);
    assert!(
        samples
            .iter()
            .any(|(s, _)| s.starts_with("keywatch_last_successful_poll_timestamp_seconds")),
        "{text}"
    );

    // The provider stops answering, and an hour passes without a successful poll.
    app.fake.server.reset().await;
    app.age_poll_state(3600).await;
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("anthropic-test"), "{body}");

    let (code, took) = sigterm(&mut daemon).await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn sigterm_mid_backfill_exits_0_and_a_restart_completes_it_without_duplicates() {
    let app = spawn_app_with_lookback("8d", "").await;
    for h in 0..(8 * 24) {
        app.fake.add_usage(
            this_hour() - h * HOUR,
            row(Some("apikey_01A"), "claude-sonnet-4-20250514", 100 + h, 10),
        );
    }
    app.fake.data.lock().unwrap().usage_delay = Duration::from_millis(400);
    let mut daemon = start_daemon(&app);
    // Wait until the backfill asked for its second page (the first has arrived), then stop it
    // half-way: the pages read so far are stored (a catch-up stages its pages and moves them
    // into the table on shutdown).
    for _ in 0..200 {
        if app.fake.data.lock().unwrap().usage_requests >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, took) = sigterm(&mut daemon).await;
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");
    let partial = app.stored_rows().await.len();
    assert!(
        partial > 0 && partial < 8 * 24,
        "stopped mid-backfill with {partial} rows"
    );

    app.fake.data.lock().unwrap().usage_delay = Duration::ZERO;
    app.cli_ok(&["run", "--once"]).await;

    let stored = without_cost(&app.stored_rows().await);
    assert_eq!(stored, app.expected_rows(this_hour() - 8 * 24 * HOUR));
}
