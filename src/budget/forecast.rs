//! Month-end forecasts per budget, for the `budget_forecast` rule, `report --forecast`, the
//! digests and the dashboard. Pure: computed from spends already read ([`super::spends`]).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::limits::current_periods;
use super::scope::{spend_in, KeyMap, Spends};
use crate::config::Config;
use crate::detect::projection::{project, Forecast};
use crate::period::{Period, PeriodKind};

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

/// Forecasts for every budget with a monthly limit, from spends already read.
pub fn compute(
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
