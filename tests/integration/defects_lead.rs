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
