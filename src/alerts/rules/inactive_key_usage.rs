//! The `inactive_key_usage` rule: usage on a deactivated key.

/// What the person on call should do when this rule fires (email, Slack, PagerDuty).
pub const ADVICE: &str = "Something still holds a deactivated key: find the caller, keep the key deactivated, and rotate any key the same caller could hold.";

use super::{hhmm, money, Pass};
use crate::alerts::Rule;
use crate::config::Severity;
use crate::detect::hygiene::is_deactivated;
use crate::store::AlertChange;

impl Pass<'_> {
    /// Usage in the latest settled bucket on keys that are deactivated. Usage counts only in
    /// buckets that started after keywatch saw the key deactivated; a key that was already
    /// deactivated when first listed counts from any bucket.
    pub fn inactive_usage(&mut self) {
        let used = &self.inputs.deactivated;
        let judged = self.judged;
        let mut firing = std::collections::HashSet::new();
        for (source, key_id, cost, tokens) in used {
            let Some(key) = self.keys.get(&(source.clone(), key_id.clone())) else {
                continue;
            };
            let after_change = key.status_changed_at.is_none_or(|t| judged >= t);
            if !(is_deactivated(&key.status) && after_change && *tokens > 0) {
                continue;
            }
            let scope = format!("inactive_key_usage/{source}/{key_id}");
            firing.insert(scope.clone());
            if let Some(mut a) = self.open.get(&scope).cloned() {
                a.observed = Some(*cost);
                self.changes.push(AlertChange::Fire(Box::new(a)));
                continue;
            }
            let mut a = self.base_alert(
                Rule::InactiveKeyUsage,
                scope,
                &judged.to_string(),
                Severity::Critical,
            );
            a.summary = format!(
                "{} ({source}) is {} but was used in the {} from {}: {tokens} tokens, {}. Something still holds this key: find it, and make sure the key cannot be re-enabled",
                self.label(source, key_id),
                key.status,
                match self.width {
                    60 => "minute",
                    86_400 => "day",
                    _ => "hour",
                },
                hhmm(judged),
                money(*cost)
            );
            a.source = Some(source.clone());
            a.key_id = Some(key_id.clone());
            a.key_name = key.name.clone();
            a.observed = Some(*cost);
            a.unit = "usd".to_owned();
            a.period = Some((judged, judged + self.width));
            a.starts_at = judged;
            self.changes.push(AlertChange::Fire(Box::new(a)));
        }
        self.resolve_quiet(Rule::InactiveKeyUsage, &firing, judged);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{config, fired, inputs, key, run, with_key, NOW};
    use super::super::Pass;
    use crate::alerts::{alert_id, Rule};
    use crate::config::Severity;

    #[test]
    fn usage_after_deactivation_fires_and_usage_before_it_does_not() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        let mut k = key("k1", "old", "inactive", None);
        k.status_changed_at = Some(i.judged);
        with_key(&mut i, k);
        i.deactivated
            .push(("src".to_owned(), "k1".to_owned(), 1.5, 1000));
        let changes = run(&i, &c, Pass::inactive_usage);
        let a = fired(&changes);
        assert_eq!(a.len(), 1, "{changes:?}");
        assert_eq!(
            a[0].id,
            alert_id(
                Rule::InactiveKeyUsage,
                "inactive_key_usage/src/k1",
                &i.judged.to_string()
            )
        );
        assert_eq!(a[0].severity, Severity::Critical);
        assert_eq!(
            a[0].summary,
            "old (src) is inactive but was used in the hour from 06:00 UTC: 1000 tokens, $1.50. Something still holds this key: find it, and make sure the key cannot be re-enabled"
        );

        // Deactivated after the judged bucket started: that usage is from before.
        let judged = i.judged;
        if let Some(k) = i.keys.get_mut(&("src".to_owned(), "k1".to_owned())) {
            k.status_changed_at = Some(judged + 1);
        }
        assert!(run(&i, &c, Pass::inactive_usage).is_empty());
    }
}
