//! `keywatch migrate-storage`: a SQLite deployment with usage, a fired and delivered alert and
//! its session secret moves to PostgreSQL, and `report`/`history`/`alerts` say the same there.
//! Needs a PostgreSQL server: `KEYWATCH_TEST_POSTGRES` (an admin URL, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); the source must be SQLite, so the test runs
//! only in the suite's SQLite pass.

use std::io::Write;
use std::process::Output;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::helpers::{row, spawn_app_with, this_hour, TestApp, HOUR};
use crate::notify::{seed, webhook};
use crate::receivers::WebhookReceiver;

const SONNET: &str = "claude-sonnet-4-20250514";

/// A throw-away database on the admin server, dropped (WITH (FORCE)) by [`Target::drop`].
struct Target {
    admin: String,
    name: String,
    url: String,
}

impl Target {
    async fn create(admin: &str) -> Target {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).expect("randomness");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // kwt_ like the suite's databases, so .ci/run drops it should the test stop early.
        let name = format!("kwt_migrate_{hex}");
        let mut conn = admin_conn(admin).await;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the target database");
        let _ = conn.close().await;
        let mut url = reqwest::Url::parse(admin).expect("KEYWATCH_TEST_POSTGRES is a URL");
        url.set_path(&name);
        Target {
            admin: admin.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    async fn conn(&self) -> PgConnection {
        admin_conn(&self.url).await
    }

    async fn drop(self) {
        let mut conn = admin_conn(&self.admin).await;
        sqlx::raw_sql(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .expect("drop the target database");
        let _ = conn.close().await;
    }
}

async fn admin_conn(url: &str) -> PgConnection {
    PgConnectOptions::from_str(url)
        .expect("a PostgreSQL URL")
        .connect()
        .await
        .expect("connect to KEYWATCH_TEST_POSTGRES")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What the read commands print, compared before and after the move.
async fn views(app: &TestApp) -> Vec<String> {
    // Fixed times: the table's header names them.
    let since = crate::fake_anthropic::rfc3339(this_hour() - 48 * HOUR);
    let until = crate::fake_anthropic::rfc3339(this_hour() + HOUR);
    let mut out = Vec::new();
    for args in [
        &[
            "report",
            "--by",
            "key,model",
            "--last",
            "3",
            "--format",
            "csv",
        ][..],
        &["report", "--by", "key", "--last", "3"][..],
        &[
            "history",
            "--key",
            "apikey_old",
            "--since",
            "2d",
            "--format",
            "csv",
        ][..],
        &[
            "history",
            "--key",
            "apikey_gone",
            "--since",
            &since,
            "--until",
            &until,
        ][..],
        &["alerts", "--all", "--format", "json"][..],
        &["keys", "--format", "json"][..],
    ] {
        out.push(app.cli_ok(args).await);
    }
    out
}

#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgres_with_its_whole_history() {
    crate::backend::sqlite_only!("the source of a migration is a SQLite file");
    let Ok(admin) = std::env::var(crate::backend::POSTGRES_ENV) else {
        let _ = writeln!(
            std::io::stderr(),
            "*** SKIPPED: KEYWATCH_TEST_POSTGRES not set: migrate_storage needs a PostgreSQL server ***"
        );
        return;
    };
    let hook = WebhookReceiver::start().await;
    let app = spawn_app_with(&webhook("hook", &hook.url(), "json", "warning")).await;
    seed(&app);
    for h in 0..30 {
        let t = this_hour() - (4 + h) * HOUR;
        app.fake
            .add_usage(t, row(Some("apikey_old"), SONNET, 1_000 + h * 37, 300 + h));
        app.fake
            .add_usage(t, row(None, "claude-unpriced-x", 2_000, 100));
    }
    assert!(app.run_once().await.all_done());
    assert!(
        hook.accepted().iter().any(|r| r.body["rule"] == "key_age"),
        "the alert was delivered before the move"
    );
    let store = app.open_store().await;
    let session = store.server_secret("session").await.unwrap();
    store.close().await;
    let before = views(&app).await;

    let target = Target::create(&admin).await;
    let from = format!("sqlite://{}", app.db_path().display());
    let migrate = |to: String| {
        let from = from.clone();
        async move {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"));
            // No config is read: none exists at this path.
            cmd.args(["--config", "/nonexistent/keywatch.toml", "migrate-storage"])
                .args(["--from", &from, "--to", &to])
                .args(["--to-password-env", "KW_TEST_PG_PASSWORD"])
                .env("KW_TEST_PG_PASSWORD", "trust-auth-ignores-this")
                .env_remove("RUST_LOG");
            cmd.output().await.expect("the keywatch binary runs")
        }
    };

    // A running `keywatch run` holds the SQLite lock: refused.
    let lock = keywatch::store::InstanceLock::acquire(&app.db_path()).unwrap();
    let out = migrate(target.url.clone()).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stop `keywatch run` first"), "{stderr}");
    drop(lock);

    let out = migrate(target.url.clone()).await;
    let (stdout, stderr) = text(&out);
    eprintln!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains("trust-auth-ignores-this")
            && !format!("{stdout}{stderr}").contains(&session),
        "no secret is printed"
    );
    let header = stdout.lines().next().unwrap();
    assert!(
        header
            .split_whitespace()
            .eq(["table", "rows", "checks", "ok"]),
        "{stdout}"
    );
    let sqlite = app.store().await;
    for table in [
        "api_keys",
        "usage_buckets",
        "usage_daily",
        "zone_offsets",
        "rollup_zones",
        "alerts",
        "alert_events",
        "deliveries",
        "poll_state",
        "server_secrets",
        "usage_staging",
        "rollup_paused",
    ] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(sqlite.pool_ref())
            .await
            .unwrap();
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .unwrap_or_else(|| panic!("no line for {table}: {stdout}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1], rows.to_string(), "{line}");
        assert_eq!(cells[3], "ok", "{line}");
        if !matches!(table, "usage_staging" | "rollup_paused") {
            assert!(rows > 0, "the scenario fills {table}");
        }
    }
    sqlite.close().await;
    assert!(stdout.contains("every table matches"), "{stdout}");
    assert!(stderr.contains("copying"), "{stderr}");

    // The copy is faithful: the session key, and new ids after the copied ones.
    let mut pg = target.conn().await;
    let copied: String =
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'session'")
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert!(copied == session, "the session key moved");
    let (max, next): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT MAX(seq) FROM alert_events),
                nextval(pg_get_serial_sequence('alert_events', 'seq'))",
    )
    .fetch_one(&mut pg)
    .await
    .unwrap();
    assert!(
        next > max,
        "a new alert event gets a fresh id: {next} after {max}"
    );
    let paused: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rollup_paused")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(paused, 0, "the rollup is not left paused");
    let _ = pg.close().await;

    // The same deployment on PostgreSQL prints the same numbers.
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    let moved = config.replace(
        &format!("url = \"{}\"", app.storage_url),
        &format!("url = \"{}\"", target.url),
    );
    assert_ne!(config, moved);
    std::fs::write(&app.config_path, moved).unwrap();
    let after = views(&app).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "the same output on PostgreSQL");
    }

    // Never merged: a second migration into the same database is refused, naming a table.
    let out = migrate(target.url.clone()).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already holds rows") && stderr.contains("api_keys: "),
        "{stderr}"
    );

    // Arguments that are not what they must be: 78, naming the argument.
    for (to, named) in [
        ("mysql://root@127.0.0.1/keywatch".to_owned(), "--to"),
        (
            target.url.replace("postgres@", "postgres:hunter22@"),
            "--to",
        ),
    ] {
        let out = migrate(to.clone()).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(78), "{to}: {stderr}");
        assert!(stderr.contains(named), "{to}: {stderr}");
        assert!(
            !format!("{stdout}{stderr}").contains("hunter22"),
            "{stderr}"
        );
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"))
        .args([
            "migrate-storage",
            "--from",
            &target.url,
            "--to",
            &target.url,
        ])
        .output()
        .await
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("--from"), "{stderr}");

    target.drop().await;
}
