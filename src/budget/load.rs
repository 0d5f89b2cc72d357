//! Reading spend from the store: the one place in `budget` that does I/O. The rules and the
//! forecasts judge what is read here and never read the store themselves.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::forecast::{self, recent_day_spans, BudgetForecast};
use super::limits::{current_periods, limit_for};
use super::scope::{KeyMap, Spends, UnpricedSpends};
use crate::config::Config;
use crate::store::{Store, StoreError};

const DAY: i64 = 86_400;

/// The spend of every configured budget's current periods (and, with a monthly limit, of the
/// recent days its forecast needs) at `now` (Unix seconds), per (source, key). Money spent is
/// spent: the periods' unsettled recent buckets count too. Each distinct span is read once.
pub async fn spends(
    store: &Store,
    config: &Config,
    width: i64,
    now: i64,
) -> Result<Spends, StoreError> {
    let now = DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default();
    let today = now.timestamp().div_euclid(DAY) * DAY;
    // Each distinct span once, in the zone of the first budget that wants it.
    let mut wanted: HashMap<(i64, i64), Tz> = HashMap::new();
    // The UTC day and month: the per-source spend gauges.
    for p in current_periods(chrono_tz::UTC, now) {
        wanted.insert((p.start.timestamp(), p.end.timestamp()), chrono_tz::UTC);
    }
    for b in &config.budgets {
        let mut spans: Vec<(i64, i64)> = current_periods(b.timezone, now)
            .iter()
            .filter(|p| limit_for(b, p).is_some())
            .map(|p| (p.start.timestamp(), p.end.timestamp()))
            .collect();
        if b.monthly_usd.is_some() {
            spans.extend(recent_day_spans(b.timezone, now));
        }
        for span in spans {
            wanted.entry(span).or_insert(b.timezone);
        }
    }
    // Side by side, on the pool's connections (a month and seven days: 175 ms one after the
    // other at 10,000 keys).
    let reads = wanted.into_iter().map(|(span, zone)| async move {
        let spend = store
            .spend_by_key(width, zone, span.0, span.1, today)
            .await?;
        Ok::<_, StoreError>((span, spend))
    });
    Ok(futures_util::future::try_join_all(reads)
        .await?
        .into_iter()
        .collect())
}

/// Usage on models without a price in each configured budget's current periods, per (source,
/// key, model): the budget's dollars are a floor where there is any.
pub async fn unpriced_spends(
    store: &Store,
    config: &Config,
    width: i64,
    now: i64,
) -> Result<UnpricedSpends, StoreError> {
    let now = DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default();
    let mut spans: Vec<(i64, i64)> = config
        .budgets
        .iter()
        .flat_map(|b| {
            current_periods(b.timezone, now)
                .into_iter()
                .filter(|p| limit_for(b, p).is_some())
                .map(|p| (p.start.timestamp(), p.end.timestamp()))
        })
        .collect();
    spans.sort_unstable();
    spans.dedup();
    let reads = spans.into_iter().map(|span| async move {
        // Buckets starting in the period (the query's end is inclusive).
        let usage = store.unpriced_usage(width, span.0, span.1 - 1).await?;
        Ok::<_, StoreError>((span, usage))
    });
    Ok(futures_util::future::try_join_all(reads)
        .await?
        .into_iter()
        .filter(|(_, usage)| !usage.is_empty())
        .collect())
}

/// Forecasts for every budget with a monthly limit, read from the store (`report --forecast`,
/// digests, the dashboard and the API).
pub async fn forecasts(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<BudgetForecast>, StoreError> {
    Ok(standing(store, config, now).await?.1)
}

/// Every budget's current periods that it limits (spent against the limit, daily and monthly)
/// and its month-end forecast, from one read of the spend.
pub async fn standing(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<(Vec<super::SpendGauge>, Vec<BudgetForecast>), StoreError> {
    let keys: KeyMap = store
        .all_keys()
        .await?
        .into_iter()
        .map(|k| ((k.source.clone(), k.key_id.clone()), k))
        .collect();
    let spends = spends(
        store,
        config,
        config.poll.bucket_width.seconds(),
        now.timestamp(),
    )
    .await?;
    let periods = super::gauges::spend_gauges(&spends, &keys, config, now)
        .into_iter()
        .filter(|g| g.kind == "budget")
        .collect();
    Ok((periods, forecast::compute(config, &keys, &spends, now)))
}
