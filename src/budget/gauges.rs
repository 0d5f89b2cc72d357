//! The spend gauges `/metrics` exports: per source (the UTC day and month) and per budget (its
//! current periods in its zone, with the limit). Bounded cardinality: never per key. Pure.

use chrono::{DateTime, Utc};

use super::limits::{current_periods, limit_for};
use super::scope::{spend_in, KeyMap, Spends};
use crate::config::Config;

pub use crate::metrics::SpendGauge;

/// The gauges at `now` from `spends` (which holds the UTC day and month and every budget's
/// limited periods): every configured source (0 when it spent nothing) and every budget period
/// with a limit.
pub fn spend_gauges(
    spends: &Spends,
    keys: &KeyMap,
    config: &Config,
    now: DateTime<Utc>,
) -> Vec<SpendGauge> {
    let mut gauges = Vec::new();
    for period in current_periods(chrono_tz::UTC, now) {
        let span = (period.start.timestamp(), period.end.timestamp());
        let rows = spends.get(&span);
        for s in &config.sources {
            let spent = crate::report::sum_usd(
                rows.into_iter()
                    .flatten()
                    .filter(|(source, _, _)| *source == s.name)
                    .map(|(_, _, usd)| *usd),
            );
            gauges.push(SpendGauge {
                kind: "source",
                name: s.name.clone(),
                period: period.kind.noun(),
                spent_usd: spent,
                limit_usd: None,
            });
        }
    }
    for b in &config.budgets {
        for period in current_periods(b.timezone, now) {
            let Some(limit) = limit_for(b, &period) else {
                continue;
            };
            let span = (period.start.timestamp(), period.end.timestamp());
            gauges.push(SpendGauge {
                kind: "budget",
                name: b.name.clone(),
                period: period.kind.noun(),
                spent_usd: spend_in(spends, span, keys, b),
                limit_usd: Some(limit),
            });
        }
    }
    gauges
}
