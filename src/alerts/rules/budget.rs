//! The `budget` rule: spend per budget period against its limits. One alert per budget and
//! period (one incident to page), at the highest threshold crossed; crossing the next threshold
//! escalates it under the same id, which notifies again. The alert ends with its period.

/// What the person on call should do when this rule fires (email, Slack, PagerDuty).
pub const ADVICE: &str = "Review the keys driving the spend (keywatch history --key ID) and whether the budget still fits; deactivate keys that should not be spending.";

use chrono::{DateTime, Utc};

use super::{money, Pass};
use crate::alerts::Rule;
use crate::budget::{
    crossed, current_periods, limit_for, severity as budget_severity, spend_in, unpriced_in,
};
use crate::config::{Budget, BudgetScope};
use crate::period::Period;
use crate::store::AlertChange;

/// One alert per budget and period: `budget/NAME/daily|monthly/LABEL`.
fn scope(b: &Budget, period: &Period) -> String {
    format!(
        "budget/{}/{}/{}",
        b.name,
        period.kind.as_str(),
        period.label
    )
}

impl Pass<'_> {
    /// Ends the alerts keywatch before #19 kept per threshold (`SCOPE/PCT`): the period's one
    /// alert stands for them now.
    fn end_legacy(&mut self, scope: &str) {
        let prefix = format!("{scope}/");
        let legacy: Vec<String> = self
            .open
            .keys()
            .filter(|s| {
                s.strip_prefix(&prefix)
                    .is_some_and(|pct| !pct.is_empty() && pct.bytes().all(|b| b.is_ascii_digit()))
            })
            .cloned()
            .collect();
        for s in legacy {
            self.resolve(&s, self.now);
        }
    }

    pub fn budgets(&mut self) {
        let spends = &self.inputs.spends;
        let now = DateTime::<Utc>::from_timestamp(self.now, 0).unwrap_or_default();
        let budgets = self.config.budgets.clone();
        for b in &budgets {
            for period in current_periods(b.timezone, now) {
                self.end_legacy(&scope(b, &period));
                let Some(limit) = limit_for(b, &period) else {
                    continue;
                };
                let span = (period.start.timestamp(), period.end.timestamp());
                let spent = spend_in(spends, span, self.keys, b);
                let unpriced = unpriced_in(&self.inputs.budget_unpriced, span, self.keys, b);
                // One alert per budget period, at the highest threshold crossed: a crossing
                // of the next threshold escalates it (and notifies again) under the same id.
                if let Some(&t) = crossed(spent, limit, &b.thresholds).last() {
                    self.budget_alert(b, &period, (limit, spent), t, &unpriced);
                }
            }
        }
        // A budget alert ends with its period.
        self.resolve_ended(Rule::Budget);
    }

    /// `unpriced`: tokens per model without a price in the budget's scope and period, which
    /// `spent` leaves out (then a floor).
    fn budget_alert(
        &mut self,
        b: &Budget,
        period: &Period,
        (limit, spent): (f64, f64),
        threshold: u32,
        unpriced: &[(String, i64)],
    ) {
        let mut a = self.base_alert(
            Rule::Budget,
            scope(b, period),
            "",
            budget_severity(threshold),
        );
        let pct = spent / limit * 100.0;
        a.summary = format!(
            "Budget {}: {} spent of the {} {} limit ({pct:.0}%, crossed {threshold}%) for {} ({}): review the keys driving it{}",
            b.name, money(spent), money(limit), period.kind.as_str(), period.label, b.timezone,
            if threshold >= 100 { " and consider deactivating them" } else { "" }
        );
        if !unpriced.is_empty() {
            let models: Vec<String> = unpriced
                .iter()
                .map(|(m, t)| format!("{t} tokens on {}", crate::text::clean(m)))
                .collect();
            a.summary.push_str(&format!(
                ". The spend is a floor: {} without a price are not counted (add [prices.\"{}\"])",
                models.join(", "),
                crate::text::clean(&unpriced[0].0)
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{config, fired, inputs, key, open, run, with_key, NOW};
    use super::super::Pass;
    use crate::alerts::Rule;
    use crate::config::Severity;
    use crate::store::AlertChange;

    const BUDGET: &str = "[[budgets]]\nname = \"team\"\ndaily_usd = 100.0\n";
    /// 2027-01-15 in UTC.
    const DAY_SPAN: (i64, i64) = (NOW - 8 * 3600, NOW + 16 * 3600);

    #[test]
    fn one_alert_per_period_at_the_highest_threshold_crossed() {
        let c = config(BUDGET);
        let mut i = inputs(&c, NOW);
        with_key(&mut i, key("k1", "a", "active", None));
        i.spends
            .insert(DAY_SPAN, vec![("src".to_owned(), "k1".to_owned(), 40.0)]);
        assert!(fired(&run(&i, &c, Pass::budgets)).is_empty());
        i.spends
            .insert(DAY_SPAN, vec![("src".to_owned(), "k1".to_owned(), 60.0)]);
        let first = run(&i, &c, Pass::budgets);
        let at_50 = fired(&first);
        i.spends
            .insert(DAY_SPAN, vec![("src".to_owned(), "k1".to_owned(), 80.0)]);
        let changes = run(&i, &c, Pass::budgets);
        let a = fired(&changes);
        assert_eq!(a.len(), 1);
        assert_eq!((at_50.len(), at_50[0].threshold), (1, Some(50.0)));
        assert_eq!(a[0].id, at_50[0].id, "one identity for the period");
        assert_eq!(a[0].threshold, Some(75.0));
        assert!(
            a[0].rule == Rule::Budget
                && a[0].budget.as_deref() == Some("team")
                && a[0].period == Some(DAY_SPAN)
        );
        assert_eq!(
            (at_50[0].severity, a[0].severity),
            (Severity::Info, Severity::Warning)
        );
        assert_eq!(
            a[0].summary,
            "Budget team: $80.00 spent of the $100 daily limit (80%, crossed 75%) for 2027-01-15 (UTC): review the keys driving it"
        );
    }

    #[test]
    fn the_per_threshold_alerts_of_an_older_keywatch_end_when_the_period_alert_stands() {
        let c = config(BUDGET);
        let mut i = inputs(&c, NOW);
        with_key(&mut i, key("k1", "a", "active", None));
        let mut old = open(Rule::Budget, "budget/team/daily/2027-01-15/50", "");
        old.period = Some(DAY_SPAN);
        i.open.push(old.clone());
        i.spends
            .insert(DAY_SPAN, vec![("src".to_owned(), "k1".to_owned(), 60.0)]);
        let changes = run(&i, &c, Pass::budgets);
        assert!(changes.contains(&AlertChange::Resolve {
            id: old.id,
            at: NOW
        }));
        assert_eq!(fired(&changes).len(), 1);
    }

    #[test]
    fn an_alert_of_an_ended_period_resolves_at_its_end() {
        let c = config(BUDGET);
        let mut i = inputs(&c, NOW);
        let mut alert = open(Rule::Budget, "budget/team/day/2027-01-14/50", "");
        alert.period = Some((DAY_SPAN.0 - 86_400, DAY_SPAN.0));
        i.open.push(alert.clone());
        assert_eq!(
            run(&i, &c, Pass::budgets),
            vec![AlertChange::Resolve {
                id: alert.id,
                at: DAY_SPAN.0
            }]
        );
    }

    #[test]
    fn usage_without_a_price_makes_the_spend_a_floor_and_says_so() {
        let c = config(BUDGET);
        let mut i = inputs(&c, NOW);
        with_key(&mut i, key("k1", "a", "active", None));
        i.spends
            .insert(DAY_SPAN, vec![("src".to_owned(), "k1".to_owned(), 60.0)]);
        i.budget_unpriced.insert(
            DAY_SPAN,
            vec![crate::store::UnpricedUsage {
                source: "src".to_owned(),
                key_id: "k1".to_owned(),
                model: "claude-new-model".to_owned(),
                tokens: 2_500_000,
                first_bucket: DAY_SPAN.0,
            }],
        );
        let changes = run(&i, &c, Pass::budgets);
        let a = fired(&changes);
        assert_eq!(a.len(), 1);
        assert!(
            a[0].summary.ends_with(
                ". The spend is a floor: 2500000 tokens on claude-new-model without a price are \
                 not counted (add [prices.\"claude-new-model\"])"
            ),
            "{}",
            a[0].summary
        );
    }
}
