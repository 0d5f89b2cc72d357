//! Month-end forecasts per budget, for the `budget_forecast` rule and `report --forecast`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::evaluate::{budget_spends, in_scope, KeyMap, Spends};
use crate::config::{Budget, Config};
use crate::detect::budget::{current_periods, Period, PeriodKind};
use crate::detect::projection::{project, Forecast};
use crate::store::{Store, StoreError};

/// How many complete days the run rate is taken from.
pub const RECENT_DAYS: i64 = 7;

/// One budget's month-end projection.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetForecast {
    pub budget: String,
    /// `2026-11`.
    pub month: String,
    pub month_start: i64,
    pub month_end: i64,
    pub timezone: Tz,
    pub spent: f64,
    pub limit: f64,
    pub forecast: Forecast,
}

/// The last `RECENT_DAYS` complete local days before `now` in `tz`, as UTC spans.
pub fn recent_day_spans(tz: Tz, now: DateTime<Utc>) -> Vec<(i64, i64)> {
    let mut days = crate::period::last_n(PeriodKind::Day, tz, now, RECENT_DAYS as u32 + 1);
    days.pop();
    days.iter().rev().map(Period::span).collect()
}

/// Spend of `b`'s scope in the period `span`.
pub(super) fn spend_in(spends: &Spends, span: (i64, i64), keys: &KeyMap, b: &Budget) -> f64 {
    crate::report::sum_usd(
        spends
            .get(&span)
            .into_iter()
            .flatten()
            .filter(|(s, k, _)| in_scope(keys, b, s, k))
            .map(|(_, _, c)| *c),
    )
}

/// Forecasts for every budget with a monthly limit, from spends already read.
pub(super) fn compute(
    config: &Config,
    keys: &KeyMap,
    spends: &Spends,
    now: DateTime<Utc>,
) -> Vec<BudgetForecast> {
    let mut out = Vec::new();
    for b in &config.budgets {
        let Some(limit) = b.monthly_usd else { continue };
        let Some(month) = current_periods(b.timezone, now)
            .into_iter()
            .find(|p| p.kind == PeriodKind::Month)
        else {
            continue;
        };
        let span = (month.start.timestamp(), month.end.timestamp());
        let spent = spend_in(spends, span, keys, b);
        let recent: Vec<f64> = recent_day_spans(b.timezone, now)
            .into_iter()
            .map(|day| spend_in(spends, day, keys, b))
            .collect();
        out.push(BudgetForecast {
            budget: b.name.clone(),
            month: month.label.clone(),
            month_start: span.0,
            month_end: span.1,
            timezone: b.timezone,
            spent,
            limit,
            forecast: project(spent, &recent, now.timestamp(), span.1, limit),
        });
    }
    out
}

/// Forecasts for every budget with a monthly limit, read from the store (`report --forecast`).
pub async fn budget_forecasts(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<BudgetForecast>, StoreError> {
    let keys: KeyMap = store
        .all_keys()
        .await?
        .into_iter()
        .map(|k| ((k.source.clone(), k.key_id.clone()), k))
        .collect::<HashMap<_, _>>();
    let spends = budget_spends(
        store,
        config,
        config.poll.bucket_width.seconds(),
        now.timestamp(),
    )
    .await?;
    Ok(compute(config, &keys, &spends, now))
}
