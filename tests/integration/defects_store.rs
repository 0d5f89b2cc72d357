//! Regressions of the defects issue (#13) in storage: the one-run lock through a symlink, stored
//! values this version does not know, budget alerts on a key id two sources hold, and read
//! commands that must never migrate the database.

use crate::daemon::{free_port, get};
use crate::fake_anthropic::key_new_shape;
use crate::helpers::{row, spawn_app_with, this_hour, TestApp};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn seed(app: &TestApp) {
    app.fake.add_key(key_new_shape(
        "apikey_shared",
        "gateway",
        "active",
        "2026-11-01T00:00:00Z",
        None,
    ));
    // $3 + $15 per million: about $0.60 in the current hour.
    app.fake.add_usage(
        this_hour(),
        row(
            Some("apikey_shared"),
            "claude-sonnet-4-20250514",
            100_000,
            10_000,
        ),
    );
}

/// Runs `statement` (one or more, `;`-separated) on the app's database past keywatch's store,
/// as a hand edit would.
async fn sql(app: &TestApp, statement: &str) {
    if crate::backend::is_postgres() {
        let pool = sqlx::PgPool::connect(&app.storage_url).await.unwrap();
        sqlx::raw_sql(statement).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let conn = rusqlite::Connection::open(app.db_path()).unwrap();
        conn.execute_batch(statement).unwrap();
    }
}

#[tokio::test]
async fn a_database_named_through_a_symlink_is_still_locked_by_the_running_daemon() {
    crate::backend::sqlite_only!("the SQLite file lock");
    let port = free_port();
    let app = spawn_app_with(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    seed(&app);
    let mut daemon = crate::daemon::start_daemon(&app);
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/healthz")).await.0,
        200
    );

    // A second config naming the same file through a symlink (another folder, another name).
    let other = tempfile::tempdir().unwrap();
    let alias = other.path().join("alias.db");
    std::os::unix::fs::symlink(app.db_path(), &alias).unwrap();
    let text = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replace(
            "sqlite://keywatch.db",
            &format!("sqlite://{}", alias.display()),
        )
        .replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", free_port()),
        );
    let second = TestApp {
        config_path: other.path().join("keywatch.toml"),
        ..spawn_app_with("").await
    };
    std::fs::write(&second.config_path, text).unwrap();
    let out = second.cli(&["run", "--once"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another keywatch process is running on"),
        "two daemons ran on one database: {}",
        stderr(&out)
    );
    daemon.kill().await.unwrap();
    daemon.wait().await.unwrap();
}

#[tokio::test]
async fn unknown_stored_values_are_errors_naming_them_never_re_read_as_something_else() {
    let app = spawn_app_with(
        "[[budgets]]\nname = \"gateway\"\nkey_id = \"apikey_shared\"\ndaily_usd = 0.10\n",
    )
    .await;
    seed(&app);
    app.cli_ok(&["run", "--once"]).await;
    assert!(app.cli_ok(&["alerts"]).await.contains("gateway"));

    for (column, value) in [
        ("rule", "frobnicate"),
        ("severity", "page-everyone"),
        ("status", "acknowledged"),
    ] {
        sql(&app, &format!("UPDATE alerts SET {column} = '{value}'")).await;
        let out = app.cli(&["alerts", "--all"], &[]).await;
        assert_eq!(out.status.code(), Some(1), "{column}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(value) && stderr(&out).contains(column),
            "{}",
            stderr(&out)
        );
        sql(
            &app,
            "DELETE FROM deliveries; DELETE FROM alert_events; DELETE FROM alerts",
        )
        .await;
        app.cli_ok(&["run", "--once"]).await;
    }
}

#[tokio::test]
async fn a_budget_on_a_key_id_two_sources_hold_names_no_random_source() {
    let app = spawn_app_with(
        "[[budgets]]\nname = \"gateway\"\nkey_id = \"apikey_shared\"\ndaily_usd = 0.10\n",
    )
    .await;
    // A second source on the same organisation: both hold apikey_shared.
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    let twin = format!(
        "\n[[sources]]\nname = \"anthropic-twin\"\nprovider = \"anthropic\"\n\
         admin_key_env = \"TEST_ANTHROPIC_ADMIN_KEY\"\nbase_url = \"{}\"\n",
        app.fake.uri()
    );
    std::fs::write(&app.config_path, format!("{text}{twin}")).unwrap();
    seed(&app);
    app.cli_ok(&["run", "--once"]).await;
    let alerts: serde_json::Value =
        serde_json::from_str(&app.cli_ok(&["alerts", "--format", "json"]).await).unwrap();
    let budget: Vec<_> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "budget")
        .collect();
    assert!(!budget.is_empty(), "{alerts:#}");
    for a in budget {
        assert_eq!(a["key_id"], "apikey_shared");
        assert_eq!(a["key_name"], "gateway");
        assert!(a["source"].is_null(), "a random source was named: {a:#}");
    }
}

/// The applied migrations' versions, oldest first.
async fn versions(app: &TestApp) -> Vec<i64> {
    let url = &app.storage_url;
    if crate::backend::is_postgres() {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let v = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    } else {
        let conn = rusqlite::Connection::open(app.db_path()).unwrap();
        let mut stmt = conn
            .prepare("SELECT version FROM _sqlx_migrations ORDER BY version")
            .unwrap();
        let v = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        v
    }
}

#[tokio::test]
async fn read_commands_never_migrate_and_an_older_keywatch_refuses_a_newer_database() {
    let app = spawn_app_with("").await;
    seed(&app);
    app.cli_ok(&["run", "--once"]).await;
    let all = versions(&app).await;
    let newest = *all.last().unwrap();

    // A database one migration behind (an older daemon's): read commands leave it as it is and
    // say what to do; they used to apply the migration under the older daemon.
    sql(
        &app,
        &format!("DELETE FROM _sqlx_migrations WHERE version = {newest}"),
    )
    .await;
    for args in [
        &["alerts"][..],
        &["history", "--key", "apikey_shared"][..],
        &["report"][..],
    ] {
        let out = app.cli(args, &[]).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("older than this keywatch"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        versions(&app).await.len(),
        all.len() - 1,
        "a read command migrated"
    );

    // A migration a newer keywatch applied: reads go on, `run` refuses with what to do.
    let blob = if crate::backend::is_postgres() {
        "'\\x00'::bytea"
    } else {
        "X'00'"
    };
    sql(
        &app,
        &format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             SELECT {newest}, 'restored', TRUE, {blob}, 0; \
             INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (29991231000000, 'from the future', TRUE, {blob}, 0)"
        ),
    )
    .await;
    app.cli_ok(&["alerts"]).await;
    let out = app.cli(&["run", "--once"], &[]).await;
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("upgraded by a newer keywatch"),
        "{}",
        stderr(&out)
    );
}

/// #13.3: a rollup whose sums overflowed (SQLite stores them as REAL) made `report` panic and the
/// report API abort the daemon. Counts are now bounded at decode; a database written before
/// that still reads, saturated.
#[tokio::test]
async fn an_overflowed_rollup_from_an_older_version_is_read_without_aborting() {
    crate::backend::sqlite_only!("an older SQLite version's overflowed rollup");
    let app = spawn_app_with("").await;
    seed(&app);
    app.cli_ok(&["run", "--once"]).await;
    sql(
        &app,
        "UPDATE usage_daily SET output_tokens = 1.5e19, requests = 1e19, unpriced_tokens = 3e19; \
         UPDATE usage_buckets SET output_tokens = 2e19, requests = 2e19",
    )
    .await;
    for args in [
        &["report"][..],
        &["report", "--format", "json"][..],
        &["history", "--key", "apikey_shared"][..],
    ] {
        let out = app.cli(args, &[]).await;
        assert!(
            out.status.code().is_some(),
            "{args:?} was killed by a signal: {}",
            stderr(&out)
        );
        assert_ne!(out.status.code(), Some(134), "{args:?} aborted");
    }
}
