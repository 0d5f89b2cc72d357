//! The `unpriced_usage` rule: usage on a model keywatch has no price for.

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
        let quiet: Vec<String> = self
            .open
            .keys()
            .filter(|scope| scope.starts_with("unpriced_usage/") && !firing.contains(*scope))
            .cloned()
            .collect();
        for scope in quiet {
            self.resolve(&scope, self.now);
        }
    }
}
