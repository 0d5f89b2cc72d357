//! Items 12, 14 and 26 (email): the pending gauge after an outage, capped email batches that a
//! refused message cannot block, threading headers, and the digest's wording and escaping.

use std::sync::{Arc, Mutex};

use super::{decode_mail, header, old_key, DAY};
use crate::fake_anthropic::{key_old_shape, rfc3339};
use crate::helpers::{row, spawn_app_with, this_hour, HOUR};
use crate::notify::{email, webhook};
use crate::receivers::{SmtpServer, WebhookReceiver};

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
    let store = app.open_store().await;
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

    let store = app.store().await;
    let pending: Vec<(String, i64)> = crate::backend::on_pool!(store, |p| sqlx::query_as(
        "SELECT alert_id, attempts FROM deliveries WHERE state = 'pending' AND notifier = 'picky-mail'",
    )
    .fetch_all(p)
    .await)
    .unwrap();
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
