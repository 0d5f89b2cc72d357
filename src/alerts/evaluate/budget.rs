//! The `budget` and `budget_forecast` rules: spend per budget period, thresholds crossed, and
//! month-end projections. Both alerts end with their period.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{money, AlertChange, Pass, Rule, Severity, Store, StoreError, DAY};
use crate::config::{Budget, BudgetScope, Config};
use crate::detect::budget::{
    crossed, current_periods, severity as budget_severity, Period, PeriodKind,
};
use crate::store::StoredKey;

/// Spend per (source, key) for each distinct budget period, keyed by (start, end).
pub(in crate::alerts) type Spends = HashMap<(i64, i64), Vec<(String, String, f64)>>;

/// The inventory by (source, key id).
pub(in crate::alerts) type KeyMap = HashMap<(String, String), StoredKey>;

/// Whether the spend of `key_id` on `source` counts for `budget`.
pub(in crate::alerts) fn in_scope(
    keys: &KeyMap,
    budget: &Budget,
    source: &str,
    key_id: &str,
) -> bool {
    if budget.source.as_deref().is_some_and(|s| s != source) {
        return false;
    }
    let key = keys.get(&(source.to_owned(), key_id.to_owned()));
    match &budget.scope {
        BudgetScope::Organisation => true,
        BudgetScope::Key(id) => key_id == id,
        BudgetScope::KeyName(glob) => key
            .and_then(|k| k.name.as_deref())
            .is_some_and(|n| glob.matches(n)),
        BudgetScope::Workspace(ws) => {
            key.and_then(|k| k.workspace_id.as_deref()) == Some(ws.as_str())
        }
    }
}

fn limit_for(b: &Budget, period: &Period) -> Option<f64> {
    match period.kind {
        PeriodKind::Day => b.daily_usd,
        PeriodKind::Month => b.monthly_usd,
        PeriodKind::Week => None,
    }
}

/// Money spent is spent: the periods' unsettled recent buckets count too.
pub(in crate::alerts) async fn budget_spends(
    store: &Store,
    config: &Config,
    width: i64,
    now: i64,
) -> Result<Spends, StoreError> {
    let now = DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default();
    let mut spends = Spends::new();
    let today = now.timestamp().div_euclid(DAY) * DAY;
    for b in &config.budgets {
        let mut spans: Vec<(i64, i64)> = current_periods(b.timezone, now)
            .iter()
            .filter(|p| limit_for(b, p).is_some())
            .map(|p| (p.start.timestamp(), p.end.timestamp()))
            .collect();
        if b.monthly_usd.is_some() {
            spans.extend(crate::alerts::forecast::recent_day_spans(b.timezone, now));
        }
        for span in spans {
            if let std::collections::hash_map::Entry::Vacant(slot) = spends.entry(span) {
                slot.insert(
                    store
                        .spend_by_key(width, b.timezone, span.0, span.1, today)
                        .await?,
                );
            }
        }
    }
    Ok(spends)
}

impl Pass<'_> {
    /// The `budget_forecast` rule: once per budget and month, when the month-end projection
    /// crosses the monthly limit more than three days before the month ends.
    pub(super) fn forecasts(&mut self, spends: &Spends) {
        let now = DateTime::<Utc>::from_timestamp(self.now, 0).unwrap_or_default();
        for f in crate::alerts::forecast::compute(self.config, &self.keys, spends, now) {
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

    pub(super) fn budgets(&mut self, spends: &Spends) {
        let now = DateTime::<Utc>::from_timestamp(self.now, 0).unwrap_or_default();
        let budgets = self.config.budgets.clone();
        for b in &budgets {
            for period in current_periods(b.timezone, now) {
                let Some(limit) = limit_for(b, &period) else {
                    continue;
                };
                let span = (period.start.timestamp(), period.end.timestamp());
                let spent = crate::alerts::forecast::spend_in(spends, span, &self.keys, b);
                for t in crossed(spent, limit, &b.thresholds) {
                    self.budget_alert(b, &period, limit, spent, t);
                }
            }
        }
        // A budget alert ends with its period.
        self.resolve_ended(Rule::Budget);
    }

    /// Resolves the open alerts of `rule` whose period has ended.
    fn resolve_ended(&mut self, rule: Rule) {
        let ended: Vec<(String, i64)> = self
            .open
            .values()
            .filter(|a| a.rule == rule)
            .filter_map(|a| {
                a.period
                    .filter(|p| p.1 <= self.now)
                    .map(|p| (a.scope.clone(), p.1))
            })
            .collect();
        for (scope, end) in ended {
            self.resolve(&scope, end);
        }
    }

    fn budget_alert(
        &mut self,
        b: &Budget,
        period: &Period,
        limit: f64,
        spent: f64,
        threshold: u32,
    ) {
        let scope = format!(
            "budget/{}/{}/{}/{threshold}",
            b.name,
            period.kind.as_str(),
            period.label
        );
        let mut a = self.base_alert(Rule::Budget, scope, "", budget_severity(threshold));
        let pct = spent / limit * 100.0;
        a.summary = format!(
            "Budget {}: {} spent of the {} {} limit ({pct:.0}%, crossed {threshold}%) for {} ({}): review the keys driving it{}",
            b.name, money(spent), money(limit), period.kind.as_str(), period.label, b.timezone,
            if threshold >= 100 { " and consider deactivating them" } else { "" }
        );
        a.budget = Some(b.name.clone());
        if let BudgetScope::Key(id) = &b.scope {
            a.key_id = Some(id.clone());
            // The budget's source when it names one; else the one source holding the key. A key
            // id held by several sources (two sources on one organisation) counts on each, and
            // the alert names no single source rather than a random one.
            let mut holders: Vec<_> = self
                .keys
                .iter()
                .filter(|((s, k), _)| k == id && b.source.as_deref().is_none_or(|want| want == s))
                .collect();
            holders.sort_by(|x, y| x.0.cmp(y.0));
            if let Some(((source, _), key)) = holders.first() {
                a.source = (holders.len() == 1 || b.source.is_some()).then(|| source.clone());
                a.key_name.clone_from(&key.name);
            }
        }
        a.observed = Some(spent);
        a.baseline = Some(limit);
        a.threshold = Some(f64::from(threshold));
        a.unit = "usd".to_owned();
        a.period = Some((period.start.timestamp(), period.end.timestamp()));
        a.starts_at = self.now;
        if let Some(open) = self.open.get(&a.scope) {
            a.starts_at = open.starts_at;
        }
        self.changes.push(AlertChange::Fire(Box::new(a)));
    }
}
