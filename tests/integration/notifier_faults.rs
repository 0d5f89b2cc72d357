//! Notifier faults: SMTP servers that hang after EHLO, reject the recipient or drop the
//! connection mid-DATA; webhook receivers that time out, redirect, or answer 5xx for an hour
//! (simulated time, no sleeping). Failed attempts are retried with backoff, a notification
//! acknowledged once is never sent again, and one undeliverable past its age is expired.

use std::time::{Duration, Instant};

use keywatch::notify::{Mode, Outbox};
use keywatch::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{spawn_app_with, TestApp};
use crate::notify::{email, seed, webhook};
use crate::receivers::{SmtpServer, WebhookReceiver};

/// How a scripted SMTP server misbehaves.
#[derive(Clone, Copy, Debug)]
enum SmtpFault {
    HangAfterEhlo,
    RejectRcpt,
    DropMidData,
}

/// A scripted SMTP server on loopback; returns its port.
async fn faulty_smtp(fault: SmtpFault) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let _ = write.write_all(b"220 faulty.test ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match (verb.as_str(), fault) {
                        ("EHLO", SmtpFault::HangAfterEhlo) => {
                            let _ = write.write_all(b"250 faulty.test\r\n").await;
                            tokio::time::sleep(Duration::from_secs(3_600)).await;
                            return;
                        }
                        ("EHLO" | "HELO", _) => b"250 faulty.test\r\n",
                        ("RCPT", SmtpFault::RejectRcpt) => {
                            b"550 5.1.1 <oncall@example.com>: no such user\r\n"
                        }
                        ("DATA", SmtpFault::DropMidData) => {
                            let _ = write.write_all(b"354 go ahead\r\n").await;
                            let mut some = [0u8; 64];
                            let _ = lines.read(&mut some).await;
                            return; // drops the connection mid-message
                        }
                        ("DATA", _) => b"354 go ahead\r\n",
                        ("QUIT", _) => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn with_timeout(extra: &str) -> String {
    format!("[delivery]\ntimeout = \"1s\"\nexpire_after = \"6h\"\n{extra}")
}

fn set_smtp_port(app: &TestApp, from: u16, to: u16) {
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace(
            &format!("smtp_port = {from}\n"),
            &format!("smtp_port = {to}\n"),
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn smtp_faults_keep_the_mail_pending_and_a_working_server_then_gets_it_once() {
    for fault in [
        SmtpFault::HangAfterEhlo,
        SmtpFault::RejectRcpt,
        SmtpFault::DropMidData,
    ] {
        let port = faulty_smtp(fault).await;
        let app = spawn_app_with(&with_timeout(&email("mail", port))).await;
        seed(&app);
        let started = Instant::now();
        let out = app.cli(&["run", "--once"], &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{fault:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{fault:?}: {:?}",
            started.elapsed()
        );
        assert!(
            stderr.contains("notification failed; will retry"),
            "{fault:?}: {stderr}"
        );
        if let SmtpFault::RejectRcpt = fault {
            assert!(stderr.contains("no such user"), "{stderr}");
        }
        if let SmtpFault::HangAfterEhlo = fault {
            assert!(
                stderr.contains("no answer within 1s (delivery.timeout)"),
                "{stderr}"
            );
        }
        assert!(!stderr.contains("panicked"));

        let good = SmtpServer::start(false);
        set_smtp_port(&app, port, good.port);
        app.cli_ok(&["run", "--once"]).await;
        app.cli_ok(&["run", "--once"]).await;
        assert_eq!(
            good.mails().len(),
            1,
            "{fault:?}: one mail listing the alerts, once"
        );
    }
}

#[tokio::test]
async fn a_webhook_that_times_out_is_retried_with_the_same_id_and_delivered_once() {
    let hook = WebhookReceiver::start().await;
    hook.set_delay(Duration::from_secs(3));
    let app = spawn_app_with(&with_timeout(&webhook("hook", &hook.url(), "json", "info"))).await;
    seed(&app);
    let out = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(out.status.code(), Some(75));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no answer within delivery.timeout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hook.set_delay(Duration::ZERO);
    app.cli_ok(&["run", "--once"]).await;
    app.cli_ok(&["run", "--once"]).await;
    let received = hook.received();
    let alerts = 2;
    let ids: std::collections::BTreeSet<_> =
        received.iter().map(|r| r.webhook_id.clone()).collect();
    assert_eq!(
        ids.len(),
        alerts,
        "each notification keeps its webhook-id across attempts"
    );
    // The receiver answered the timed-out attempts late, so it may have seen them: what counts is
    // that nothing is sent after an acknowledged attempt.
    let after_ack = received.len();
    app.cli_ok(&["run", "--once"]).await;
    assert_eq!(hook.received().len(), after_ack);
}

#[tokio::test]
async fn a_redirecting_webhook_is_not_followed() {
    let elsewhere = WebhookReceiver::start().await;
    let redirector = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", elsewhere.url().as_str()),
        )
        .mount(&redirector)
        .await;
    let url = format!("{}/hook", redirector.uri());
    let app = spawn_app_with(&with_timeout(&webhook("hook", &url, "json", "info"))).await;
    seed(&app);
    let out = app.cli(&["run", "--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("HTTP 307"), "{stderr}");
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
}

async fn states(store: &Store) -> Vec<(String, String, i64)> {
    crate::backend::on_pool!(store, |p| sqlx::query_as(
        "SELECT notifier, state, attempts FROM deliveries ORDER BY notifier, id"
    )
    .fetch_all(p)
    .await)
    .unwrap()
}

#[tokio::test]
async fn a_receiver_failing_for_an_hour_gets_a_handful_of_attempts_then_one_delivery() {
    let flaky = WebhookReceiver::start().await;
    let dead = WebhookReceiver::start().await;
    flaky.fail_next(usize::MAX);
    dead.fail_next(usize::MAX);
    let app = spawn_app_with(&with_timeout(&format!(
        "{}{}",
        webhook("flaky", &flaky.url(), "json", "info"),
        webhook("dead", &dead.url(), "json", "info")
    )))
    .await;
    seed(&app);
    let report = app.run_once().await;
    assert_eq!(report.undelivered, 4);
    let first_pass = flaky.received().len();

    let metrics = keywatch::metrics::handle().expect("the in-process metrics recorder");
    let config = std::sync::Arc::new(app.config());
    let store = app.open_store().await;
    let outbox = Outbox::new(std::sync::Arc::clone(&config));
    let t0 = chrono::Utc::now().timestamp();
    // An hour of 5xx, one outbox pass per simulated minute.
    for minute in 1..=60 {
        outbox
            .deliver_at(&store, Mode::Due, t0 + minute * 60)
            .await
            .unwrap();
    }
    let in_the_hour = flaky.received().len() - first_pass;
    assert!(
        (2..=2 * 6).contains(&in_the_hour),
        "{in_the_hour} attempts for 2 notifications in an hour of 5xx: backoff, not once a minute"
    );
    // The receiver recovers: each notification is delivered once and never again.
    flaky.fail_next(0);
    for minute in 61..=240 {
        outbox
            .deliver_at(&store, Mode::Due, t0 + minute * 60)
            .await
            .unwrap();
    }
    let accepted = flaky.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:#?}");
    let ids: std::collections::BTreeSet<_> = flaky
        .received()
        .iter()
        .map(|r| r.webhook_id.clone())
        .collect();
    assert_eq!(ids.len(), 2, "retries reuse the webhook-id");
    // Past expire_after (6h) the dead receiver's notifications are given up.
    for minute in 241..=400 {
        outbox
            .deliver_at(&store, Mode::Due, t0 + minute * 60)
            .await
            .unwrap();
    }
    let states = states(&store).await;
    assert!(
        states
            .iter()
            .filter(|s| s.0 == "dead")
            .all(|s| s.1 == "expired"),
        "{states:?}"
    );
    assert!(
        states
            .iter()
            .filter(|s| s.0 == "flaky")
            .all(|s| s.1 == "delivered"),
        "{states:?}"
    );
    assert_eq!(flaky.accepted().len(), 2);
    let rendered = metrics.render();
    assert!(
        rendered.contains("keywatch_deliveries_expired_total{notifier=\"dead\"} 2"),
        "{rendered}"
    );
    println!(
        "notifier faults: {} attempts in an hour of 5xx for 2 notifications, {} to the dead receiver before expiry",
        in_the_hour,
        dead.received().len()
    );
    store.close().await;
}
