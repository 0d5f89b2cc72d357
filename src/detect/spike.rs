//! The spike rule: a key's latest settled bucket against its own normal level for that time.

use statrs::statistics::{Data, OrderStatistics};

use super::SpikeConfig;

const DAY: i64 = 86_400;

/// A key's baseline at one bucket, with its parts for explanation and tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// `baseline_quantile` of the window's buckets (idle buckets count as 0).
    pub quantile: f64,
    /// Median of the buckets at the same time of day over the past week (0 when off).
    pub seasonal: f64,
    /// The larger of the two, floored at `min_baseline`.
    pub value: f64,
    /// True when the key has under a day of history and is judged against the floor only.
    pub floor_only: bool,
}

/// What the rule says about one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpikeVerdict {
    /// A new spike: observed >= factor x baseline.
    Fire { baseline: Baseline, level: f64 },
    /// An open spike is still above the level it fired at.
    Continue,
    /// An open spike fell back under its level.
    Resolve,
    /// Nothing to report.
    Quiet { baseline: Baseline, level: f64 },
}

/// The key's baseline for the bucket right after `history`.
///
/// `history` holds the key's buckets of width `width_secs` before the judged one, oldest first,
/// contiguous, idle buckets as 0. `history_age_secs` is how long the key has been in use or
/// known (creation or first usage), which decides whether it has a baseline at all.
pub fn baseline(
    cfg: &SpikeConfig,
    width_secs: i64,
    history: &[f64],
    history_age_secs: i64,
) -> Baseline {
    let floor = cfg.min_baseline;
    if history_age_secs < DAY || history.is_empty() {
        return Baseline {
            quantile: 0.0,
            seasonal: 0.0,
            value: floor,
            floor_only: true,
        };
    }
    let window_buckets = (cfg.baseline_window.0.as_secs() as i64 / width_secs).max(1) as usize;
    let window = &history[history.len().saturating_sub(window_buckets)..];
    let quantile = Data::new(window.to_vec()).quantile(cfg.baseline_quantile);
    let seasonal = if cfg.seasonal && width_secs < DAY {
        let per_day = (DAY / width_secs) as usize;
        let same_time: Vec<f64> = (1..=7)
            .filter_map(|k| history.len().checked_sub(k * per_day).map(|i| history[i]))
            .collect();
        if same_time.is_empty() {
            0.0
        } else {
            Data::new(same_time).median()
        }
    } else {
        0.0
    };
    Baseline {
        quantile,
        seasonal,
        value: quantile.max(seasonal).max(floor),
        floor_only: false,
    }
}

/// Judges `observed` (the latest settled bucket). `open_level` is the level an open spike alert
/// of this key fired at: while open, the rule only asks whether the key is still above it, so a
/// spike spanning several buckets is one alert.
pub fn judge(
    cfg: &SpikeConfig,
    width_secs: i64,
    history: &[f64],
    history_age_secs: i64,
    observed: f64,
    open_level: Option<f64>,
) -> SpikeVerdict {
    if let Some(level) = open_level {
        return if observed >= level {
            SpikeVerdict::Continue
        } else {
            SpikeVerdict::Resolve
        };
    }
    let baseline = baseline(cfg, width_secs, history, history_age_secs);
    let level = cfg.factor * baseline.value;
    if observed >= level && observed > 0.0 {
        SpikeVerdict::Fire { baseline, level }
    } else {
        SpikeVerdict::Quiet { baseline, level }
    }
}

/// One spike as a replay saw it: bucket indexes into the replayed series.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// The first bucket at or above the level: where the alert fires.
    pub start: usize,
    /// The first bucket back under the level (`None`: still open at the end).
    pub end: Option<usize>,
    /// The value of the first bucket.
    pub observed: f64,
    /// The largest bucket of the episode.
    pub peak: f64,
    pub baseline: Baseline,
    pub level: f64,
}

/// Replays the rule bucket by bucket over `values` from index `from`, as the daemon would have
/// judged each bucket once it settled. `history_age(i)` is the key's age at bucket `i`.
pub fn replay(
    cfg: &SpikeConfig,
    width_secs: i64,
    values: &[f64],
    from: usize,
    history_age: impl Fn(usize) -> i64,
) -> Vec<Episode> {
    let mut episodes: Vec<Episode> = Vec::new();
    for t in from..values.len() {
        let open = episodes.last_mut().filter(|e| e.end.is_none());
        let open_level = open.as_ref().map(|e| e.level);
        match judge(
            cfg,
            width_secs,
            &values[..t],
            history_age(t),
            values[t],
            open_level,
        ) {
            SpikeVerdict::Fire { baseline, level } => episodes.push(Episode {
                start: t,
                end: None,
                observed: values[t],
                peak: values[t],
                baseline,
                level,
            }),
            SpikeVerdict::Continue => {
                if let Some(e) = open {
                    e.peak = e.peak.max(values[t]);
                }
            }
            SpikeVerdict::Resolve => {
                if let Some(e) = open {
                    e.end = Some(t);
                }
            }
            SpikeVerdict::Quiet { .. } => {}
        }
    }
    episodes
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600;

    /// A week of a diurnal key: $0.20/h at night up to $1.00/h mid-afternoon.
    fn diurnal(days: usize) -> Vec<f64> {
        (0..days * 24)
            .map(|h| {
                let hour = (h % 24) as f64;
                0.2 + 0.8 * (-(hour - 15.0).powi(2) / 18.0).exp()
            })
            .collect()
    }

    #[test]
    fn a_diurnal_key_without_a_spike_stays_quiet_all_day() {
        let cfg = SpikeConfig::default();
        let series = diurnal(9);
        for t in 7 * 24..series.len() {
            let v = judge(&cfg, H, &series[..t], 30 * 86_400, series[t], None);
            assert!(matches!(v, SpikeVerdict::Quiet { .. }), "hour {t}: {v:?}");
        }
    }

    #[test]
    fn a_40x_hour_fires() {
        let cfg = SpikeConfig::default();
        let series = diurnal(8);
        let v = judge(&cfg, H, &series, 30 * 86_400, 40.0 * 1.0, None);
        let SpikeVerdict::Fire { baseline, level } = v else {
            panic!("{v:?}")
        };
        assert!(
            baseline.value > 0.5 && baseline.value <= 1.0,
            "{baseline:?}"
        );
        assert!((level - 10.0 * baseline.value).abs() < 1e-12);
    }

    #[test]
    fn a_two_hour_spike_continues_then_resolves() {
        let cfg = SpikeConfig::default();
        let mut series = diurnal(8);
        let SpikeVerdict::Fire { level, .. } = judge(&cfg, H, &series, 30 * 86_400, 30.0, None)
        else {
            panic!()
        };
        series.push(30.0);
        assert_eq!(
            judge(&cfg, H, &series, 30 * 86_400, 28.0, Some(level)),
            SpikeVerdict::Continue
        );
        series.push(28.0);
        assert_eq!(
            judge(&cfg, H, &series, 30 * 86_400, 0.9, Some(level)),
            SpikeVerdict::Resolve
        );
    }

    #[test]
    fn a_near_zero_key_does_not_page_on_a_small_blip() {
        let cfg = SpikeConfig::default();
        let series = vec![0.0005; 8 * 24];
        let v = judge(&cfg, H, &series, 30 * 86_400, 0.02, None);
        assert!(
            matches!(v, SpikeVerdict::Quiet { level, .. } if (level - 0.5).abs() < 1e-12),
            "{v:?}"
        );
    }

    #[test]
    fn a_key_idle_most_hours_is_judged_against_its_busy_level() {
        // Business hours only: 9 of 24 hours at $2, the rest idle; a median would be 0.
        let cfg = SpikeConfig {
            seasonal: false,
            ..SpikeConfig::default()
        };
        let series: Vec<f64> = (0..8 * 24)
            .map(|h| {
                if (9..18).contains(&(h % 24)) {
                    2.0
                } else {
                    0.0
                }
            })
            .collect();
        assert!(matches!(
            judge(&cfg, H, &series, 30 * 86_400, 3.0, None),
            SpikeVerdict::Quiet { .. }
        ));
    }

    #[test]
    fn a_nightly_batch_is_its_own_normal_with_seasonal_baseline() {
        // $1/h all day, $6 at 03:00 every night; quantile 0.99 would still see it, but with the
        // default 0.9 only the seasonal median knows 03:00 is busy.
        let cfg = SpikeConfig {
            factor: 5.0,
            ..SpikeConfig::default()
        };
        let series: Vec<f64> = (0..8 * 24)
            .map(|h| if h % 24 == 3 { 6.0 } else { 1.0 })
            .collect();
        let at_3am = &series[..7 * 24 + 3];
        assert!(matches!(
            judge(&cfg, H, at_3am, 30 * 86_400, 6.5, None),
            SpikeVerdict::Quiet { .. }
        ));
        let no_seasonal = SpikeConfig {
            seasonal: false,
            ..cfg
        };
        assert!(matches!(
            judge(&no_seasonal, H, at_3am, 30 * 86_400, 6.5, None),
            SpikeVerdict::Fire { .. }
        ));
    }

    #[test]
    fn replay_finds_one_episode_per_spike() {
        let cfg = SpikeConfig::default();
        let mut series = diurnal(10);
        for h in [8 * 24 + 5, 8 * 24 + 6, 9 * 24 + 2] {
            series[h] = 40.0;
        }
        let episodes = replay(&cfg, H, &series, 7 * 24, |_| 30 * 86_400);
        let spans: Vec<_> = episodes.iter().map(|e| (e.start, e.end)).collect();
        assert_eq!(
            spans,
            [
                (8 * 24 + 5, Some(8 * 24 + 7)),
                (9 * 24 + 2, Some(9 * 24 + 3))
            ]
        );
    }

    #[test]
    fn a_key_with_less_than_a_day_of_history_is_judged_against_the_floor_only() {
        let cfg = SpikeConfig::default();
        let series = vec![5.0; 10];
        let v = judge(&cfg, H, &series, 10 * H, 0.6, None);
        assert!(
            matches!(v, SpikeVerdict::Fire { baseline, .. } if baseline.floor_only),
            "{v:?}"
        );
    }
}
