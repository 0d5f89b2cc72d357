//! The alert rules, one file each: its check, its summary text and its resolution. They read
//! only [`Inputs`] (gathered by `evaluate::load`) and the config, and return alert changes:
//! no store, no clock, no I/O.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Alert, Rule};
use crate::budget::{KeyMap, Spends, UnpricedSpends};
use crate::config::{Config, Severity};
use crate::providers::WORKBENCH_KEY_ID;
use crate::store::{AlertChange, KeySeries, PollState, UnpricedUsage};

mod budget;
mod budget_forecast;
mod inactive_key_usage;
mod key_age;
mod rotation_stalled;
mod source_health;
mod spike;
mod spike_fast;
mod unpriced_usage;

pub(in crate::alerts) const DAY: i64 = 86_400;

/// What the person on call should do when `rule` fires: each rule's own words, in its file.
pub fn advice(rule: Rule) -> &'static str {
    match rule {
        Rule::Spike => spike::ADVICE,
        Rule::Budget => budget::ADVICE,
        Rule::BudgetForecast => budget_forecast::ADVICE,
        Rule::KeyAge => key_age::ADVICE,
        Rule::InactiveKeyUsage => inactive_key_usage::ADVICE,
        Rule::SourceUnhealthy => source_health::ADVICE,
        Rule::UnpricedUsage => unpriced_usage::ADVICE,
        Rule::RotationStalled => rotation_stalled::ADVICE,
    }
}

/// Everything one pass judges, read from the store before any rule runs.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Unix seconds of the pass.
    pub now: i64,
    /// Bucket width in seconds.
    pub width: i64,
    /// Start of the latest settled bucket.
    pub judged: i64,
    /// The spike baseline window in seconds (at least 7 days).
    pub window: i64,
    /// The inventory by (source, key id).
    pub keys: KeyMap,
    /// The open alerts, as stored.
    pub open: Vec<Alert>,
    /// Every key's series of the configured metric over the window.
    pub series: Vec<KeySeries>,
    /// Token series of the keys with usage on a model without a price (cost metric only).
    pub by_tokens: HashMap<(String, String), KeySeries>,
    /// (source, key id, cost, tokens) of deactivated keys in the judged bucket.
    pub deactivated: Vec<(String, String, f64, i64)>,
    /// Spend per budget period.
    pub spends: Spends,
    /// Usage on models without a price per budget period (periods with some only).
    pub budget_unpriced: UnpricedSpends,
    /// Usage on models without a price in the window.
    pub unpriced: Vec<UnpricedUsage>,
    /// Poll state by (source, stream) for every configured source; a missing one is default.
    pub poll_states: HashMap<(String, String), PollState>,
    /// The recent minute stream (cost per minute) over `[detect.spike.fast] lookback`, when the
    /// fast spike check is on; else empty.
    pub recent: Vec<KeySeries>,
    /// Spike scopes resolved since the judged bucket began, with their end: the hourly check
    /// does not page again for an episode the fast check already closed.
    pub spike_ended: HashMap<String, i64>,
}

/// One pass of the rules over the same inputs, collecting their changes.
pub struct Pass<'a> {
    config: &'a Config,
    inputs: &'a Inputs,
    now: i64,
    width: i64,
    judged: i64,
    keys: &'a KeyMap,
    /// The open alerts by scope.
    open: HashMap<String, Alert>,
    changes: Vec<AlertChange>,
}

pub(in crate::alerts) fn money(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("${v:.0}")
    } else {
        format!("${v:.2}")
    }
}

fn hhmm(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_default()
}

impl<'a> Pass<'a> {
    pub fn new(inputs: &'a Inputs, config: &'a Config) -> Self {
        Pass {
            config,
            inputs,
            now: inputs.now,
            width: inputs.width,
            judged: inputs.judged,
            keys: &inputs.keys,
            open: inputs
                .open
                .iter()
                .map(|a| (a.scope.clone(), a.clone()))
                .collect(),
            changes: Vec::new(),
        }
    }

    /// The changes decided so far.
    pub fn into_changes(self) -> Vec<AlertChange> {
        self.changes
    }

    fn key_name(&self, source: &str, key_id: &str) -> Option<String> {
        if key_id == WORKBENCH_KEY_ID {
            return Some("Console Workbench (no API key)".to_owned());
        }
        self.keys
            .get(&(source.to_owned(), key_id.to_owned()))
            .and_then(|k| k.name.clone())
    }

    fn label(&self, source: &str, key_id: &str) -> String {
        self.key_name(source, key_id)
            .unwrap_or_else(|| key_id.to_owned())
    }

    fn base_alert(&self, rule: Rule, scope: String, episode: &str, severity: Severity) -> Alert {
        Alert::firing(rule, scope, episode, severity, self.now)
    }

    fn resolve(&mut self, scope: &str, at: i64) {
        if let Some(a) = self.open.get(scope) {
            self.changes.push(AlertChange::Resolve {
                id: a.id.clone(),
                at,
            });
        }
    }

    /// Resolves, at `at`, the open alerts of `rule` whose scope the pass did not find holding.
    fn resolve_quiet(&mut self, rule: Rule, holding: &std::collections::HashSet<String>, at: i64) {
        let quiet: Vec<String> = self
            .open
            .values()
            .filter(|a| a.rule == rule && !holding.contains(&a.scope))
            .map(|a| a.scope.clone())
            .collect();
        for scope in quiet {
            self.resolve(&scope, at);
        }
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
}

/// Hand-built inputs for the rules' unit tests: no store, no subprocess.
#[cfg(test)]
pub(in crate::alerts) mod fixtures {
    use std::collections::HashMap;
    use std::path::Path;

    use super::{Inputs, Pass, DAY};
    use crate::alerts::{Alert, Rule};
    use crate::config::{Config, Severity};
    use crate::store::{AlertChange, StoredKey};

    /// 2027-01-15T08:00:00Z, on an hour.
    pub const NOW: i64 = 1_800_000_000;

    /// The config `extra` (whole tables) plus one Anthropic source named `src`.
    pub fn config(extra: &str) -> Config {
        let text = format!(
            "{extra}\n[[sources]]\nname = \"src\"\nprovider = \"anthropic\"\nadmin_key_env = \"ADMIN\"\n"
        );
        let env = HashMap::from([("ADMIN".to_owned(), "sk-ant-admin01-TEST".to_owned())]);
        Config::from_str(&text, Path::new("/etc/keywatch/keywatch.toml"), &env).unwrap()
    }

    /// Empty inputs at `now`, with the bucket, settled bucket and window `load` would use.
    pub fn inputs(config: &Config, now: i64) -> Inputs {
        let width = config.poll.bucket_width.seconds();
        let settle = config.poll.settle.0.as_secs() as i64;
        Inputs {
            now,
            width,
            judged: (now - settle).div_euclid(width) * width - width,
            window: (config.spike.baseline_window.0.as_secs() as i64).max(7 * DAY),
            ..Inputs::default()
        }
    }

    pub fn key(key_id: &str, name: &str, status: &str, created_at: Option<i64>) -> StoredKey {
        StoredKey {
            source: "src".to_owned(),
            key_id: key_id.to_owned(),
            name: Some(name.to_owned()),
            status: status.to_owned(),
            created_at,
            workspace_id: None,
            partial_key_hint: None,
            first_seen: created_at.unwrap_or(0),
            last_seen: NOW,
            in_inventory: true,
            status_changed_at: None,
        }
    }

    /// Adds `k` to the inventory of `inputs`.
    pub fn with_key(inputs: &mut Inputs, k: StoredKey) {
        inputs.keys.insert((k.source.clone(), k.key_id.clone()), k);
    }

    /// An open alert of `rule` at `scope`, as the store would return it.
    pub fn open(rule: Rule, scope: &str, episode: &str) -> Alert {
        Alert {
            source: Some("src".to_owned()),
            ..Alert::firing(rule, scope.to_owned(), episode, Severity::Warning, 0)
        }
    }

    /// Runs one rule over `inputs`.
    pub fn run<'a>(
        inputs: &'a Inputs,
        config: &'a Config,
        rule: impl FnOnce(&mut Pass<'a>),
    ) -> Vec<AlertChange> {
        let mut pass = Pass::new(inputs, config);
        rule(&mut pass);
        pass.into_changes()
    }

    /// The alerts fired, in order.
    pub fn fired(changes: &[AlertChange]) -> Vec<&Alert> {
        changes
            .iter()
            .filter_map(|c| match c {
                AlertChange::Fire(a) => Some(&**a),
                AlertChange::Resolve { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod advice_tests {
    use super::advice;
    use crate::alerts::Rule;

    #[test]
    fn every_rule_has_its_own_advice() {
        let all: Vec<&str> = Rule::ALL.into_iter().map(advice).collect();
        for (rule, text) in Rule::ALL.into_iter().zip(&all) {
            assert!(text.len() > 40, "{rule:?}: {text}");
            assert_eq!(all.iter().filter(|t| *t == text).count(), 1, "{rule:?}");
        }
        assert!(advice(Rule::Spike).contains("deactivate the key"));
    }
}
