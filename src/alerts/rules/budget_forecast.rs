//! The `budget_forecast` rule: a month-end projection (`detect::projection`) over a monthly
//! limit. The alert ends with its month.

/// What the person on call should do when this rule fires (email, Slack, PagerDuty).
pub const ADVICE: &str = "At this pace the month ends over budget: find what raised the run rate (keywatch report --by key --period day), slow it, or raise the budget deliberately.";

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
        for f in crate::budget::forecast::compute(self.config, self.keys, spends, now) {
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::super::fixtures::{config, fired, inputs, run, NOW};
    use super::super::Pass;
    use crate::alerts::Rule;
    use crate::budget::recent_day_spans;

    #[test]
    fn a_month_projected_over_its_limit_warns_once_per_month() {
        let c = config("[[budgets]]\nname = \"team\"\nmonthly_usd = 1000.0\n");
        let mut i = inputs(&c, NOW);
        // January 2027 in UTC; $600 spent by the 15th at $60 a day.
        let month = (1_798_761_600, 1_801_440_000);
        let spend = |usd: f64| vec![("src".to_owned(), "k1".to_owned(), usd)];
        i.spends.insert(month, spend(600.0));
        let now = DateTime::<Utc>::from_timestamp(NOW, 0).unwrap();
        for day in recent_day_spans(chrono_tz::UTC, now) {
            i.spends.insert(day, spend(60.0));
        }
        let changes = run(&i, &c, Pass::forecasts);
        let a = fired(&changes);
        assert_eq!(a.len(), 1, "{changes:?}");
        assert_eq!(
            (a[0].rule, a[0].scope.as_str()),
            (Rule::BudgetForecast, "budget_forecast/team/2027-01")
        );
        assert_eq!((a[0].baseline, a[0].period), (Some(1000.0), Some(month)));
        assert_eq!(
            a[0].summary,
            "Budget team: $600 spent this month; at $60.00/day (median of the last 7 days) it reaches the $1000 monthly limit on 2027-01-22 and ends the month near $1600: slow the spend or raise the budget"
        );

        // At $10 a day the month stays under the limit.
        for day in recent_day_spans(chrono_tz::UTC, now) {
            i.spends.insert(day, spend(10.0));
        }
        assert!(run(&i, &c, Pass::forecasts).is_empty());
    }
}
