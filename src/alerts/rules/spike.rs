//! The `spike` rule: a key's latest settled bucket against its own baseline (`detect::spike`).
//! Fires at `factor` times the baseline, and resolves when the bucket falls under the level
//! or the key has no usage left in the window.

/// What the person on call should do when this rule fires (email, Slack, PagerDuty).
pub const ADVICE: &str = "Check for a leaked key: see where the key is used and what changed. If the traffic is not yours, deactivate the key in the provider's console now, then rotate it.";

use std::collections::HashSet;

use super::{hhmm, money, Pass};
use crate::alerts::Rule;
use crate::config::Severity;
use crate::detect::spike::{judge, SpikeVerdict};
use crate::detect::{SpikeConfig, SpikeMetric};
use crate::store::{AlertChange, KeySeries};

impl Pass<'_> {
    /// The spike rule on the latest settled bucket of each key; keys in `by_tokens` (usage on
    /// a model without a price) are judged on that token series instead.
    pub fn spikes(&mut self) {
        let inputs = self.inputs;
        let (series, by_tokens) = (&inputs.series, &inputs.by_tokens);
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
        self.resolve_quiet(Rule::Spike, &seen, self.judged);
    }

    fn spike(&mut self, s: &KeySeries, scope: String, cfg: &SpikeConfig, unpriced: bool) {
        let (w, judged) = (self.width, self.judged);
        let first = s.points.first().map_or(judged, |p| p.0);
        let values = s.points.dense(first, judged, w);
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
        // While the minute stream is healthy the fast check continues and resolves open
        // spikes, and an episode it covered is not paged again when its hour settles.
        if !unpriced && self.fast_active(&s.source) {
            let covered = self
                .inputs
                .spike_ended
                .get(&scope)
                .is_some_and(|&end| end > judged);
            if open.is_some() || covered || self.firing_now(&scope) {
                return;
            }
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
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{config, fired, inputs, key, open, run, with_key, NOW};
    use super::super::Pass;
    use crate::alerts::{alert_id, Rule};
    use crate::store::{AlertChange, KeySeries, Points};

    /// Eight days of $1 an hour on `k1`, then `last` in the judged bucket.
    fn steady_then(last: f64) -> (crate::config::Config, super::super::Inputs) {
        let c = config("");
        let mut i = inputs(&c, NOW);
        with_key(
            &mut i,
            key("k1", "prod-rag", "active", Some(NOW - 30 * 86_400)),
        );
        let from = i.judged - 8 * 86_400;
        let mut points: Vec<(i64, f64)> =
            (from..i.judged).step_by(3600).map(|t| (t, 1.0)).collect();
        points.push((i.judged, last));
        i.series.push(KeySeries {
            source: "src".to_owned(),
            key_id: "k1".to_owned(),
            points: Points::from_rows(3600, points),
        });
        (c, i)
    }

    #[test]
    fn ten_times_the_baseline_fires_once_per_episode() {
        let (c, i) = steady_then(10.0);
        let changes = run(&i, &c, Pass::spikes);
        let alerts = fired(&changes);
        assert_eq!(alerts.len(), 1, "{changes:?}");
        let a = alerts[0];
        assert_eq!(
            a.id,
            alert_id(Rule::Spike, "spike/src/k1", &i.judged.to_string())
        );
        assert_eq!(
            a.summary,
            "prod-rag (src) used $10.00 in the hour from 06:00 UTC, 10.0x its normal $1.00/h (alert at 10x): check for a leaked key and consider deactivating it"
        );
        assert_eq!(
            (a.observed, a.baseline, a.threshold),
            (Some(10.0), Some(1.0), Some(10.0))
        );
        assert_eq!(a.unit, "usd");
        assert_eq!(a.period, Some((i.judged, i.judged + 3600)));
        assert_eq!(a.starts_at, i.judged);
    }

    #[test]
    fn under_ten_times_is_quiet() {
        let (c, i) = steady_then(9.9);
        assert!(run(&i, &c, Pass::spikes).is_empty());
    }

    #[test]
    fn an_open_spike_stays_at_its_level_and_resolves_under_it() {
        let scope = "spike/src/k1";
        let mut alert = open(Rule::Spike, scope, "1");
        alert.unit = "usd".to_owned();
        alert.baseline = Some(1.0);
        alert.threshold = Some(10.0);
        alert.observed = Some(12.0);

        let (c, mut i) = steady_then(10.0);
        i.open.push(alert.clone());
        let changes = run(&i, &c, Pass::spikes);
        assert_eq!(changes, vec![AlertChange::Fire(Box::new(alert.clone()))]);

        let (c, mut i) = steady_then(9.0);
        i.open.push(alert.clone());
        assert_eq!(
            run(&i, &c, Pass::spikes),
            vec![AlertChange::Resolve {
                id: alert.id.clone(),
                at: i.judged
            }]
        );
    }

    #[test]
    fn an_open_spike_of_a_key_without_usage_resolves() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        let alert = open(Rule::Spike, "spike/src/gone", "1");
        i.open.push(alert.clone());
        assert_eq!(
            run(&i, &c, Pass::spikes),
            vec![AlertChange::Resolve {
                id: alert.id,
                at: i.judged
            }]
        );
    }
}
