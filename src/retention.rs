//! The retention task: once a day, prune usage, billed cost and old alerts per
//! `[storage.retention]`, in small batches with pauses so polling is never blocked for long.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::{BucketWidth, Config, Keep};
use crate::store::{Pruned, Store, StoreError};

/// The pause between two delete batches: writers (the poller) get the lock in between.
const PAUSE: Duration = Duration::from_millis(50);
const DAY: Duration = Duration::from_secs(86_400);

fn cutoff(keep: Keep, now: i64) -> Option<i64> {
    match keep {
        Keep::Forever => None,
        Keep::For(d) => Some(now - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)),
    }
}

/// One full prune.
pub async fn prune(
    store: &Store,
    config: &Config,
    cancel: &CancellationToken,
) -> Result<Pruned, StoreError> {
    let now = Utc::now().timestamp();
    let mut pruned = Pruned::default();
    for width in [BucketWidth::Minute, BucketWidth::Hour, BucketWidth::Day] {
        let Some(before) = cutoff(config.retention.for_width(width), now) else {
            continue;
        };
        loop {
            let n = store.prune_usage_batch(width.seconds(), before).await?;
            pruned.usage_rows += n;
            if n == 0 || cancel.is_cancelled() {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
    if pruned.usage_rows > 0 {
        store.prune_empty_rollup().await?;
    }
    if let Some(before) = cutoff(config.retention.day, now) {
        pruned.billed_rows = store.prune_billed(before).await?;
    }
    if let Some(before) = cutoff(config.retention.alerts, now) {
        loop {
            let n = store.prune_alerts_batch(before).await?;
            pruned.alerts += n;
            if n == 0 || cancel.is_cancelled() {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
    Ok(pruned)
}

/// Prunes a minute after start, then daily, until `cancel`.
pub async fn run(store: &Store, config: &Config, cancel: &CancellationToken) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match prune(store, config, cancel).await {
            Ok(p) => {
                tracing::info!(
                    usage_rows = p.usage_rows,
                    billed_rows = p.billed_rows,
                    alerts = p.alerts,
                    "retention prune done"
                );
                wait = DAY;
            }
            Err(e) => {
                tracing::error!(error = %e, "retention prune failed; retrying in an hour");
                wait = Duration::from_secs(3_600);
            }
        }
    }
}
