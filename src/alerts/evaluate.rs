//! One detection pass: load samples from the store, judge them with `detect`, and apply the
//! verdicts to alert state. Runs after every poll, on settled buckets.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{alert_id, Alert, AlertStatus, Rule};
use crate::config::{Config, Severity};
use crate::detect::hygiene::{age_days, is_deactivated, over_age};
use crate::detect::spike::{judge, SpikeVerdict};
use crate::detect::{SpikeConfig, SpikeMetric};
use crate::providers::WORKBENCH_KEY_ID;
use crate::store::{
    AlertChange, KeySeries, Route, StateChange, Store, StoreError, StoredKey, UnpricedUsage,
};

mod budget;
mod health;

pub(super) use budget::{budget_spends, in_scope, KeyMap, Spends};

const DAY: i64 = 86_400;

/// What one pass did.
#[derive(Debug, Default)]
pub struct EvalReport {
    pub changes: Vec<StateChange>,
}

/// Inputs of a pass that do not change between rules.
struct Pass<'a> {
    config: &'a Config,
    now: i64,
    width: i64,
    /// Start of the latest settled bucket.
    judged: i64,
    keys: HashMap<(String, String), StoredKey>,
    open: HashMap<String, Alert>,
    changes: Vec<AlertChange>,
}

/// Runs every rule once and records the resulting state changes.
pub async fn evaluate(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<EvalReport, StoreError> {
    let now = now.timestamp();
    let width = config.poll.bucket_width.seconds();
    let settle = config.poll.settle.0.as_secs() as i64;
    let judged = (now - settle).div_euclid(width) * width - width;
    let routes: Vec<Route> = config
        .notifiers
        .iter()
        .map(|n| Route {
            notifier: n.name().to_owned(),
            min_severity: n.min_severity(),
        })
        .collect();
    // First undo what a clock that was ahead resolved: the rules then judge it anew.
    let mut made = store.reopen_future_resolutions(now, &routes).await?;
    let keys = store
        .all_keys()
        .await?
        .into_iter()
        .map(|k| ((k.source.clone(), k.key_id.clone()), k))
        .collect();
    let open = store
        .alerts(false)
        .await?
        .into_iter()
        .map(|a| (a.scope.clone(), a))
        .collect();
    let mut pass = Pass {
        config,
        now,
        width,
        judged,
        keys,
        open,
        changes: Vec::new(),
    };
    let window = (config.spike.baseline_window.0.as_secs() as i64).max(7 * DAY);
    // Independent reads run side by side (WAL readers do not block each other).
    let (series, deactivated, spends, unpriced) = tokio::try_join!(
        store.usage_series(width, judged - window, judged, config.spike.metric),
        store.deactivated_key_usage(width, judged),
        budget_spends(store, config, width, now),
        store.unpriced_usage(width, judged - window, judged),
    )?;
    // Keys with usage on an unpriced model are judged by tokens: their dollars are a floor.
    let by_tokens: HashMap<(String, String), KeySeries> =
        if config.spike.metric == SpikeMetric::Cost && !unpriced.is_empty() {
            let wanted: HashSet<(&str, &str)> = unpriced
                .iter()
                .map(|u| (u.source.as_str(), u.key_id.as_str()))
                .collect();
            store
                .usage_series(width, judged - window, judged, SpikeMetric::Tokens)
                .await?
                .into_iter()
                .filter(|s| wanted.contains(&(s.source.as_str(), s.key_id.as_str())))
                .map(|s| ((s.source.clone(), s.key_id.clone()), s))
                .collect()
        } else {
            HashMap::new()
        };
    pass.spikes(&series, &by_tokens);
    pass.unpriced(&unpriced, window);
    pass.inactive_usage(&deactivated);
    pass.key_ages();
    pass.budgets(&spends);
    pass.forecasts(&spends);
    pass.source_health(store).await?;
    made.extend(
        store
            .apply_alert_changes(&pass.changes, &routes, now)
            .await?,
    );
    let changes = made;
    for c in &changes {
        tracing::info!(alert = %c.alert_id, status = c.status.as_str(), silenced = c.silenced, "alert state changed");
    }
    Ok(EvalReport { changes })
}

fn money(v: f64) -> String {
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

impl Pass<'_> {
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
        Alert {
            id: alert_id(rule, &scope, episode),
            scope,
            rule,
            severity,
            status: AlertStatus::Firing,
            source: None,
            key_id: None,
            key_name: None,
            budget: None,
            summary: String::new(),
            observed: None,
            baseline: None,
            threshold: None,
            unit: String::new(),
            period: None,
            starts_at: self.now,
            ends_at: None,
        }
    }

    fn resolve(&mut self, scope: &str, at: i64) {
        if let Some(a) = self.open.get(scope) {
            self.changes.push(AlertChange::Resolve {
                id: a.id.clone(),
                at,
            });
        }
    }

    /// The spike rule on the latest settled bucket of each key; keys in `by_tokens` (usage on
    /// a model without a price) are judged on that token series instead.
    fn spikes(&mut self, series: &[KeySeries], by_tokens: &HashMap<(String, String), KeySeries>) {
        let mut seen = HashSet::new();
        let tokens_cfg = self.config.spike.by_tokens();
        for s in series {
            let scope = format!("spike/{}/{}", s.source, s.key_id);
            seen.insert(scope.clone());
            match by_tokens.get(&(s.source.clone(), s.key_id.clone())) {
                Some(t) => self.spike(t, scope, &tokens_cfg, true),
                None => {
                    let cfg = self.config.spike.clone();
                    self.spike(s, scope, &cfg, false)
                }
            }
        }
        // Open spikes of keys with no usage at all in the window have fallen back to zero.
        let stale: Vec<String> = self
            .open
            .keys()
            .filter(|scope| scope.starts_with("spike/") && !seen.contains(*scope))
            .cloned()
            .collect();
        for scope in stale {
            self.resolve(&scope, self.judged);
        }
    }

    fn spike(&mut self, s: &KeySeries, scope: String, cfg: &SpikeConfig, unpriced: bool) {
        let (w, judged) = (self.width, self.judged);
        let first = s.points.first().map_or(judged, |p| p.0);
        let values = super::dense_values(&s.points, first, judged, w);
        let Some((&observed, history)) = values.split_last() else {
            return;
        };
        let key = self.keys.get(&(s.source.clone(), s.key_id.clone()));
        let known_since = key
            .and_then(|k| k.created_at)
            .map_or(first, |c| c.min(first));
        let unit = match cfg.metric {
            SpikeMetric::Cost => "usd",
            SpikeMetric::Tokens => "tokens",
        };
        // An open alert measured in another unit (the key's model got a price) is judged anew.
        let open = self.open.get(&scope).filter(|a| a.unit == unit).cloned();
        if open.is_none() && self.open.contains_key(&scope) {
            self.resolve(&scope, judged);
            return;
        }
        let open_level = open.as_ref().and_then(|a| Some(a.baseline? * a.threshold?));
        match judge(cfg, w, history, judged - known_since, observed, open_level) {
            SpikeVerdict::Fire { baseline, level } => {
                // Buckets no pass judged yet (the first start's backfill, a restart after
                // downtime) may already be above the level: the spike began with the first.
                let above = history
                    .iter()
                    .rev()
                    .take_while(|v| **v >= level && **v > 0.0)
                    .count() as i64;
                let began = judged - above * w;
                let fmt = |v: f64| match cfg.metric {
                    SpikeMetric::Cost => money(v),
                    SpikeMetric::Tokens => format!("{v:.0} tokens"),
                };
                let per = self
                    .config
                    .poll
                    .bucket_width
                    .as_str()
                    .trim_start_matches('1');
                let mut a =
                    self.base_alert(Rule::Spike, scope, &began.to_string(), Severity::Critical);
                let since = if began < judged {
                    format!(", above {}x since {}", cfg.factor, hhmm(began))
                } else {
                    String::new()
                };
                let why_tokens = if unpriced {
                    " (judged by tokens: it uses a model without a price)"
                } else {
                    ""
                };
                a.summary = format!(
                    "{} ({}) used {} in the {} from {}, {:.1}x its normal {}/{per} (alert at {}x{since}){why_tokens}: check for a leaked key and consider deactivating it",
                    self.label(&s.source, &s.key_id),
                    s.source,
                    fmt(observed),
                    match per { "m" => "minute", "d" => "day", _ => "hour" },
                    hhmm(judged),
                    observed / baseline.value,
                    fmt(baseline.value),
                    cfg.factor,
                );
                a.source = Some(s.source.clone());
                a.key_id = Some(s.key_id.clone());
                a.key_name = self.key_name(&s.source, &s.key_id);
                a.observed = Some(observed);
                a.baseline = Some(baseline.value);
                a.threshold = Some(cfg.factor);
                a.unit = unit.to_owned();
                a.period = Some((judged, judged + w));
                a.starts_at = began;
                self.changes.push(AlertChange::Fire(Box::new(a)));
            }
            SpikeVerdict::Continue => {
                if let Some(mut a) = open {
                    a.observed = Some(a.observed.unwrap_or(0.0).max(observed));
                    self.changes.push(AlertChange::Fire(Box::new(a)));
                }
            }
            SpikeVerdict::Resolve => self.resolve(&scope, judged),
            SpikeVerdict::Quiet { .. } => {}
        }
    }

    /// The `unpriced_usage` rule: once per key and model with usage in the baseline window on
    /// a model without a price; resolves when the window holds no such usage.
    fn unpriced(&mut self, usage: &[UnpricedUsage], window: i64) {
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

    /// Usage in the latest settled bucket on keys that are deactivated. Usage counts only in
    /// buckets that started after keywatch saw the key deactivated; a key that was already
    /// deactivated when first listed counts from any bucket.
    fn inactive_usage(&mut self, used: &[(String, String, f64, i64)]) {
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

    fn key_ages(&mut self) {
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
