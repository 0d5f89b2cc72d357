//! The `budget_forecast` rule: a month-end projection (`detect::projection`) over a monthly
//! limit. The alert ends with its month.

use chrono::{DateTime, Utc};

use super::{money, Pass};
use crate::alerts::Rule;
use crate::config::Severity;
use crate::store::AlertChange;

impl Pass<'_> {
    /// The `budget_forecast` rule: once per budget and month, when the month-end projection
    /// crosses the monthly limit more than three days before the month ends.
    pub fn forecasts(&mut self) {
        let spends = &self.inputs.spends;
        let now = DateTime::<Utc>::from_timestamp(self.now, 0).unwrap_or_default();
        for f in crate::alerts::forecast::compute(self.config, self.keys, spends, now) {
            if !crate::detect::projection::warns(&f.forecast, f.spent, f.limit, f.month_end) {
                continue;
            }
            let scope = format!("budget_forecast/{}/{}", f.budget, f.month);
            let mut a = self.base_alert(Rule::BudgetForecast, scope, "", Severity::Warning);
            let crosses = f
                .forecast
                .crosses_at
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                .map(|t| t.with_timezone(&f.timezone).format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            a.summary = format!(
                "Budget {}: {} spent this month; at {}/day (median of the last 7 days) it reaches the {} monthly limit on {crosses} and ends the month near {}: slow the spend or raise the budget",
                f.budget, money(f.spent), money(f.forecast.daily_rate), money(f.limit), money(f.forecast.projected)
            );
            a.budget = Some(f.budget.clone());
            a.observed = Some(f.forecast.projected);
            a.baseline = Some(f.limit);
            a.threshold = Some(100.0);
            a.unit = "usd".to_owned();
            a.period = Some((f.month_start, f.month_end));
            if let Some(open) = self.open.get(&a.scope) {
                a.starts_at = open.starts_at;
            }
            self.changes.push(AlertChange::Fire(Box::new(a)));
        }
        self.resolve_ended(Rule::BudgetForecast);
    }
}
