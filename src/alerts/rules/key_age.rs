//! The `key_age` rule: an active key older than the rotation policy. Resolves once the key is
//! rotated (deactivated, deleted) or the policy allows its age.

/// What the person on call should do when this rule fires (email, Slack, PagerDuty).
pub const ADVICE: &str =
    "Rotate the key: create a new one, move its users to it, then deactivate this one.";

use super::{Pass, DAY};
use crate::alerts::Rule;
use crate::config::Severity;
use crate::detect::hygiene::{age_days, over_age};
use crate::store::{AlertChange, StoredKey};

impl Pass<'_> {
    pub fn key_ages(&mut self) {
        let max = self.config.rotation.max_key_age_days;
        let keys: Vec<StoredKey> = self.keys.values().cloned().collect();
        for k in keys {
            let scope = format!("key_age/{}/{}", k.source, k.key_id);
            if !over_age(&k.status, k.created_at, self.now, max) {
                self.resolve(&scope, self.now);
                continue;
            }
            let created = k.created_at.unwrap_or(self.now);
            let age = age_days(created, self.now);
            let mut a =
                self.base_alert(Rule::KeyAge, scope, &created.to_string(), Severity::Warning);
            a.summary = format!(
                "{} ({}) is {age} days old, older than the {max}-day rotation policy: rotate it (create a new key, move its users, deactivate this one)",
                self.label(&k.source, &k.key_id), k.source
            );
            a.source = Some(k.source.clone());
            a.key_id = Some(k.key_id.clone());
            a.key_name = k.name.clone();
            a.observed = Some(age as f64);
            a.threshold = Some(f64::from(max));
            a.unit = "days".to_owned();
            a.starts_at = created + i64::from(max) * DAY;
            self.changes.push(AlertChange::Fire(Box::new(a)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{config, fired, inputs, key, open, run, with_key, NOW};
    use super::super::Pass;
    use crate::alerts::{alert_id, Rule};
    use crate::store::AlertChange;

    const DAY: i64 = 86_400;

    #[test]
    fn an_active_key_over_the_policy_fires_from_the_day_it_crossed_it() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        let created = NOW - 100 * DAY;
        with_key(&mut i, key("k1", "old-key", "active", Some(created)));
        let changes = run(&i, &c, Pass::key_ages);
        let a = fired(&changes);
        assert_eq!(a.len(), 1, "{changes:?}");
        assert_eq!(
            a[0].id,
            alert_id(Rule::KeyAge, "key_age/src/k1", &created.to_string())
        );
        assert_eq!(
            a[0].summary,
            "old-key (src) is 100 days old, older than the 90-day rotation policy: rotate it (create a new key, move its users, deactivate this one)"
        );
        assert_eq!((a[0].observed, a[0].threshold), (Some(100.0), Some(90.0)));
        assert_eq!(a[0].starts_at, created + 90 * DAY);
    }

    #[test]
    fn the_policy_is_configurable_and_exactly_at_it_is_not_over() {
        let c = config("[rotation]\nmax_key_age_days = 30\n");
        let mut i = inputs(&c, NOW);
        with_key(&mut i, key("k1", "a", "active", Some(NOW - 30 * DAY)));
        with_key(&mut i, key("k2", "b", "active", Some(NOW - 31 * DAY)));
        let changes = run(&i, &c, Pass::key_ages);
        let a = fired(&changes);
        assert_eq!(a.len(), 1, "{changes:?}");
        assert_eq!(a[0].key_id.as_deref(), Some("k2"));
        assert!(a[0].summary.contains("30-day rotation policy"));
    }

    #[test]
    fn a_rotated_key_resolves_its_open_alert() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        let created = NOW - 100 * DAY;
        with_key(&mut i, key("k1", "old-key", "inactive", Some(created)));
        let alert = open(Rule::KeyAge, "key_age/src/k1", &created.to_string());
        i.open.push(alert.clone());
        assert_eq!(
            run(&i, &c, Pass::key_ages),
            vec![AlertChange::Resolve {
                id: alert.id,
                at: NOW
            }]
        );
    }
}
