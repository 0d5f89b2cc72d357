//! Issue #13, output items: the pending-deliveries gauge after an outage (12), capped email
//! batches that one refused message cannot block (14), Slack escaping (17), control characters
//! in tables, logs and emails (18), CSV formula injection (19), the admin key quoted in a
//! provider's error body (20), and email threading headers, money and wording (26).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::Value;
use sqlx::Row;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_anthropic::{key_old_shape, rfc3339, ADMIN_KEY, USAGE_PATH};
use crate::helpers::{row, spawn_app_with, this_hour, TestApp, HOUR};
use crate::notify::{email, webhook};
use crate::receivers::{SmtpServer, WebhookReceiver};

const DAY: i64 = 86_400;

fn old_key(app: &TestApp, id: &str, name: &str) {
    let created = rfc3339(chrono::Utc::now().timestamp() - 209 * DAY);
    app.fake
        .add_key(key_old_shape(id, name, "active", &created, None));
}

/// A mail's header block and its body decoded (7bit, quoted-printable or base64).
fn decode_mail(data: &str) -> (String, String) {
    let data = data.replace("\r\n", "\n");
    let (head, body) = data.split_once("\n\n").unwrap_or((&data, ""));
    let encoding = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-transfer-encoding:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = match encoding.as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        "quoted-printable" => {
            let joined = body.replace("=\n", "");
            let raw = joined.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < raw.len() {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (raw[i], hex) {
                    (b'=', Some(b)) => {
                        out.push(b);
                        i += 3;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        _ => body.to_owned(),
    };
    (head.to_owned(), body)
}

/// The value of header `name` (first occurrence, unfolded).
fn header(head: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut lines = head.lines().peekable();
    while let Some(l) = lines.next() {
        if l.to_ascii_lowercase().starts_with(&prefix) {
            let mut v = l[prefix.len()..].trim().to_owned();
            while let Some(next) = lines.peek().filter(|n| n.starts_with([' ', '\t'])) {
                v.push(' ');
                v.push_str(next.trim());
                lines.next();
            }
            return Some(v);
        }
    }
    None
}

// ---- 12 -------------------------------------------------------------------------------------

#[tokio::test]
async fn the_pending_gauge_falls_back_to_zero_once_an_outage_is_over() {
    use keywatch::notify::{Mode, Outbox};
    let hook = WebhookReceiver::start().await;
    hook.fail_next(usize::MAX);
    let app = spawn_app_with(&webhook("gauge-outage-hook", &hook.url(), "json", "info")).await;
    crate::notify::seed(&app);
    let report = app.run_once().await;
    assert_eq!(report.undelivered, 2, "the receiver is down");

    let metrics = keywatch::metrics::handle().expect("the in-process metrics recorder");
    let gauge = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("keywatch_deliveries_pending{notifier=\"gauge-outage-hook\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let store = keywatch::store::Store::open(&app.db_path()).await.unwrap();
    // What /metrics shows during the outage.
    let during = keywatch::metrics::render(&store).await.unwrap();
    assert_eq!(gauge(&during), Some(2.0), "{during}");

    hook.fail_next(0);
    let outbox = Outbox::new(Arc::new(app.config()));
    let t0 = chrono::Utc::now().timestamp();
    for hour in 1..=3 {
        outbox
            .deliver_at(&store, Mode::Due, t0 + hour * HOUR)
            .await
            .unwrap();
    }
    assert_eq!(hook.accepted().len(), 2, "delivered after the outage");
    // After the pass itself, and as /metrics renders it.
    assert_eq!(gauge(&metrics.render()), Some(0.0));
    let after = keywatch::metrics::render(&store).await.unwrap();
    assert_eq!(gauge(&after), Some(0.0), "{after}");
    store.close().await;
}

// ---- 14 and 26 (email headers) --------------------------------------------------------------

/// A scripted SMTP server on loopback that refuses (552) a message over `limit` bytes and
/// (554) one whose text names `poison`, as size limits and content filters do; the session
/// goes on after a refusal, as with real servers.
struct PickySmtp {
    port: u16,
    accepted: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<Vec<u16>>>,
}

async fn picky_smtp(limit: usize, poison: &'static str) -> PickySmtp {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused: Arc<Mutex<Vec<u16>>> = Arc::default();
    let (acc, refs) = (Arc::clone(&accepted), Arc::clone(&refused));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acc, refs) = (Arc::clone(&acc), Arc::clone(&refs));
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let _ = write.write_all(b"220 picky.test ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 picky.test\r\n",
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        "DATA" => {
                            let _ = write.write_all(b"354 go ahead\r\n").await;
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                            }
                            if data.len() > limit {
                                refs.lock().unwrap().push(552);
                                b"552 5.3.4 message size exceeds fixed limit\r\n"
                            } else if decode_mail(&data).1.contains(poison) {
                                refs.lock().unwrap().push(554);
                                b"554 5.7.1 message content rejected\r\n"
                            } else {
                                acc.lock().unwrap().push(data);
                                b"250 2.0.0 queued\r\n"
                            }
                        }
                        _ => b"250 ok\r\n",
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    PickySmtp {
        port,
        accepted,
        refused,
    }
}

#[tokio::test]
async fn a_backlog_goes_out_in_capped_emails_and_a_refused_one_blocks_nothing() {
    const KEYS: usize = 400;
    const LIMIT: usize = 200_000;
    let smtp = picky_smtp(LIMIT, "apikey_poison").await;
    let app = spawn_app_with(&format!(
        "[delivery]\ntimeout = \"10s\"\n{}",
        email("picky-mail", smtp.port)
    ))
    .await;
    app.fake.data.lock().unwrap().keys_page_size = 100;
    for i in 0..KEYS {
        old_key(
            &app,
            &format!("apikey_{i:04}"),
            &format!("batch-key-{i:04}"),
        );
    }
    old_key(&app, "apikey_poison", "filtered");

    let out = app.cli(&["run", "--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(75),
        "the refused alert stays pending: {stderr}"
    );

    let accepted = smtp.accepted.lock().unwrap().clone();
    let mut delivered = std::collections::BTreeSet::new();
    for mail in &accepted {
        assert!(mail.len() <= LIMIT);
        let (head, body) = decode_mail(mail);
        assert_eq!(
            header(&head, "MIME-Version").as_deref(),
            Some("1.0"),
            "{head}"
        );
        assert!(
            header(&head, "Message-ID").is_some_and(|id| id.starts_with('<')),
            "{head}"
        );
        let ids: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("Alert id: "))
            .collect();
        assert!(
            (1..=keywatch::notify::MAX_ALERTS_PER_EMAIL).contains(&ids.len()),
            "{} alerts in one email",
            ids.len()
        );
        for id in ids {
            assert!(delivered.insert(id.to_owned()), "{id} delivered twice");
        }
    }
    assert_eq!(
        delivered.len(),
        KEYS,
        "every alert but the refused one arrived ({} emails, refused {:?}): {stderr}",
        accepted.len(),
        smtp.refused.lock().unwrap()
    );
    assert!(
        smtp.refused.lock().unwrap().contains(&554),
        "the filter refused the email naming the poisoned key"
    );

    let store = keywatch::store::Store::open_existing(&app.db_path())
        .await
        .unwrap();
    let pending: Vec<(String, i64)> = sqlx::query(
        "SELECT alert_id, attempts FROM deliveries WHERE state = 'pending' AND notifier = 'picky-mail'",
    )
    .fetch_all(store.pool_ref())
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    store.close().await;
    assert_eq!(
        pending.len(),
        1,
        "only the refused alert is pending: {pending:?}"
    );
    assert!(pending[0].1 >= 1, "and it was attempted");
    println!(
        "email batching: {KEYS} alerts in {} emails ({} refused by the server)",
        accepted.len(),
        smtp.refused.lock().unwrap().len()
    );

    // New alerts do not join the stuck one: the next run sends only what is new.
    old_key(&app, "apikey_late", "late-key");
    let before = accepted.len();
    let out = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(out.status.code(), Some(75));
    let now = smtp.accepted.lock().unwrap().clone();
    assert!(
        now[before..]
            .iter()
            .any(|m| decode_mail(m).1.contains("late-key")),
        "the new alert was delivered despite the pending one"
    );
}

#[tokio::test]
async fn a_resolve_email_answers_its_firing_email() {
    let smtp = SmtpServer::start(false);
    let app = spawn_app_with(&email("thread-mail", smtp.port)).await;
    old_key(&app, "apikey_thread", "threaded-key");
    app.cli_ok(&["run", "--once"]).await;
    app.fake.set_key_status("apikey_thread", "inactive");
    app.cli_ok(&["run", "--once"]).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "firing, then resolved");
    let (firing, _) = decode_mail(&mails[0].data);
    let (resolved, body) = decode_mail(&mails[1].data);
    assert!(body.contains("RESOLVED"), "{body}");
    let firing_id = header(&firing, "Message-ID").expect("the firing email has a Message-ID");
    let resolved_id = header(&resolved, "Message-ID").expect("so has the resolve");
    assert_ne!(firing_id, resolved_id);
    assert_eq!(header(&resolved, "In-Reply-To"), Some(firing_id.clone()));
    assert_eq!(header(&resolved, "References"), Some(firing_id));
    for head in [&firing, &resolved] {
        assert_eq!(header(head, "MIME-Version").as_deref(), Some("1.0"));
    }
}

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

#[tokio::test]
async fn the_daily_digest_says_daily_threads_and_escapes_for_slack() {
    let smtp = SmtpServer::start(false);
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&format!(
        "{}{}[[digests]]\nname = \"daily-spend\"\nschedule = \"daily\"\nat = \"00:00\"\ntimezone = \"UTC\"\nnotifiers = [\"digest-mail\", \"digest-slack\"]\n",
        email("digest-mail", smtp.port),
        webhook("digest-slack", &hook.url(), "slack", "critical")
    ))
    .await;
    let created = rfc3339(chrono::Utc::now().timestamp() - 10 * DAY);
    app.fake.add_key(key_old_shape(
        "apikey_dg",
        "<!channel> <https://evil.example|open>\u{1b}[2J",
        "active",
        &created,
        None,
    ));
    let yesterday = this_hour().div_euclid(DAY) * DAY - DAY;
    app.fake.add_usage(
        yesterday + 3 * HOUR,
        row(Some("apikey_dg"), "claude-sonnet-4-20250514", 50_000, 5_000),
    );
    app.cli_ok(&["run", "--once"]).await;

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one digest mail");
    let mail = &mails[0].data;
    assert!(mail.contains("keywatch daily digest"), "{mail}");
    assert!(!mail.contains("dayly"), "{mail}");
    assert!(!mail.contains('\u{1b}'), "{mail}");
    let (head, _) = decode_mail(mail);
    assert_eq!(header(&head, "MIME-Version").as_deref(), Some("1.0"));
    assert!(header(&head, "Message-ID").is_some(), "{head}");

    let posts = hook.received();
    let digest = posts
        .iter()
        .find(|r| {
            r.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("digest"))
        })
        .expect("the Slack digest");
    let text = digest.body["text"].as_str().unwrap();
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://"),
        "{text}"
    );
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
}
