//! Budgets and spend: which keys a budget counts ([`in_scope`]), its periods and limits
//! ([`limits`]), the spend read for them ([`spends`]) and the month-end forecasts
//! ([`forecast`]). Used by the `budget` and `budget_forecast` rules, `report --forecast`, the
//! digests and the dashboard; it knows nothing of alerts, so `alerts` imports it and never the
//! reverse.
//!
//! Everything but `load` ([`spends`], [`forecasts`]) is pure: the rules judge [`Spends`]
//! gathered before they run. The files import one another one way — `scope` and `limits` are
//! leaves, `forecast` reads them, `load` reads all three — and this file only re-exports them.

pub mod forecast;
mod gauges;
pub mod limits;
mod load;
mod scope;

pub use forecast::{recent_day_spans, BudgetForecast, RECENT_DAYS};
pub use gauges::{spend_gauges, SpendGauge};
pub use limits::{crossed, current_periods, limit_for, severity};
pub use load::{forecasts, spends, standing, unpriced_spends};
pub use scope::{covers, in_scope, spend_in, unpriced_in, KeyMap, Spends, UnpricedSpends};
