//! Retention: prune usage, the provider's cost report, old alerts and
//! sent digests per `[storage.retention]`, in small batches with pauses so polling is never
//! blocked for long. What is old is measured from the newest stored usage, not only the
//! clock: a clock running ahead deletes nothing the retention would keep.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::{BucketWidth, Config, Keep};
use crate::store::{Pruned, Store, StoreError};

/// The pause between two delete batches: writers (the poller) get the lock in between.
const PAUSE: Duration = Duration::from_millis(50);

/// Rows older than `keep` before the newest stored row (`newest`) or `now`, whichever is
/// earlier, go: a clock running ahead never deletes data newer than the newest stored row
/// minus the retention.
fn cutoff(keep: Keep, now: i64, newest: Option<i64>) -> Option<i64> {
    match keep {
        Keep::Forever => None,
        Keep::For(d) => {
            let keep = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
            Some(newest.map_or(now, |n| n.min(now)).saturating_sub(keep))
        }
    }
}

/// One full prune, now.
pub async fn prune(
    store: &Store,
    config: &Config,
    cancel: &CancellationToken,
) -> Result<Pruned, StoreError> {
    prune_at(store, config, Utc::now().timestamp(), cancel).await
}

/// One full prune as if the clock said `now`: usage per bucket width, the provider's cost
/// report (`billed_costs`, `provider_costs`) like daily usage (`storage.retention."1d"`),
/// resolved alerts and sent digests (`storage.retention.alerts`).
pub async fn prune_at(
    store: &Store,
    config: &Config,
    now: i64,
    cancel: &CancellationToken,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    let mut newest_any: Option<i64> = None;
    for width in [BucketWidth::Minute, BucketWidth::Hour, BucketWidth::Day] {
        let newest = store.newest_usage_bucket(width.seconds()).await?;
        newest_any = newest_any.max(newest);
        let keep = config.retention.for_width(width);
        if keep == Keep::Forever {
            continue;
        }
        let Some(before) = cutoff(keep, now, newest) else {
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
        // Splits are sparse (only non-standard traffic): one statement.
        store.prune_splits(width.seconds(), before).await?;
    }
    if pruned.usage_rows > 0 {
        store.prune_empty_rollup().await?;
    }
    if config.retention.day != Keep::Forever {
        let newest = store.newest_cost_day().await?;
        if let Some(before) = cutoff(config.retention.day, now, newest) {
            pruned.billed_rows = store.prune_billed(before).await?;
        }
    }
    // Alerts and digests are dated by keywatch's clock: measured from the newest usage too
    // (a day's grace for its settling), a clock running ahead does not delete them.
    let newest = newest_any.map(|n| n.saturating_add(86_400));
    if let Some(before) = cutoff(config.retention.alerts, now, newest) {
        loop {
            let n = store.prune_alerts_batch(before).await?;
            pruned.alerts += n;
            if n == 0 || cancel.is_cancelled() {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
        pruned.digest_sends = store.prune_digest_sends(before).await?;
    }
    Ok(pruned)
}
