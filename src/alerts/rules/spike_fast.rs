//! The `spike` rule on the recent minute stream (`detect::burn`): a key burning at `factor`
//! times its busy hourly level over a long and a short window fires within minutes, on data
//! still arriving; the alert resolves once `resolve_window` of settled minutes after the
//! episode began burn under the level. The same alert (scope `spike/<source>/<key>`) as the
//! hourly check, so one leak pages once: while the minute stream is healthy the hourly check
//! neither continues nor resolves an open spike, and does not fire again for a bucket an episode
//! already covered.

use std::collections::{HashMap, HashSet};

use super::{hhmm, money, Pass};
use crate::alerts::Rule;
use crate::config::Severity;
use crate::detect::burn::{fire, settled_below, Burn};
use crate::detect::spike::baseline;
use crate::detect::SpikeMetric;
use crate::store::{AlertChange, KeySeries, Points};

/// The poll-state stream of the recent minute stream.
const RECENT_STREAM: &str = "usage:60";
const MIN: i64 = 60;

impl Pass<'_> {
    /// Whether the fast check judges `source` now: it is on, and the minute stream succeeded
    /// within the last 15 minutes (or three poll intervals). Otherwise the hourly check does all.
    pub(super) fn fast_active(&self, source: &str) -> bool {
        if self.config.poll.recent.is_none() || self.config.spike.metric != SpikeMetric::Cost {
            return false;
        }
        let recent = (3 * self.config.poll.interval.0.as_secs() as i64).max(15 * MIN);
        self.inputs
            .poll_states
            .get(&(source.to_owned(), RECENT_STREAM.to_owned()))
            .and_then(|s| s.last_success_at)
            .is_some_and(|t| self.now - t <= recent)
    }

    /// The newest minute the minute stream has settled for `source`: `settle` before its last
    /// successful poll.
    fn settled_edge(&self, source: &str) -> i64 {
        let polled = self
            .inputs
            .poll_states
            .get(&(source.to_owned(), RECENT_STREAM.to_owned()))
            .and_then(|s| s.last_success_at)
            .unwrap_or(0)
            .min(self.now);
        (polled - self.config.poll.settle.0.as_secs() as i64).div_euclid(MIN) * MIN
    }

    /// The key's busy level in USD per hour: its hourly spike baseline at the latest settled
    /// hour (the floor when it has under a day of history).
    fn busy_per_hour(&self, source: &str, key_id: &str) -> f64 {
        let cfg = &self.config.spike;
        let hourly = self
            .inputs
            .series
            .iter()
            .find(|s| s.source == source && s.key_id == key_id);
        let Some(s) = hourly.filter(|_| self.width == 3_600) else {
            return cfg.min_baseline;
        };
        let first = s.points.first().map_or(self.judged, |p| p.0);
        let values = s.points.dense(first, self.judged, self.width);
        let known_since = self
            .keys
            .get(&(source.to_owned(), key_id.to_owned()))
            .and_then(|k| k.created_at)
            .map_or(first, |c| c.min(first));
        baseline(
            cfg,
            self.width,
            &values,
            self.judged + self.width - known_since,
        )
        .value
    }

    /// The fast spike check over every key of the recent stream.
    pub fn fast_spikes(&mut self) {
        let Some(lookback) = self.config.poll.recent else {
            return;
        };
        let inputs = self.inputs;
        // The data edge per source: the newest minute with any data. Later minutes are not
        // delivered yet, so they are left out, not read as zero.
        let mut edges: HashMap<&str, i64> = HashMap::new();
        for s in &inputs.recent {
            if let Some((t, _)) = s.points.last() {
                let e = edges.entry(s.source.as_str()).or_insert(t);
                *e = (*e).max(t);
            }
        }
        let mut seen = HashSet::new();
        for s in &inputs.recent {
            let key = (s.source.clone(), s.key_id.clone());
            if !self.fast_active(&s.source) || inputs.by_tokens.contains_key(&key) {
                continue;
            }
            let Some(&edge) = edges.get(s.source.as_str()) else {
                continue;
            };
            // Minutes still arriving are left out: the windows end `delay` before now.
            let delay = self.config.spike.fast.delay.0.as_secs() as i64;
            let edge = edge.min((self.now - delay).div_euclid(MIN) * MIN - MIN);
            let scope = format!("spike/{}/{}", s.source, s.key_id);
            seen.insert(scope.clone());
            let first = (self.now - lookback.0.as_secs() as i64).div_euclid(MIN) * MIN;
            let values = s.points.dense(first, edge, MIN);
            if self.open.get(&scope).is_some_and(|a| a.unit == "usd") {
                self.fast_resolve(&scope, s, first);
                continue;
            }
            if self.open.contains_key(&scope) {
                continue; // measured in tokens: the hourly check owns it
            }
            let busy = self.busy_per_hour(&s.source, &s.key_id);
            let factor = self.config.spike.fast_factor();
            if let Some(burn) = fire(&self.config.spike.fast, &values, factor * busy) {
                self.fast_fire(s, scope, &burn, busy, factor, first, edge);
            }
        }
        // Open spikes of keys with no minute data left in the lookback: settled and quiet.
        let quiet: Vec<(String, String)> = self
            .open
            .values()
            .filter(|a| a.rule == Rule::Spike && a.unit == "usd" && !seen.contains(&a.scope))
            .filter_map(|a| Some((a.scope.clone(), a.source.clone()?)))
            .filter(|(_, source)| self.fast_active(source))
            .collect();
        for (scope, source) in quiet {
            let quiet = KeySeries {
                source,
                key_id: String::new(),
                points: Points::default(),
            };
            let first = (self.now - lookback.0.as_secs() as i64).div_euclid(MIN) * MIN;
            self.fast_resolve(&scope, &quiet, first);
        }
    }

    /// Resolves the open spike at `scope` once settled minutes after it began burn under its
    /// level.
    fn fast_resolve(&mut self, scope: &str, s: &KeySeries, first: i64) {
        let Some(a) = self.open.get(scope) else {
            return;
        };
        let (Some(base), Some(factor)) = (a.baseline, a.threshold) else {
            return;
        };
        let settled = self.settled_edge(&s.source);
        let from = a.starts_at.div_euclid(MIN) * MIN;
        let from = from.max(first);
        if settled <= from {
            return;
        }
        let values = s.points.dense(from, settled - MIN, MIN);
        if settled_below(&self.config.spike.fast, &values, base * factor) == Some(true) {
            self.resolve(scope, settled);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fast_fire(
        &mut self,
        s: &KeySeries,
        scope: String,
        burn: &Burn,
        busy: f64,
        factor: f64,
        first: i64,
        edge: i64,
    ) {
        let began = first + burn.began as i64 * MIN;
        let mut a = self.base_alert(Rule::Spike, scope, &began.to_string(), Severity::Critical);
        let long = burn.pair.long;
        a.summary = format!(
            "{} ({}) is burning {}/h since {}, {:.1}x its normal {}/h (alert at {}x over the last {long}): {} spent since it began, {}/day at this rate. Check for a leaked key and consider deactivating it",
            self.label(&s.source, &s.key_id),
            s.source,
            money(burn.rate_per_hour),
            hhmm(began),
            burn.rate_per_hour / busy,
            money(busy),
            factor,
            money(burn.spent),
            money(burn.rate_per_hour * 24.0),
        );
        a.source = Some(s.source.clone());
        a.key_id = Some(s.key_id.clone());
        a.key_name = self.key_name(&s.source, &s.key_id);
        a.observed = Some(burn.rate_per_hour);
        a.baseline = Some(busy);
        a.threshold = Some(factor);
        a.unit = "usd".to_owned();
        let window = long.0.as_secs() as i64;
        a.period = Some((edge + MIN - window, edge + MIN));
        a.starts_at = began;
        self.changes.push(AlertChange::Fire(Box::new(a)));
    }

    /// Whether this pass already fired an alert at `scope`.
    pub(super) fn firing_now(&self, scope: &str) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c, AlertChange::Fire(a) if a.scope == scope))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{config, fired, inputs, key, open, run, with_key, NOW};
    use super::super::{Inputs, Pass};
    use crate::alerts::Rule;
    use crate::store::{AlertChange, KeySeries, Points, PollState};

    const H: i64 = 3_600;

    /// `k1` spends $1 an hour for eight days (its busy level: $1/h; 10x: $10/h = $0.167/min),
    /// and the minute stream, polled a minute ago, holds `minutes` ending at NOW.
    fn inputs_with(minutes: &[f64]) -> (crate::config::Config, Inputs) {
        let c = config("");
        let mut i = inputs(&c, NOW);
        with_key(
            &mut i,
            key("k1", "prod-rag", "active", Some(NOW - 30 * 86_400)),
        );
        let from = i.judged - 8 * 86_400;
        i.series.push(series(
            H,
            (from..=i.judged)
                .step_by(H as usize)
                .map(|t| (t, 1.0))
                .collect(),
        ));
        // The last minute delivered is 4 minutes old: `delay` (3m) leaves nothing out.
        let first = NOW - 4 * 60 - (minutes.len() as i64 - 1) * 60;
        let points = minutes
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(n, v)| (first + n as i64 * 60, *v))
            .collect();
        i.recent.push(series(60, points));
        let polled = PollState {
            last_success_at: Some(NOW - 30),
            ..PollState::default()
        };
        i.poll_states
            .insert(("src".into(), "usage:60".into()), polled);
        (c, i)
    }

    fn series(width: i64, points: Vec<(i64, f64)>) -> KeySeries {
        KeySeries {
            source: "src".to_owned(),
            key_id: "k1".to_owned(),
            points: Points::from_rows(width, points),
        }
    }

    #[test]
    fn a_leak_fires_within_minutes_with_the_numbers_on_call_reads() {
        // Normal: $0.0167/min; a leak of $1/min (60x) for the last 6 minutes.
        let mut m = vec![1.0 / 60.0; 114];
        m.extend([1.0; 6]);
        let (c, i) = inputs_with(&m);
        let changes = run(&i, &c, Pass::fast_spikes);
        let a = fired(&changes);
        assert_eq!(a.len(), 1, "{changes:?}");
        assert_eq!(a[0].rule, Rule::Spike);
        assert_eq!(a[0].scope, "spike/src/k1");
        assert_eq!(a[0].starts_at, NOW - 9 * 60, "the first leaked minute");
        let s = &a[0].summary;
        assert!(
            s.contains("prod-rag (src) is burning $36.40/h since 07:51 UTC"),
            "{s}"
        );
        assert!(s.contains("$6.00 spent since it began"), "{s}");
        assert!(s.contains("$874/day at this rate"), "{s}");
    }

    #[test]
    fn normal_traffic_and_a_stale_minute_stream_do_not_fire() {
        let (c, i) = inputs_with(&[1.0 / 60.0; 120]);
        assert!(run(&i, &c, Pass::fast_spikes).is_empty());
        let mut m = vec![1.0 / 60.0; 114];
        m.extend([1.0; 6]);
        let (c, mut i) = inputs_with(&m);
        i.poll_states
            .values_mut()
            .for_each(|s| s.last_success_at = Some(NOW - 20 * 60));
        assert!(
            run(&i, &c, Pass::fast_spikes).is_empty(),
            "the minute stream failed 20 minutes ago: the hourly check judges alone"
        );
    }

    #[test]
    fn an_open_spike_resolves_only_on_thirty_settled_quiet_minutes_after_it_began() {
        // Began 45 minutes ago, stopped 25 minutes ago; settle is 10 minutes, so 35 settled
        // minutes exist after the start and the last 30 of them hold 10 leaked minutes.
        let mut m = vec![0.0; 75];
        m.extend([1.0; 20]);
        m.extend([0.0; 25]);
        let (c, mut i) = inputs_with(&m);
        let mut a = open(Rule::Spike, "spike/src/k1", "x");
        (a.unit, a.baseline, a.threshold) = ("usd".into(), Some(1.0), Some(10.0));
        a.starts_at = NOW - 45 * 60;
        i.open.push(a.clone());
        assert!(
            run(&i, &c, Pass::fast_spikes).is_empty(),
            "still above its level"
        );
        // Twenty minutes later (the series and the start moved back by as much) the settled
        // window is quiet: resolved at the settled edge, settle (10m) before the last poll.
        m.extend([0.0; 20]);
        let (c, mut i) = inputs_with(&m[20..]);
        a.starts_at -= 20 * 60;
        i.open.push(a);
        let changes = run(&i, &c, Pass::fast_spikes);
        assert!(
            matches!(&changes[..], [AlertChange::Resolve { at, .. }] if *at == NOW - 11 * 60),
            "{changes:?}"
        );
    }

    #[test]
    fn the_hourly_check_leaves_an_episode_to_the_fast_one() {
        // The settled hour is 30x, but the fast check owns the open alert...
        let (c, mut i) = inputs_with(&[1.0 / 60.0; 120]);
        let mut hours: Vec<(i64, f64)> = i.series[0].points.iter().collect();
        hours.last_mut().unwrap().1 = 30.0;
        i.series[0].points = Points::from_rows(H, hours);
        let mut a = open(Rule::Spike, "spike/src/k1", "x");
        (a.unit, a.baseline, a.threshold) = ("usd".into(), Some(1.0), Some(10.0));
        i.open.push(a);
        assert!(run(&i, &c, Pass::spikes).is_empty());
        // ... and once it resolved the episode, the settled hour does not page again.
        i.open.clear();
        i.spike_ended.insert("spike/src/k1".into(), NOW - 10 * 60);
        assert!(run(&i, &c, Pass::spikes).is_empty());
        // Without either, the hourly check fires as before.
        i.spike_ended.clear();
        assert_eq!(fired(&run(&i, &c, Pass::spikes)).len(), 1);
    }
}
