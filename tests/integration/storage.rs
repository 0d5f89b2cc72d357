//! Storage faults: a foreign or corrupt file at storage.url, a second `run` on the same
//! database, another process holding the write lock, and a full database.

use std::time::Duration;

use crate::daemon::{free_port, get};
use crate::helpers::{row, spawn_app, spawn_app_with, this_hour, without_cost, TestApp, HOUR};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Two days of usage for `keys` keys.
fn seed_usage(app: &TestApp, keys: usize) {
    for k in 0..keys {
        for h in 0..48 {
            app.fake.add_usage(
                this_hour() - h * HOUR,
                row(
                    Some(&format!("apikey_{k:04}")),
                    "claude-sonnet-4-20250514",
                    100 + h,
                    10,
                ),
            );
        }
    }
}

#[tokio::test]
async fn a_foreign_or_corrupt_file_is_refused_and_left_byte_for_byte() {
    crate::backend::sqlite_only!("a foreign or corrupt SQLite file");
    let app = spawn_app().await;
    let db = app.db_path();

    // Not SQLite at all.
    std::fs::write(&db, "my notes: remember to rotate the keys\n").unwrap();
    let before = std::fs::read(&db).unwrap();
    for args in [&["run", "--once"][..], &["history", "--key", "k"][..]] {
        let out = app.cli(args, &[]).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("is not an SQLite database"), "{err}");
        assert!(
            err.contains("leaves it untouched") && err.contains("storage.url"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // Another application's SQLite database.
    std::fs::remove_file(&db).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
                            INSERT INTO customers (name) VALUES ('ACME');",
        )
        .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let out = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another application's database (tables: customers)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(
        !db.with_extension("db-wal").exists(),
        "not even a WAL file was started"
    );

    // keywatch's own database with its schema page overwritten.
    std::fs::remove_file(&db).unwrap();
    app.cli_ok(&["run", "--once"]).await;
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
        .unwrap();
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..4_096] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let out = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be read as a database"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("restore a backup"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
}

#[tokio::test]
async fn a_second_run_refuses_while_the_first_runs_and_starts_once_it_is_killed() {
    crate::backend::sqlite_only!(
        "one process per SQLite file (PostgreSQL replicas elect a leader instead)"
    );
    let port = free_port();
    let app = spawn_app_with(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    seed_usage(&app, 2);
    let mut first = crate::daemon::start_daemon(&app);
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/healthz")).await.0,
        200
    );

    for args in [&["run", "--once"][..], &["run"][..]] {
        let out = app.cli(args, &[]).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("another keywatch process is running on"),
            "{}",
            stderr(&out)
        );
    }
    // Read commands still work beside the daemon.
    app.cli_ok(&["alerts"]).await;

    first.kill().await.unwrap(); // SIGKILL: the kernel releases the lock
    first.wait().await.unwrap();
    app.cli_ok(&["run", "--once"]).await;
}

#[tokio::test]
async fn a_write_lock_held_by_another_process_is_waited_for() {
    crate::backend::sqlite_only!("SQLite's write lock");
    let app = spawn_app().await;
    seed_usage(&app, 3);
    app.cli_ok(&["run", "--once"]).await;
    app.fake.add_usage(
        this_hour(),
        row(Some("apikey_late"), "claude-sonnet-4-20250514", 5, 5),
    );

    let db = app.db_path();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS other_tool (x);")
            .unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        conn.execute_batch("COMMIT;").unwrap();
    });
    locked_rx.recv().unwrap();
    let out = app.cli(&["run", "--once"], &[]).await;
    holder.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stored = without_cost(&app.stored_rows().await);
    assert_eq!(stored, app.expected_rows(this_hour() - 2 * 24 * HOUR));

    // Held past the 10 s busy timeout: the write fails cleanly, is kept for the next run, and
    // says what to check.
    app.fake.add_usage(
        this_hour(),
        row(Some("apikey_later"), "claude-sonnet-4-20250514", 7, 7),
    );
    let db = app.db_path();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS other_tool_2 (x);")
            .unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(13));
        conn.execute_batch("COMMIT;").unwrap();
    });
    locked_rx.recv().unwrap();
    let out = app.cli(&["run", "--once"], &[]).await;
    holder.join().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stayed locked by another process"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
    app.cli_ok(&["run", "--once"]).await;
    let stored = without_cost(&app.stored_rows().await);
    assert_eq!(stored, app.expected_rows(this_hour() - 2 * 24 * HOUR));
}

#[tokio::test]
async fn a_full_database_fails_cleanly_the_daemon_keeps_running_and_recovers_when_space_returns() {
    crate::backend::sqlite_only!("storage.max_size_mb caps a SQLite file");
    let port = free_port();
    let app = spawn_app_with(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    // Create the database, then fill most of a 2 MiB cap with another table.
    app.open_store().await.close().await;
    {
        let conn = rusqlite::Connection::open(app.db_path()).unwrap();
        conn.execute_batch(
            "CREATE TABLE filler (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 440)
             INSERT INTO filler SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replace(
            "url = \"sqlite://keywatch.db\"",
            "url = \"sqlite://keywatch.db\"\nmax_size_mb = 2",
        )
        .replace("interval = \"1m\"", "interval = \"10s\""),
    )
    .unwrap();
    seed_usage(&app, 100);

    // `run --once`: the poll fails with a clear error, exit 75, nothing corrupted.
    let out = app.cli(&["run", "--once"], &[]).await;
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the database is full"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("storage.max_size_mb"),
        "{}",
        stderr(&out)
    );
    let check = |path: &std::path::Path| -> String {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(check(&app.db_path()), "ok");

    // The daemon keeps running while full and catches up once space returns.
    let log = app.dir.path().join("daemon.log");
    let mut daemon = crate::daemon::start_daemon_logging(&app, &log, None);
    let mut full = false;
    for _ in 0..100 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("the database is full")
        {
            full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(full, "{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/healthz")).await.0,
        200
    );
    assert!(daemon.try_wait().unwrap().is_none(), "still running");

    rusqlite::Connection::open(app.db_path())
        .unwrap()
        .execute_batch("DROP TABLE filler;")
        .unwrap();
    let expected = app.expected_rows(this_hour() - 2 * 24 * HOUR);
    let mut caught_up = false;
    for _ in 0..300 {
        if without_cost(&app.stored_rows().await) == expected {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caught_up, "{}", std::fs::read_to_string(&log).unwrap());
    daemon.kill().await.unwrap();
    assert_eq!(check(&app.db_path()), "ok");
}
