//! One detection pass: load its inputs from the store, decide with the pure rules of
//! `alerts::rules`, and apply the decided changes to alert state. Runs after every poll, on
//! settled buckets.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::rules::{Inputs, Pass, DAY};
use super::series_cache::SeriesCache;
use crate::config::Config;
use crate::detect::SpikeMetric;
use crate::model::Rule;
use crate::store::{
    usage_stream, AlertChange, KeySeries, Route, StateChange, Store, StoreError, COSTS_STREAM,
    KEYS_STREAM,
};

/// What one pass did.
#[derive(Debug, Default)]
pub struct EvalReport {
    pub changes: Vec<StateChange>,
}

/// Runs every rule once and records the resulting state changes: a one-off pass that reads
/// whole windows (the daemon keeps a [`Detector`]).
pub async fn evaluate(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<EvalReport, StoreError> {
    Detector::for_config(config)
        .evaluate(store, config, now)
        .await
}

/// Detection passes that keep each key's windows of buckets between passes and read only what
/// changed (see [`SeriesCache`]); its first pass reads whole windows.
#[derive(Debug, Default)]
pub struct Detector {
    /// The configured bucket width's window of the spike metric.
    hourly: Option<SeriesCache>,
    /// The minute stream's lookback (cost).
    recent: Option<SeriesCache>,
    /// The containment policies and their clients, when any is configured.
    containment: Option<crate::containment::policy::Containment>,
}

/// The cache of `width` × `metric` in `slot`, made anew when the configuration changed them.
fn cache<'a>(
    slot: &'a mut Option<SeriesCache>,
    store: &Store,
    width: i64,
    metric: SpikeMetric,
) -> &'a mut SeriesCache {
    if !slot.as_ref().is_some_and(|c| c.is(width, metric)) {
        *slot = None;
    }
    slot.get_or_insert_with(|| SeriesCache::new(store, width, metric))
}

impl Detector {
    /// A detector that also answers firing alerts with the configured containment policies.
    pub fn for_config(config: &Config) -> Self {
        Self {
            containment: crate::containment::policy::Containment::from_config(config),
            ..Self::default()
        }
    }

    /// Runs every rule once and records the resulting state changes.
    pub async fn evaluate(
        &mut self,
        store: &Store,
        config: &Config,
        now: DateTime<Utc>,
    ) -> Result<EvalReport, StoreError> {
        let now = now.timestamp();
        let routes: Vec<Route> = config
            .notifiers
            .iter()
            .map(|n| Route {
                notifier: n.name().to_owned(),
                min_severity: n.min_severity(),
            })
            .collect();
        // First undo what a clock that was ahead resolved: the rules then judge it anew.
        let started = std::time::Instant::now();
        let mut made = store.reopen_future_resolutions(now, &routes).await?;
        let mut inputs = self.load(store, config, now).await?;
        let loaded = started.elapsed();
        let mut decided = decide(&inputs, config);
        if let Some(at) = DateTime::<Utc>::from_timestamp(now, 0) {
            crate::metrics::spend(&crate::budget::spend_gauges(
                &inputs.spends,
                &inputs.keys,
                config,
                at,
            ));
        }
        let (keys, recent_keys) = (inputs.series.len(), inputs.recent.len());
        let read = self.hourly.as_ref().map(SeriesCache::last_refresh);
        self.put_back(&mut inputs);
        let judged = started.elapsed();
        // Containment acts before the alerts are recorded, so their notifications say what
        // was done.
        if let Some(c) = &self.containment {
            c.answer(store, &mut decided, &inputs.keys, now).await?;
        }
        made.extend(store.apply_alert_changes(&decided, &routes, now).await?);
        tracing::info!(
            keys,
            recent_keys,
            hourly_read = ?read,
            load_ms = loaded.as_millis() as u64,
            decide_ms = (judged - loaded).as_millis() as u64,
            apply_ms = (started.elapsed() - judged).as_millis() as u64,
            changes = decided.len(),
            "detection pass"
        );
        let changes = made;
        for c in &changes {
            tracing::info!(alert = %c.alert_id, status = c.status.as_str(), silenced = c.silenced, "alert state changed");
        }
        crate::metrics::detection_finished(now);
        Ok(EvalReport { changes })
    }
}

/// Every rule, in order, over the same inputs. Pure: no store, no clock.
pub fn decide(inputs: &Inputs, config: &Config) -> Vec<AlertChange> {
    let mut pass = Pass::new(inputs, config);
    pass.fast_spikes();
    pass.spikes();
    pass.unpriced();
    pass.inactive_usage();
    pass.key_ages();
    pass.rotations();
    pass.budgets();
    pass.forecasts();
    pass.source_health();
    pass.into_changes()
}

impl Detector {
    /// Reads what the rules judge at `now` (Unix seconds).
    async fn load(
        &mut self,
        store: &Store,
        config: &Config,
        now: i64,
    ) -> Result<Inputs, StoreError> {
        let width = config.poll.bucket_width.seconds();
        let settle = config.poll.settle.0.as_secs() as i64;
        let judged = (now - settle).div_euclid(width) * width - width;
        let keys = store
            .all_keys()
            .await?
            .into_iter()
            .map(|k| ((k.source.clone(), k.key_id.clone()), k))
            .collect();
        let open = store.alerts(false).await?;
        let window = (config.spike.baseline_window.0.as_secs() as i64).max(7 * DAY);
        // Independent reads run side by side (WAL readers do not block each other).
        let hourly = cache(&mut self.hourly, store, width, config.spike.metric);
        let (series, deactivated, spends, budget_unpriced, unpriced) = tokio::try_join!(
            hourly.read(store, judged - window, judged),
            store.deactivated_key_usage(width, judged),
            crate::budget::spends(store, config, width, now),
            crate::budget::unpriced_spends(store, config, width, now),
            store.unpriced_usage(width, judged - window, judged),
        )?;
        // Keys with usage on an unpriced model are judged by tokens: their dollars are a floor.
        let by_tokens: HashMap<(String, String), KeySeries> =
            if config.spike.metric == SpikeMetric::Cost && !unpriced.is_empty() {
                let mut wanted: Vec<(&str, &str)> = unpriced
                    .iter()
                    .map(|u| (u.source.as_str(), u.key_id.as_str()))
                    .collect();
                wanted.sort_unstable();
                wanted.dedup();
                let metric = SpikeMetric::Tokens;
                store
                    .usage_series_of(width, judged - window, judged, metric, &wanted)
                    .await?
                    .into_iter()
                    .map(|s| ((s.source.clone(), s.key_id.clone()), s))
                    .collect()
            } else {
                HashMap::new()
            };
        let recent = match config.poll.recent {
            Some(lookback) => {
                let from = (now - lookback.0.as_secs() as i64).div_euclid(60) * 60;
                let recent = cache(&mut self.recent, store, 60, SpikeMetric::Cost);
                recent.read(store, from, now).await?
            }
            None => Vec::new(),
        };
        let spike_ended = store.resolved_since(Rule::Spike, judged).await?;
        let mut poll_states = HashMap::new();
        let recent_stream = config.poll.recent.map(|_| usage_stream(60));
        for source in &config.sources {
            let streams = [
                Some(usage_stream(width)),
                Some(KEYS_STREAM.to_owned()),
                Some(COSTS_STREAM.to_owned()),
                recent_stream.clone(),
            ];
            for stream in streams.into_iter().flatten() {
                let state = store.poll_state(&source.name, &stream).await?;
                poll_states.insert((source.name.clone(), stream), state);
            }
        }
        Ok(Inputs {
            now,
            width,
            judged,
            window,
            keys,
            open,
            series,
            by_tokens,
            deactivated,
            spends,
            budget_unpriced,
            unpriced,
            poll_states,
            recent,
            spike_ended,
        })
    }

    /// Gives the windows of `inputs` back to their caches.
    fn put_back(&mut self, inputs: &mut Inputs) {
        if let Some(c) = &mut self.hourly {
            c.put_back(std::mem::take(&mut inputs.series));
        }
        if let Some(c) = &mut self.recent {
            c.put_back(std::mem::take(&mut inputs.recent));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::fixtures::{config, inputs, key, with_key, NOW};
    use super::*;
    use crate::alerts::Rule;

    #[test]
    fn nothing_to_judge_decides_nothing() {
        let c = config("");
        assert!(decide(&inputs(&c, NOW), &c).is_empty());
    }

    #[test]
    fn every_rule_runs_over_the_same_inputs() {
        let c = config("");
        let mut i = inputs(&c, NOW);
        with_key(&mut i, key("k1", "old", "active", Some(NOW - 100 * DAY)));
        i.deactivated
            .push(("src".to_owned(), "k1".to_owned(), 1.0, 10));
        let rules: Vec<Rule> = decide(&i, &c)
            .iter()
            .filter_map(|c| match c {
                AlertChange::Fire(a) => Some(a.rule),
                AlertChange::Resolve { .. } => None,
            })
            .collect();
        // An active key is not judged by inactive_key_usage.
        assert_eq!(rules, [Rule::KeyAge]);
    }
}
