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
    start_daemon_with(app, &app.config_path)
}

/// `keywatch run` with `app`'s environment and the config at `config`.
pub fn start_daemon_with(app: &TestApp, config: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .arg("--config")
        .arg(config)
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

/// `promtool check metrics` on `text`, when `.ci/run` says where promtool is
/// (`KEYWATCH_TEST_PROMTOOL`); skipped loudly otherwise.
async fn promtool_check_metrics(text: &str) {
    let Ok(promtool) = std::env::var("KEYWATCH_TEST_PROMTOOL") else {
        eprintln!("SKIPPED promtool check metrics: KEYWATCH_TEST_PROMTOOL is not set (.ci/run installs Debian's prometheus package and sets it)");
        return;
    };
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_count_polls_and_readyz_turns_503_when_the_provider_goes_quiet() {
    let port = free_port();
    let app = spawn_app_with(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[[budgets]]\nname = \"team\"\ndaily_usd = 50.0\n\
         [[notifiers]]\nname = \"am\"\nkind = \"webhook\"\nformat = \"alertmanager\"\n\
         url = \"http://127.0.0.1:{}\"\n",
        free_port()
    ))
    .await;
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

    // After the first detection pass, which measures the spend gauges.
    let mut text = String::new();
    for _ in 0..100 {
        let (status, body) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        text = body;
        if !text.contains("keywatch_last_detection_timestamp_seconds 0\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    promtool_check_metrics(&text).await;
    // Every family carries its HELP text, as `promtool check metrics` wants.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP:\n{text}"
        );
    }
    let build = text
        .lines()
        .find(|l| l.starts_with("keywatch_build_info{"))
        .unwrap_or_else(|| panic!("no build_info:\n{text}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.contains("commit=\"")
            && build.ends_with(" 1"),
        "{build}"
    );
    let samples = samples(&text);
    let value = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series}:\n{text}"))
    };
    // Every rule's series at 0 from the start; bounded spend gauges per source and budget.
    for rule in keywatch::alerts::Rule::ALL {
        value(&format!(
            "keywatch_alerts_firing{{rule=\"{}\",severity=\"critical\"}}",
            rule.as_str()
        ));
    }
    assert_eq!(
        value("keywatch_budget_limit_usd{budget=\"team\",period=\"day\"}"),
        50.0
    );
    value("keywatch_budget_spend_usd{budget=\"team\",period=\"day\"}");
    value("keywatch_source_spend_usd{source=\"anthropic-test\",period=\"month\"}");
    value("keywatch_alertmanager_resends_total{notifier=\"am\",outcome=\"failed\"}");
    assert!(value("keywatch_last_detection_timestamp_seconds") > 1.7e9);
    assert!(
        !samples.iter().any(|(s, _)| s.contains("key_id=")),
        "no series per key"
    );
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
