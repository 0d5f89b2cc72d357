//! The real binary, as an operator runs it.

use crate::fake_anthropic::key_old_shape;
use crate::helpers::{row, spawn_app, this_hour, HOUR};

#[tokio::test]
async fn run_once_then_history_csv_shows_the_buckets_with_costs() {
    let app = spawn_app().await;
    app.fake.add_key(key_old_shape(
        "apikey_01A",
        "prod-rag",
        "active",
        "2026-05-01T00:00:00Z",
        None,
    ));
    let t = this_hour() - 5 * HOUR;
    // 1M uncached input, 0.5M cache read, 0.25M 5m write, 0.25M 1h write... see row().
    app.fake.add_usage(
        t,
        row(
            Some("apikey_01A"),
            "claude-sonnet-4-20250514",
            1_000_000,
            100_000,
        ),
    );
    app.fake
        .add_usage(t, row(Some("apikey_01A"), "claude-nova-9", 10, 1));

    app.cli_ok(&["run", "--once"]).await;

    let csv = app
        .cli_ok(&[
            "history",
            "--key",
            "apikey_01A",
            "--since",
            "1d",
            "--format",
            "csv",
        ])
        .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("source,key_id,bucket_start,bucket_end,model,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    // 1M input x $3 + 3M cache read x $0.30 + 0.5M 5m write x $3.75 + 0.25M 1h write x $6
    // + 0.1M output x $15 = 3 + 0.9 + 1.875 + 1.5 + 1.5 = $8.775
    let sonnet = lines
        .iter()
        .find(|l| l.contains("claude-sonnet-4"))
        .unwrap();
    assert!(
        sonnet.ends_with(",8.775000,true,"),
        "no billed cost from Anthropic: {sonnet}"
    );
    let nova = lines.iter().find(|l| l.contains("claude-nova-9")).unwrap();
    assert!(
        nova.ends_with(",,false,"),
        "unpriced rows have an empty cost: {nova}"
    );

    let table = app
        .cli_ok(&["history", "--key", "apikey_01A", "--since", "1d"])
        .await;
    assert!(table.contains("prod-rag"), "{table}");
    assert!(table.contains("unpriced"), "{table}");
    assert!(table.contains("[prices.\"claude-nova-9\"]"), "{table}");

    let json = app
        .cli_ok(&[
            "history",
            "--key",
            "apikey_01A",
            "--since",
            "1d",
            "--format",
            "json",
        ])
        .await;
    let items: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 2);

    let check = app.cli_ok(&["check-config"]).await;
    assert!(check.contains("unpriced  claude-nova-9"), "{check}");
}

#[tokio::test]
async fn history_of_an_unknown_key_says_so_and_fails() {
    let app = spawn_app().await;
    app.cli(&["run", "--once"], &[]).await;

    let out = app.cli(&["history", "--key", "apikey_nope"], &[]).await;

    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key \"apikey_nope\""));
}

#[tokio::test]
async fn bad_cli_arguments_exit_1_with_a_message() {
    let app = spawn_app().await;
    let out = app
        .cli(&["history", "--key", "k", "--since", "last tuesday"], &[])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("last tuesday"));
}

#[tokio::test]
async fn run_once_exits_75_when_the_provider_rejects_the_admin_key() {
    let mut app = spawn_app().await;
    app.env.insert(
        "TEST_ANTHROPIC_ADMIN_KEY".into(),
        "sk-ant-admin01-WRONG".into(),
    );

    let out = app.cli(&["run", "--once"], &[]).await;

    assert_eq!(out.status.code(), Some(75));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("401") && log.contains("authentication_error"),
        "{log}"
    );
    assert!(log.contains("wrong, revoked or expired"), "{log}");
}

#[tokio::test]
async fn the_demo_runs_to_completion_and_prints_a_spike_alert() {
    let demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .env_remove("KEYWATCH_CONFIG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert_eq!(
        demo.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(
        stdout.contains("CRITICAL spike: prod-rag-service"),
        "{stdout}"
    );
    assert!(
        stdout.contains("To watch your own organisation"),
        "{stdout}"
    );

    let json = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(["demo", "--json"])
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let alerts: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let alerts = alerts.as_array().unwrap();
    assert!(alerts
        .iter()
        .any(|a| a["rule"] == "spike" && a["key_name"] == "prod-rag-service"));
    assert!(alerts
        .iter()
        .any(|a| a["rule"] == "budget" && a["severity"] == "critical"));
    assert!(alerts.iter().any(|a| a["rule"] == "key_age"));
}

async fn keywatch(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args(args)
        .env("KEYWATCH_CONFIG", "/nonexistent/keywatch.toml")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn completions_man_pages_and_version_need_no_config() {
    let version = keywatch(&["--version"]).await;
    let text = String::from_utf8(version.stdout).unwrap();
    // `keywatch 0.1.0 (3f2a1c9e0b7d)`: the commit it was built from.
    assert!(
        text.starts_with(&format!("keywatch {} (", env!("CARGO_PKG_VERSION")))
            && text.trim_end().ends_with(')'),
        "{text}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = keywatch(&["completions", shell]).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("silences") && script.contains("severity"),
            "{shell}"
        );
    }
    let bad = keywatch(&["completions", "tcsh"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tcsh"));

    let man = keywatch(&["man"]).await;
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(
        page.contains(".TH keywatch 1") && page.contains("test\\-notify"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = keywatch(&["man", "--out", dir.path().to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let alerts = std::fs::read_to_string(dir.path().join("keywatch-alerts.1")).unwrap();
    assert!(alerts.contains("\\-\\-severity"), "{alerts}");
}

#[tokio::test]
async fn every_option_has_help_text() {
    use clap::CommandFactory as _;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() && sub.get_name() != "help" {
                missing.push(format!("{path} {}", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&keywatch::cli::Cli::command(), "keywatch", &mut missing);
    assert!(missing.is_empty(), "no help text: {missing:?}");
}
