//! Regressions of the defects issue (#13) fixed by the lead: signals, config sense-checks,
//! alert state across clock jumps, periods, unpriced usage.

use std::time::Duration;

use crate::daemon::{free_port, get, start_daemon_logging};
use crate::helpers::spawn_app_with;

fn send(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("daemon still running").to_string();
    assert!(std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap()
        .success());
}

async fn wait_for_log(log: &std::path::Path, needle: &str) -> String {
    for _ in 0..150 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the log never said {needle:?}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[tokio::test]
async fn stray_signals_are_ignored_and_sighup_rereads_the_config() {
    let (first, second) = (free_port(), free_port());
    let app = spawn_app_with(&format!("[http]\nlisten = \"127.0.0.1:{first}\"\n")).await;
    let log = app.dir.path().join("daemon.log");
    let mut daemon = start_daemon_logging(&app, &log, None);
    assert_eq!(
        get(&format!("http://127.0.0.1:{first}/healthz")).await.0,
        200
    );

    // SIGUSR1 and SIGUSR2 used to kill the daemon (exit 138/140): now logged and ignored.
    send(&daemon, "USR1");
    send(&daemon, "USR2");
    wait_for_log(&log, "SIGUSR2 received: ignored").await;
    // SIGPROF still killed it (review): every signal sent only by mistake is ignored.
    for signal in ["PROF", "ALRM", "VTALRM", "PWR", "IO"] {
        send(&daemon, signal);
        wait_for_log(&log, &format!("SIG{signal} received: ignored")).await;
    }
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "a stray signal killed the daemon"
    );

    // SIGHUP re-reads the config: the dashboard moves to the new port.
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace(&format!(":{first}\""), &format!(":{second}\"")),
    )
    .unwrap();
    send(&daemon, "HUP");
    wait_for_log(&log, "configuration re-read").await;
    assert_eq!(
        get(&format!("http://127.0.0.1:{second}/healthz")).await.0,
        200
    );

    // An invalid config on SIGHUP is reported naming the key; the running one is kept.
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace("interval = \"1m\"", "interval = \"soon\""),
    )
    .unwrap();
    send(&daemon, "HUP");
    let text = wait_for_log(&log, "keeping the running one").await;
    assert!(text.contains("poll.interval"), "{text}");
    assert_eq!(
        get(&format!("http://127.0.0.1:{second}/healthz")).await.0,
        200
    );
    assert!(daemon.try_wait().unwrap().is_none());

    send(&daemon, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), daemon.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-EXAMPLE-secret-value"),
    ("KEYWATCH_SMTP_USER", "smtp-user-secret-value"),
    ("KEYWATCH_SMTP_PASSWORD", "smtp-password-secret-value"),
    (
        "KEYWATCH_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
];

/// `check-config` on the shipped example with `from` replaced by `to`: (exit code, stderr).
fn check_example_with(from: &str, to: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keywatch.toml");
    let text = std::fs::read_to_string("config.example.toml").unwrap();
    assert!(text.contains(from), "the example has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .env_remove("RUST_LOG")
        .envs(EXAMPLE_ENV.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_interval_beyond_an_hour_or_an_absurd_duration_is_refused_naming_the_key() {
    let (code, err) = check_example_with("interval = \"2m\"", "interval = \"100y\"");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("poll.interval") && err.contains("1h"), "{err}");
    // Used to overflow and abort; now a parse error naming the key.
    let (code, err) =
        check_example_with("interval = \"2m\"", "interval = \"18446744073709551615s\"");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("interval"), "{err}");
    let (code, err) = check_example_with("settle = \"10m\"", "settle = \"99999999d\"");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("3650d"), "{err}");
}

#[test]
fn line_breaks_in_smtp_host_or_a_source_name_are_refused_naming_the_key() {
    let (code, err) = check_example_with(
        "smtp_host = \"smtp.example.com\"",
        "smtp_host = \"smtp.example.com\\r\\nRCPT TO:<attacker@example.com>\"",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("smtp_host"), "{err}");
    let (code, err) = check_example_with(
        "name = \"anthropic-prod\"",
        "name = \"anthropic-prod\\nERROR forged log line\"",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("sources[0].name"), "{err}");
}

async fn alerts_json(app: &crate::helpers::TestApp, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["alerts", "--format", "json"];
    if all {
        args.push("--all");
    }
    let out = app.cli_ok(&args).await;
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn seeded_with_budget() -> crate::helpers::TestApp {
    let probe = crate::helpers::spawn_app_with_lookback("8d", "").await;
    let limit = crate::detection::seed(&probe);
    drop(probe);
    let app = crate::helpers::spawn_app_with_lookback(
        "8d",
        &format!(
            "[[budgets]]\nname = \"gateway\"\nkey_id = \"apikey_normal2\"\ndaily_usd = {limit}\n"
        ),
    )
    .await;
    crate::detection::seed(&app);
    app
}

#[tokio::test]
async fn the_first_start_dates_a_spike_from_its_first_bucket_not_the_judged_one() {
    let app = seeded_with_budget().await;
    app.cli_ok(&["run", "--once"]).await;
    let alerts = alerts_json(&app, false).await;
    let spike = alerts
        .iter()
        .find(|a| a["rule"] == "spike")
        .unwrap_or_else(|| panic!("{alerts:#?}"));
    // The seed leaks 5 and 4 hours ago; with settle = 3h the judged bucket is the one 4 hours
    // ago, and the leak began an hour before it.
    let began = crate::fake_anthropic::rfc3339(crate::helpers::this_hour() - 5 * 3600);
    assert_eq!(spike["starts_at"], began.as_str(), "{spike:#}");
    assert!(
        spike["summary"].as_str().unwrap().contains("since"),
        "{spike:#}"
    );
}

#[tokio::test]
async fn a_clock_jump_forward_and_back_leaves_live_alerts_firing() {
    let app = seeded_with_budget().await;
    app.cli_ok(&["run", "--once"]).await;
    let before: Vec<String> = alerts_json(&app, false)
        .await
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        before.len(),
        4,
        "spike, budget (one alert at 75 %), key age, inactive use"
    );

    // The host clock runs 40 days ahead for one pass, then is corrected.
    let config = app.config();
    let store = app.store().await;
    let real = chrono::Utc::now();
    keywatch::alerts::evaluate(&store, &config, real + chrono::Duration::days(40))
        .await
        .unwrap();
    let during = alerts_json(&app, false).await;
    assert!(
        during.iter().all(|a| a["rule"] == "key_age"),
        "the future pass resolved everything else: {during:#?}"
    );
    keywatch::alerts::evaluate(&store, &config, real)
        .await
        .unwrap();
    store.close().await;

    let mut after: Vec<String> = alerts_json(&app, false)
        .await
        .iter()
        .filter(|a| a["status"] == "firing")
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(after, before, "every live alert fires again, with its id");
}

#[tokio::test]
async fn usage_on_an_unpriced_model_is_judged_by_tokens_and_warned_about_once() {
    const UNPRICED: &str = "claude-unreleased-9";
    let app = crate::helpers::spawn_app_with_lookback("8d", "").await;
    let now = crate::helpers::this_hour();
    for h in 0..(8 * 24) {
        // A steady key on a model without a price; 500x its traffic 4 hours ago (the bucket
        // judged with settle = 3h).
        let u = if h == 4 { 500 * 30_000 } else { 30_000 };
        app.fake.add_usage(
            now - h * 3600,
            crate::helpers::row(Some("apikey_unpriced"), UNPRICED, u, u / 10),
        );
    }
    app.cli_ok(&["run", "--once"]).await;
    app.cli_ok(&["run", "--once"]).await;
    let alerts = alerts_json(&app, true).await;

    let spikes: Vec<_> = alerts.iter().filter(|a| a["rule"] == "spike").collect();
    assert_eq!(spikes.len(), 1, "{alerts:#?}");
    assert_eq!(spikes[0]["unit"], "tokens");
    assert_eq!(spikes[0]["key_id"], "apikey_unpriced");
    assert!(spikes[0]["summary"]
        .as_str()
        .unwrap()
        .contains("judged by tokens"));

    let unpriced: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"] == "unpriced_usage")
        .collect();
    assert_eq!(unpriced.len(), 1, "once per key and model: {alerts:#?}");
    assert_eq!(unpriced[0]["severity"], "warning");
    assert_eq!(unpriced[0]["status"], "firing");
    let summary = unpriced[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains(UNPRICED) && summary.contains("floors") && summary.contains("[prices."),
        "{summary}"
    );
}
