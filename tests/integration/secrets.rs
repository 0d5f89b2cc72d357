//! The admin key never reaches logs, command output, Debug output or the database.

use crate::fake_anthropic::{key_old_shape, ADMIN_KEY};
use crate::helpers::{row, spawn_app, this_hour, HOUR};

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
    for out in [&run, &check, &history] {
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(
                !text.contains(ADMIN_KEY),
                "the admin key leaked into output"
            );
            assert!(
                !text.contains("TESTKEY"),
                "part of the admin key leaked into output"
            );
        }
    }
    assert!(
        !String::from_utf8_lossy(&run.stderr).is_empty(),
        "trace logging produced output"
    );
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("keywatch.db") {
            // The -wal and -shm files may vanish as the last connection closes.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let needle = ADMIN_KEY.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the admin key is stored in {}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn debug_output_of_the_config_redacts_the_admin_key() {
    let app = spawn_app().await;
    let debug = format!("{:?}", app.config());
    assert!(!debug.contains(ADMIN_KEY));
    assert!(debug.contains("admin_key"));
}
