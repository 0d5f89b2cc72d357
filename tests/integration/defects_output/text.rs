//! Items 17, 18, 19, 20 and 26 (money, wording): Slack escaping, control characters, CSV
//! formulas, an admin key quoted in an error body, and money without float noise.

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use super::{decode_mail, header, old_key};
use crate::fake_anthropic::{ADMIN_KEY, USAGE_PATH};
use crate::helpers::{row, spawn_app_with, this_hour, HOUR};
use crate::notify::{email, webhook};
use crate::receivers::{SmtpServer, WebhookReceiver};

// ---- 17 -------------------------------------------------------------------------------------

#[tokio::test]
async fn a_key_name_cannot_ping_a_slack_channel_or_plant_a_link() {
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&webhook("slack", &hook.url(), "slack", "info")).await;
    old_key(
        &app,
        "apikey_slack",
        "<!channel> urgent & <https://evil.example|click here>",
    );
    app.cli_ok(&["run", "--once"]).await;
    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    let body = &got[0].body;
    let mut texts = vec![body["text"].as_str().unwrap().to_owned()];
    for block in body["blocks"].as_array().unwrap() {
        if let Some(t) = block["text"]["text"].as_str() {
            texts.push(t.to_owned());
        }
        for e in block["elements"].as_array().into_iter().flatten() {
            texts.push(e["text"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(
        texts
            .iter()
            .any(|t| t
                .contains("&lt;!channel&gt; urgent &amp; &lt;https://evil.example|click here&gt;")),
        "{texts:#?}"
    );
    for t in &texts {
        assert!(!t.contains("<!channel>") && !t.contains("<https://"), "{t}");
    }
}

// ---- 18 -------------------------------------------------------------------------------------

/// No terminal control, no carriage return, no line forged by provider text.
fn assert_printable(what: &str, text: &str) {
    for c in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(
            !text.contains(c),
            "{what}: {c:?} reached the output:\n{text}"
        );
    }
    for l in text.lines() {
        assert!(
            !l.starts_with("FORGED") && !l.starts_with("2026-01-01T00:00:00Z  INFO forged"),
            "{what}: provider text forged a line: {l:?}"
        );
    }
}

#[tokio::test]
async fn control_characters_in_provider_text_reach_no_terminal_log_or_email() {
    let smtp = SmtpServer::start(false);
    let app = spawn_app_with(&email("ctl-mail", smtp.port)).await;
    let name = "evil\u{1b}[2J\u{1b}]0;owned\u{7}\u{202e}\r\nFORGED line";
    old_key(&app, "apikey_ctl", name);
    let model = "claude-x\n2026-01-01T00:00:00Z  INFO forged log line\u{1b}[31m";
    for h in 4..8 {
        app.fake.add_usage(
            this_hour() - h * HOUR,
            row(Some("apikey_ctl"), model, 1_000, 10),
        );
    }
    let run = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        log.contains("no price"),
        "the unpriced model was logged: {log}"
    );
    assert_printable("run --once log", &log);
    let json_run = app
        .cli(
            &["--log-format", "json", "run", "--once"],
            &[("RUST_LOG", "debug")],
        )
        .await;
    let json_log = String::from_utf8_lossy(&json_run.stderr);
    for line in json_log.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert_printable("json log", &json_log);

    for args in [
        &["alerts"][..],
        &["report", "--by", "key,model"],
        &["history", "--key", "apikey_ctl"],
        &["check-config"],
        &["backtest"],
    ] {
        let out = app.cli_ok(args).await;
        assert_printable(&format!("{args:?}"), &out);
    }
    let alerts = app.cli_ok(&["alerts"]).await;
    assert!(
        alerts.contains("evil\\x1b[2J"),
        "visible, not lost: {alerts}"
    );

    let mails = smtp.mails();
    assert!(!mails.is_empty());
    for m in &mails {
        let (head, body) = decode_mail(&m.data);
        assert_printable("email body", &body);
        assert!(body.contains("evil\\x1b[2J"), "{body}");
        let subject = header(&head, "Subject").unwrap_or_default();
        assert!(!subject.contains('\u{1b}'), "{subject}");
    }
}

// ---- 19 -------------------------------------------------------------------------------------

/// The fields of one CSV record (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// No cell a spreadsheet would evaluate: a cell starting with `=`, `+`, `-`, `@`, tab or CR
/// must be a plain number.
fn assert_no_formula(what: &str, csv: &str) {
    assert!(!csv.contains('\r'), "{what}: a raw CR in\n{csv}");
    assert!(csv.lines().count() > 1, "{what}: no rows\n{csv}");
    for line in csv.lines() {
        for f in csv_fields(line) {
            if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                assert!(
                    f.parse::<f64>().is_ok(),
                    "{what}: formula cell {f:?} in\n{csv}"
                );
            }
        }
    }
}

#[tokio::test]
async fn csv_outputs_neutralise_formulas_in_names() {
    let port = crate::daemon::free_port();
    let app = spawn_app_with(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    let key = "apikey_csv";
    old_key(
        &app,
        key,
        "=HYPERLINK(\"https://evil.example\",\"invoice\")\rx",
    );
    for (h, model) in [
        (4, "+cmd|' /C calc'!A0"),
        (5, "@SUM(1+1)*cmd|' /C calc'!A0"),
        (6, "-2+3"),
    ] {
        app.fake
            .add_usage(this_hour() - h * HOUR, row(Some(key), model, 1_000, 10));
        app.fake.add_usage(
            this_hour() - h * HOUR,
            row(Some(key), "claude-sonnet-4-20250514", 1_000, 10),
        );
    }
    app.cli_ok(&["run", "--once"]).await;

    let report = app
        .cli_ok(&["report", "--by", "key,model", "--format", "csv"])
        .await;
    assert!(
        report.contains("'=HYPERLINK"),
        "neutralised, not dropped: {report}"
    );
    assert_no_formula("report", &report);
    let history = app
        .cli_ok(&["history", "--key", key, "--since", "2d", "--format", "csv"])
        .await;
    assert!(history.contains("'+cmd"), "{history}");
    assert_no_formula("history", &history);
    let dir = app.dir.path().join("evidence");
    app.cli_ok(&[
        "export",
        "--key",
        key,
        "--since",
        "2d",
        "--out",
        dir.to_str().unwrap(),
    ])
    .await;
    assert_no_formula(
        "export usage.csv",
        &std::fs::read_to_string(dir.join("usage.csv")).unwrap(),
    );

    let mut daemon = crate::daemon::start_daemon(&app);
    let (status, api) = crate::daemon::get(&format!(
        "http://127.0.0.1:{port}/api/v1/usage?key={key}&since=2d&format=csv"
    ))
    .await;
    daemon.kill().await.unwrap();
    assert_eq!(status, 200, "{api}");
    assert!(api.contains("'@SUM"), "{api}");
    assert_no_formula("API usage CSV", &api);
}

// ---- 20 and 26 (wording, money) -------------------------------------------------------------

/// Every file under `dir` but the config, as bytes.
fn stored_bytes(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            stored_bytes(&p, out);
        } else if p.extension().is_none_or(|e| e != "toml") {
            if let Ok(b) = std::fs::read(&p) {
                out.push((p.display().to_string(), b));
            }
        }
    }
}

#[tokio::test]
async fn an_admin_key_quoted_in_an_error_body_is_redacted_everywhere() {
    let hook = WebhookReceiver::start().await;
    let smtp = SmtpServer::start(false);
    let port = crate::daemon::free_port();
    let app = spawn_app_with(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n{}{}",
        webhook("leak-hook", &hook.url(), "json", "info"),
        email("leak-mail", smtp.port)
    ))
    .await;
    // A proxy answering for the provider quotes the key it was given.
    let quoted = ResponseTemplate::new(401).set_body_json(serde_json::json!({"type": "error",
        "error": {"type": "authentication_error",
                  "message": format!("invalid x-api-key: {ADMIN_KEY} (revoked)")}}));
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(quoted)
        .with_priority(1)
        .mount(&app.fake.server)
        .await;

    let trace = [("RUST_LOG", "trace")];
    let mut outputs = vec![app.cli(&["run", "--once"], &trace).await];
    let alerts = app.cli(&["alerts", "--format", "json"], &trace).await;
    let listed: Value = serde_json::from_slice(&alerts.stdout).unwrap();
    let unhealthy = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "source_unhealthy")
        .expect("source_unhealthy fired")
        .clone();
    let summary = unhealthy["summary"].as_str().unwrap();
    assert!(
        summary.contains("[REDACTED]"),
        "the error is kept, the key is not: {summary}"
    );
    assert!(summary.contains("(1 failed poll)"), "{summary}");
    outputs.push(alerts);
    outputs.push(
        app.cli(&["--log-format", "json", "run", "--once"], &trace)
            .await,
    );
    outputs.push(app.cli(&["alerts"], &trace).await);

    let log = app.dir.path().join("daemon.log");
    let mut daemon = crate::daemon::start_daemon_logging(&app, &log, Some("trace"));
    let base = format!("http://127.0.0.1:{port}");
    let mut bodies = Vec::new();
    for p in ["/api/v1/alerts", "/", "/metrics"] {
        bodies.push(crate::daemon::get(&format!("{base}{p}")).await.1);
    }
    daemon.kill().await.unwrap();
    assert!(bodies[0].contains("source_unhealthy"), "{}", bodies[0]);

    let mut texts: Vec<(String, String)> = Vec::new();
    for o in &outputs {
        texts.push(("stdout".into(), String::from_utf8_lossy(&o.stdout).into()));
        texts.push(("stderr".into(), String::from_utf8_lossy(&o.stderr).into()));
    }
    texts.extend(bodies.into_iter().map(|b| ("HTTP".to_owned(), b)));
    let received = hook.received();
    assert!(received
        .iter()
        .any(|r| r.body["rule"] == "source_unhealthy"));
    texts.extend(
        received
            .iter()
            .map(|r| ("webhook".to_owned(), r.body.to_string())),
    );
    let mails = smtp.mails();
    assert!(!mails.is_empty());
    texts.extend(
        mails
            .iter()
            .map(|m| ("email".to_owned(), decode_mail(&m.data).1)),
    );
    texts.push(("daemon log".into(), std::fs::read_to_string(&log).unwrap()));
    for (what, text) in &texts {
        assert!(
            !text.contains(ADMIN_KEY),
            "the admin key leaked into the {what}"
        );
    }
    let mut files = Vec::new();
    stored_bytes(app.dir.path(), &mut files);
    for (name, bytes) in &files {
        let needle = ADMIN_KEY.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the admin key is in {name}"
        );
    }
}

#[tokio::test]
async fn money_in_alert_json_has_no_float_noise() {
    let mut prices = String::new();
    for model in ["noise-a", "noise-b"] {
        prices.push_str(&format!(
            "[prices.\"{model}\"]\ninput = 1.0\noutput = 1.0\ncache_write_5m = 0.0\ncache_write_1h = 0.0\ncache_read = 0.0\n"
        ));
    }
    let app = spawn_app_with(&format!(
        "{prices}[[budgets]]\nname = \"noise\"\ndaily_usd = 0.25\nthresholds = [100]\n"
    ))
    .await;
    old_key(&app, "apikey_money", "money-key");
    // $0.10 and $0.20 in the current hour: in binary floating point they add up to
    // 0.30000000000000004.
    app.fake.add_usage(
        this_hour(),
        row(Some("apikey_money"), "noise-a", 100_000, 0),
    );
    app.fake.add_usage(
        this_hour(),
        row(Some("apikey_money"), "noise-b", 200_000, 0),
    );
    app.cli_ok(&["run", "--once"]).await;
    let alerts: Value =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let budget = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "budget")
        .unwrap_or_else(|| panic!("the budget fired: {alerts:#}"));
    assert_eq!(budget["observed"].to_string(), "0.3", "{budget:#}");
    assert_eq!(budget["baseline"].to_string(), "0.25", "{budget:#}");
}
