//! keywatch feeding a real Alertmanager (Debian's `prometheus-alertmanager`, whose path `.ci/run`
//! puts in `KEYWATCH_TEST_ALERTMANAGER`): labels and annotations as routing needs them, alerts
//! kept past Alertmanager's `resolve_timeout` by resending, and ended on resolve.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{free_port, start_daemon};
use crate::helpers::{spawn_app_with_lookback, TestApp};

/// A real Alertmanager on a free port, with a 3 s `resolve_timeout` and a receiver that drops
/// everything; killed on drop.
pub struct Alertmanager {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    pub url: String,
}

impl Alertmanager {
    /// `None` (said loudly) when `KEYWATCH_TEST_ALERTMANAGER` is not set.
    pub async fn start() -> Option<Self> {
        let Ok(bin) = std::env::var("KEYWATCH_TEST_ALERTMANAGER") else {
            eprintln!(
                "SKIPPED: KEYWATCH_TEST_ALERTMANAGER is not set (the path of an alertmanager \
                 binary; .ci/run installs Debian's prometheus-alertmanager and sets it)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "global:\n  resolve_timeout: 3s\nroute:\n  receiver: drop\n  group_wait: 1s\nreceivers:\n  - name: drop\n",
        )
        .unwrap();
        let port = free_port();
        let child = tokio::process::Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let am = Self {
            _child: child,
            _dir: dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        loop {
            let ready = reqwest::get(format!("{}/-/ready", am.url))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Some(am);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Alertmanager at {} did not become ready",
                am.url
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What `GET /api/v2/alerts` lists (the alerts not ended).
    pub async fn alerts(&self) -> Vec<Value> {
        reqwest::get(format!("{}/api/v2/alerts", self.url))
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    }

    /// Waits up to 30 s for the listed alerts to satisfy `done`; returns them.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let alerts = self.alerts().await;
            if done(&alerts) {
                return alerts;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: Alertmanager lists {alerts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn named<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"]["alertname"] == name)
}

/// The week of traffic of `detection::seed` (a spike on apikey_spiky, a budget at 80 %), with
/// an alertmanager notifier whose second Alertmanager of the pair is down.
async fn app_for(am: &Alertmanager) -> TestApp {
    let probe = spawn_app_with_lookback("8d", "").await;
    let limit = crate::detection::seed(&probe);
    drop(probe);
    let down = free_port();
    let app = spawn_app_with_lookback(
        "8d",
        &format!(
            r#"
[http]
listen = "127.0.0.1:{http}"
external_url = "https://keywatch.example.com/"

[[budgets]]
name = "gateway"
key_id = "apikey_normal2"
daily_usd = {limit}

[[notifiers]]
name = "am"
kind = "webhook"
format = "alertmanager"
urls = ["{am}", "http://127.0.0.1:{down}"]
resend_every = "1s"
runbook_url = "https://wiki.example.com/keywatch/{{rule}}"
min_severity = "info"
"#,
            http = free_port(),
            am = am.url,
        ),
    )
    .await;
    crate::detection::seed(&app);
    app
}

#[tokio::test]
async fn alertmanager_keeps_keywatch_alerts_past_its_resolve_timeout_and_ends_them_on_resolve() {
    let Some(am) = Alertmanager::start().await else {
        return;
    };
    let app = app_for(&am).await;
    let mut daemon = start_daemon(&app);
    let both = |a: &[Value]| named(a, "spike").is_some() && named(a, "budget").is_some();
    let alerts = am.wait_for("a spike and a budget alert", both).await;

    let spike = named(&alerts, "spike").unwrap();
    let labels = &spike["labels"];
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["source"], "anthropic-test");
    assert_eq!(labels["key_id"], "apikey_spiky");
    assert_eq!(labels["key_name"], "prod-rag-service");
    assert!(labels["keywatch_id"].as_str().unwrap().starts_with("kw_"));
    assert_eq!(
        spike["generatorURL"],
        format!(
            "https://keywatch.example.com/keys/apikey_spiky?source=anthropic-test#alert-{}",
            labels["keywatch_id"].as_str().unwrap()
        )
    );
    assert!(spike["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("prod-rag-service"));
    assert!(spike["annotations"]["description"]
        .as_str()
        .unwrap()
        .contains("What to do:"));
    assert_eq!(
        spike["annotations"]["runbook_url"],
        "https://wiki.example.com/keywatch/spike"
    );
    let budget = named(&alerts, "budget").unwrap();
    assert_eq!(budget["labels"]["budget"], "gateway");
    assert_eq!(budget["labels"]["threshold"], "75");
    assert_eq!(budget["labels"]["severity"], "warning");
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == "budget")
            .count(),
        1,
        "one alert for the budget's period: {alerts:#?}"
    );

    // Past Alertmanager's 3 s resolve_timeout (and the 4 s a post is valid for), the resends
    // keep both active.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let later = am.alerts().await;
    for name in ["spike", "budget"] {
        let a = named(&later, name).unwrap_or_else(|| panic!("{name} was dropped: {later:#?}"));
        assert_eq!(a["status"]["state"], "active", "{a:#}");
    }
    daemon.kill().await.unwrap();

    // A day later both conditions are over: detection resolves them, the outbox posts endsAt.
    let config = Arc::new(app.config());
    let kw = keywatch::app::App::build(Arc::clone(&config))
        .await
        .unwrap();
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    let report = keywatch::alerts::evaluate(kw.store(), &config, tomorrow)
        .await
        .unwrap();
    for a in [spike, budget] {
        let id = a["labels"]["keywatch_id"].as_str().unwrap();
        assert!(
            report
                .changes
                .iter()
                .any(|c| c.alert_id == id && c.status == keywatch::alerts::AlertStatus::Resolved),
            "{id} not resolved: {report:?}"
        );
    }
    keywatch::notify::Outbox::new(Arc::clone(&config))
        .deliver(kw.store(), keywatch::notify::Mode::All)
        .await
        .unwrap();
    am.wait_for("both ended", |a| {
        named(a, "spike").is_none() && named(a, "budget").is_none()
    })
    .await;
}
