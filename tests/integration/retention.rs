//! Retention: old usage is pruned per bucket width, recent usage is kept.

use keywatch::prices::TokenCounts;
use keywatch::store::{Store, UsageRecord};
use tokio_util::sync::CancellationToken;

use crate::helpers::{spawn_app_with, this_hour, HOUR};

fn record(key: &str, start: i64) -> UsageRecord {
    UsageRecord {
        key_id: key.to_owned(),
        model: "claude-sonnet-4-20250514".to_owned(),
        bucket_start: start,
        tokens: TokenCounts {
            uncached_input: 10,
            ..TokenCounts::default()
        },
        web_search_requests: 0,
        requests: None,
        cost_usd: Some(0.01),
    }
}

#[tokio::test]
async fn usage_older_than_its_retention_is_pruned_and_recent_usage_is_kept() {
    let app = spawn_app_with("").await;
    let text = std::fs::read_to_string(&app.config_path).unwrap().replace(
        &app.storage_section(),
        &format!(
            "{}[storage.retention]\n\"1h\" = \"10d\"\n",
            app.storage_section()
        ),
    );
    std::fs::write(&app.config_path, text).unwrap();
    let config = app.config();
    let store = Store::connect(&config.storage).await.unwrap();
    let old: Vec<_> = (0..12_000)
        .map(|i| {
            record(
                &format!("k{}", i % 50),
                this_hour() - (11 * 24 + i / 50) * HOUR,
            )
        })
        .collect();
    let recent: Vec<_> = (0..100)
        .map(|i| record("k0", this_hour() - i * HOUR))
        .collect();
    store
        .store_usage("anthropic-test", HOUR, &old, None, 1)
        .await
        .unwrap();
    store
        .store_usage("anthropic-test", HOUR, &recent, None, 1)
        .await
        .unwrap();

    let pruned = keywatch::retention::prune(&store, &config, &CancellationToken::new())
        .await
        .unwrap();

    assert_eq!(pruned.usage_rows, 12_000, "in several batches of 5,000");
    assert_eq!(store.usage_row_count().await.unwrap(), 100);
    store.close().await;
}

#[tokio::test]
async fn a_retention_shorter_than_the_baseline_window_is_refused() {
    let app = spawn_app_with("").await;
    let text = std::fs::read_to_string(&app.config_path).unwrap().replace(
        &app.storage_section(),
        &format!(
            "{}[storage.retention]\n\"1h\" = \"3d\"\n",
            app.storage_section()
        ),
    );
    std::fs::write(&app.config_path, text).unwrap();

    let out = app.cli(&["check-config"], &[]).await;

    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage.retention.\"1h\""));
}
