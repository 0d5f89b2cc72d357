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
