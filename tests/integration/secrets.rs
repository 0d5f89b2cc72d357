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

/// Fails when any of `secrets` is in a file under `dir` (the database and its -wal/-shm, lock
/// files, exports, logs); the config, which names variables and never values, is skipped.
fn assert_not_stored(dir: &Path, secrets: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_not_stored(&path, secrets);
            continue;
        }
        if path.extension().is_some_and(|e| e == "toml") {
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
                "a secret is in {}",
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

/// Every secret keywatch handles, as the sweep below sets them.
const SWEEP_SMTP_PASSWORD: &str = "smtp-SENTINEL-pa55word-4c1e";

#[tokio::test]
async fn no_secret_reaches_any_command_log_file_or_failure_message() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};

    let oa = crate::fake_openai::FakeOpenAi::start().await;
    let broken_hook = crate::receivers::WebhookReceiver::start().await;
    broken_hook.fail_next(usize::MAX);
    let redirecting_pd = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", "http://127.0.0.1:9/"))
        .mount(&redirecting_pd)
        .await;
    let closed_smtp_port = crate::daemon::free_port();
    let http_port = crate::daemon::free_port();
    let mut app = crate::helpers::spawn_app_with_lookback(
        "8d",
        &format!(
            "[[sources]]\nname = \"openai-test\"\nprovider = \"openai\"\n\
             admin_key_env = \"TEST_OPENAI_ADMIN_KEY\"\nbase_url = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\ntoken_env = \"TEST_HTTP_TOKEN\"\n\
             [delivery]\ntimeout = \"2s\"\n\
             [[notifiers]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {closed_smtp_port}\n\
             tls = \"none\"\nusername_env = \"TEST_SMTP_USER\"\npassword_env = \"TEST_SMTP_PASSWORD\"\n\
             from = \"keywatch@example.com\"\nto = [\"oncall@example.com\"]\n\
             [[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\n\
             [[notifiers]]\nname = \"pd\"\nkind = \"webhook\"\nurl = \"{}/enqueue\"\nformat = \"pagerduty\"\n\
             routing_key_env = \"TEST_PD_ROUTING_KEY\"\n",
            oa.server.uri(),
            broken_hook.url(),
            redirecting_pd.uri()
        ),
    )
    .await;
    app.env.insert("TEST_SMTP_USER".into(), "smtp-user".into());
    app.env
        .insert("TEST_SMTP_PASSWORD".into(), SWEEP_SMTP_PASSWORD.into());
    let secrets = [
        ADMIN_KEY,
        crate::fake_openai::OPENAI_ADMIN_KEY,
        SWEEP_SMTP_PASSWORD,
        crate::receivers::WEBHOOK_SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "R0UT1NGKEY-test",
        "s3cret-dashboard-token",
    ];
    app.fake.add_key(key_old_shape(
        "apikey_old",
        "legacy",
        "active",
        "2025-01-01T00:00:00Z",
        None,
    ));
    for h in 0..48 {
        app.fake.add_usage(
            this_hour() - h * HOUR,
            row(Some("apikey_old"), "claude-sonnet-4-20250514", 10 + h, 1),
        );
    }
    // First both admin keys are rejected (the failure path), then accepted.
    let rejected = ResponseTemplate::new(401).set_body_json(serde_json::json!({"type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"}}));
    Mock::given(method("GET"))
        .and(path(crate::fake_anthropic::USAGE_PATH))
        .respond_with(rejected.clone())
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.fake.server)
        .await;
    Mock::given(method("GET"))
        .respond_with(rejected)
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&oa.server)
        .await;

    let trace = [("RUST_LOG", "trace")];
    let mut outputs = Vec::new();
    outputs.push(app.cli(&["run", "--once"], &trace).await); // providers reject, notifiers fail
    outputs.push(app.cli(&["run", "--once"], &trace).await); // providers accept, notifiers fail
    outputs.push(
        app.cli(&["--log-format", "json", "run", "--once"], &trace)
            .await,
    );
    let export_dir = app.dir.path().join("evidence");
    let export = export_dir.to_string_lossy().into_owned();
    for args in [
        &["check-config"][..],
        &["test-notify"],
        &["alerts", "--all", "--format", "json"],
        &["history", "--key", "apikey_old", "--format", "csv"],
        &["report", "--format", "csv"],
        &["report", "--forecast"],
        &["backtest"],
        &["silence", "--key", "apikey_old", "--reason", "sweep"],
        &["silences"],
        &[
            "export",
            "--key",
            "apikey_old",
            "--since",
            "3d",
            "--out",
            &export,
        ],
        &["history", "--key", "no-such-key"],
        &["report", "--period", "fortnight"],
    ] {
        let out = app.cli(args, &trace).await;
        let expected = match args[0] {
            "test-notify" => 1, // every notifier fails here
            _ if args.contains(&"no-such-key") => 1,
            _ if args.contains(&"fortnight") => 1,
            _ => 0,
        };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
        outputs.push(out);
    }
    // The daemon, with its HTTP API asked with and without the token.
    let log = app.dir.path().join("daemon.log");
    let mut daemon = crate::daemon::start_daemon_logging(&app, &log, Some("trace"));
    let base = format!("http://127.0.0.1:{http_port}");
    crate::daemon::get(&format!("{base}/healthz")).await;
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    for p in [
        "/api/v1/keys",
        "/api/v1/alerts",
        "/",
        "/metrics",
        "/keys/apikey_old",
    ] {
        for token in [None, Some("s3cret-dashboard-token"), Some("wrong-token")] {
            let mut req = client.get(format!("{base}{p}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            bodies.push(r.text().await.unwrap());
        }
    }
    daemon.kill().await.unwrap();

    assert_not_in_output(&outputs.iter().collect::<Vec<_>>(), &secrets);
    for body in &bodies {
        for s in &secrets {
            assert!(!body.contains(s), "a secret is in an HTTP answer");
        }
    }
    assert!(export_dir.join("SHA256SUMS").exists(), "the export ran");
    assert!(
        std::fs::read_to_string(&log).unwrap().len() > 1_000,
        "the daemon logged"
    );
    assert_not_stored(app.dir.path(), &secrets);
}
