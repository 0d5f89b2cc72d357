//! The `inactive_key_usage` rule: usage on a deactivated key.

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
        let quiet: Vec<String> = self
            .open
            .keys()
            .filter(|scope| scope.starts_with("inactive_key_usage/") && !firing.contains(*scope))
            .cloned()
            .collect();
        for scope in quiet {
            self.resolve(&scope, judged);
        }
    }
}
