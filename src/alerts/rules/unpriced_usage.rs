//! The `unpriced_usage` rule: usage on a model keywatch has no price for.

/// What the person on call should do when this rule fires (email, Slack, PagerDuty).
pub const ADVICE: &str = "Add the model's price to the config ([prices.\"MODEL\"], USD per million tokens): until then its spend counts as $0, so budgets, reports and forecasts are floors.";

use std::collections::HashSet;

use super::{Pass, DAY};
use crate::alerts::Rule;
use crate::config::Severity;
use crate::store::AlertChange;

impl Pass<'_> {
    /// The `unpriced_usage` rule: once per key and model with usage in the baseline window on
    /// a model without a price; resolves when the window holds no such usage.
    pub fn unpriced(&mut self) {
        let inputs = self.inputs;
        let (usage, window) = (&inputs.unpriced, inputs.window);
        let mut firing = HashSet::new();
        let days = window / DAY;
        for u in usage {
            let scope = format!("unpriced_usage/{}/{}/{}", u.source, u.key_id, u.model);
            firing.insert(scope.clone());
            if let Some(mut a) = self.open.get(&scope).cloned() {
                a.observed = Some(u.tokens as f64);
                self.changes.push(AlertChange::Fire(Box::new(a)));
                continue;
            }
            let mut a = self.base_alert(
                Rule::UnpricedUsage,
                scope,
                &u.first_bucket.to_string(),
                Severity::Warning,
            );
            a.summary = format!(
                "{} ({}) used {} tokens of {:?} in the last {days} days, a model keywatch has no price for: its spend counts as $0 in budgets, reports and forecasts, so those figures are floors, and the spike rule judges this key by tokens. Add [prices.{:?}] (USD per million tokens) to the config",
                self.label(&u.source, &u.key_id),
                u.source,
                u.tokens,
                u.model,
                u.model,
            );
            a.source = Some(u.source.clone());
            a.key_id = Some(u.key_id.clone());
            a.key_name = self.key_name(&u.source, &u.key_id);
            a.observed = Some(u.tokens as f64);
            a.unit = "tokens".to_owned();
            a.period = Some((self.judged - window, self.judged + self.width));
            a.starts_at = u.first_bucket;
            self.changes.push(AlertChange::Fire(Box::new(a)));
        }
        self.resolve_quiet(Rule::UnpricedUsage, &firing, self.now);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{config, fired, inputs, key, open, run, with_key, NOW};
    use super::super::Pass;
    use crate::alerts::{alert_id, Rule};
    use crate::store::{AlertChange, UnpricedUsage};

    #[test]
    fn usage_on_a_model_without_a_price_fires_once_and_resolves_when_gone() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        with_key(&mut i, key("k1", "batch", "active", None));
        i.unpriced.push(UnpricedUsage {
            source: "src".to_owned(),
            key_id: "k1".to_owned(),
            model: "claude-next".to_owned(),
            tokens: 5000,
            first_bucket: NOW - 86_400,
        });
        let changes = run(&i, &c, Pass::unpriced);
        let a = fired(&changes);
        assert_eq!(a.len(), 1, "{changes:?}");
        let scope = "unpriced_usage/src/k1/claude-next";
        assert_eq!(
            a[0].id,
            alert_id(Rule::UnpricedUsage, scope, &(NOW - 86_400).to_string())
        );
        assert!(
            a[0].summary.starts_with(
                "batch (src) used 5000 tokens of \"claude-next\" in the last 7 days, a model keywatch has no price for"
            ) && a[0].summary.ends_with("Add [prices.\"claude-next\"] (USD per million tokens) to the config"),
            "{}",
            a[0].summary
        );
        assert_eq!(a[0].period, Some((i.judged - 7 * 86_400, i.judged + 3600)));

        let mut i = inputs(&c, NOW);
        let alert = open(Rule::UnpricedUsage, scope, "1");
        i.open.push(alert.clone());
        assert_eq!(
            run(&i, &c, Pass::unpriced),
            vec![AlertChange::Resolve {
                id: alert.id,
                at: NOW
            }]
        );
    }
}
