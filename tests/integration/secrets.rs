//! Secrets never reach logs, command output, Debug output or the database.

use std::path::Path;
use std::process::Output;

use crate::fake_anthropic::{key_old_shape, ADMIN_KEY};
use crate::helpers::{row, spawn_app, this_hour, HOUR};

/// Fails when any of `secrets` appears in the commands' stdout or stderr.
fn assert_not_in_output(outputs: &[&Output], secrets: &[&str]) {
    for out in outputs {
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream);
            for secret in secrets {
                assert!(!text.contains(secret), "a secret leaked into output");
            }
        }
    }
}

/// Fails when any of `secrets` is in the database files (main, -wal, -shm) in `dir`.
fn assert_not_stored(dir: &Path, secrets: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().contains("keywatch.db") {
            continue;
        }
        // The -wal and -shm files may vanish as the last connection closes.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for secret in secrets {
            let needle = secret.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a secret is stored in {}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn the_admin_key_never_appears_in_logs_output_or_the_database() {
    let app = spawn_app().await;
    app.fake.add_key(key_old_shape(
        "apikey_01A",
        "prod-rag",
        "active",
        "2026-05-01T00:00:00Z",
        None,
    ));
    app.fake.add_usage(
        this_hour() - 4 * HOUR,
        row(Some("apikey_01A"), "claude-sonnet-4-20250514", 10, 1),
    );

    // Everything logged at the most verbose level, including the HTTP and SQL libraries.
    let run = app.cli(&["run", "--once"], &[("RUST_LOG", "trace")]).await;
    let check = app.cli(&["check-config"], &[("RUST_LOG", "trace")]).await;
    let history = app
        .cli(
            &["history", "--key", "apikey_01A"],
            &[("RUST_LOG", "trace")],
        )
        .await;

    assert_eq!(run.status.code(), Some(0));
    assert!(!app.stored_rows().await.is_empty(), "the run stored data");
    assert!(
        !String::from_utf8_lossy(&run.stderr).is_empty(),
        "trace logging produced output"
    );
    assert_not_in_output(&[&run, &check, &history], &[ADMIN_KEY, "TESTKEY"]);
    assert_not_stored(app.dir.path(), &[ADMIN_KEY]);
}

#[tokio::test]
async fn debug_output_of_the_config_redacts_the_admin_key() {
    let app = spawn_app().await;
    let debug = format!("{:?}", app.config());
    assert!(!debug.contains(ADMIN_KEY));
    assert!(debug.contains("admin_key"));
}

#[tokio::test]
async fn notifier_secrets_never_appear_in_logs_output_or_the_database() {
    const SMTP_PASSWORD: &str = "smtp-pa55word-TESTONLY";
    let smtp = crate::receivers::SmtpServer::start(false);
    let hook = crate::receivers::WebhookReceiver::start().await;
    let pd = crate::receivers::WebhookReceiver::start().await;
    let mut app = crate::helpers::spawn_app_with(&format!(
        "[[notifiers]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\n\
         tls = \"none\"\nusername_env = \"TEST_SMTP_USER\"\npassword_env = \"TEST_SMTP_PASSWORD\"\n\
         from = \"keywatch@example.com\"\nto = [\"oncall@example.com\"]\n\
         [[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\n\
         [[notifiers]]\nname = \"pd\"\nkind = \"webhook\"\nurl = \"{}\"\nformat = \"pagerduty\"\n\
         routing_key_env = \"TEST_PD_ROUTING_KEY\"\n",
        smtp.port,
        hook.url(),
        pd.url()
    ))
    .await;
    app.env.insert("TEST_SMTP_USER".into(), "smtp-user".into());
    app.env
        .insert("TEST_SMTP_PASSWORD".into(), SMTP_PASSWORD.into());
    app.fake.add_key(key_old_shape(
        "apikey_old",
        "legacy",
        "active",
        "2025-01-01T00:00:00Z",
        None,
    ));

    let outputs = [
        app.cli(&["run", "--once"], &[("RUST_LOG", "trace")]).await,
        app.cli(&["test-notify"], &[("RUST_LOG", "trace")]).await,
        app.cli(&["check-config"], &[("RUST_LOG", "trace")]).await,
    ];

    assert!(
        !pd.received().is_empty(),
        "the PagerDuty receiver got the event"
    );
    let secrets = [
        SMTP_PASSWORD,
        crate::receivers::WEBHOOK_SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "R0UT1NGKEY-test",
    ];
    assert_not_in_output(&outputs.iter().collect::<Vec<_>>(), &secrets);
    assert_not_stored(app.dir.path(), &secrets);
}
