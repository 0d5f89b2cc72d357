//! The key page's chart as numbers: at most [`MAX_BARS`] bars whatever the window, each the
//! busiest bucket of its slot with the spike rule's baseline at that bucket. The work is
//! proportional to the number of buckets read (bounded by `crate::window`), never to their
//! square, and runs on a blocking thread so that the daemon's other requests go on.

use crate::detect::spike::baseline;
use crate::detect::SpikeConfig;

/// The most bars a chart draws; longer windows put several buckets in one bar.
pub const MAX_BARS: usize = 240;

/// One bar: the busiest bucket among `buckets` consecutive ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Start of the first bucket of the bar.
    pub start: i64,
    /// Start of its busiest bucket.
    pub peak_at: i64,
    /// The busiest bucket's value, in the metric's unit.
    pub value: f64,
    /// The spike rule's baseline for that bucket.
    pub baseline: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub bars: Vec<Bar>,
    /// Buckets per bar (1 when every bucket has its own).
    pub buckets_per_bar: usize,
}

/// The chart of `values` (dense, one per bucket of `width` from `from`), showing the buckets
/// from index `first_shown`; `known_since` is when the key's history starts.
pub fn build(
    cfg: &SpikeConfig,
    width: i64,
    values: &[f64],
    from: i64,
    first_shown: usize,
    known_since: i64,
) -> Chart {
    let first_shown = first_shown.min(values.len());
    let shown = values.len() - first_shown;
    let per_bar = shown.div_ceil(MAX_BARS).max(1);
    let at = |i: usize| from.saturating_add((i as i64).saturating_mul(width));
    let mut bars = Vec::with_capacity(shown.div_ceil(per_bar));
    let mut a = first_shown;
    while a < values.len() {
        let b = a.saturating_add(per_bar).min(values.len());
        let mut peak = a;
        for i in a..b {
            if values.get(i) > values.get(peak) {
                peak = i;
            }
        }
        let history = values.get(..peak).unwrap_or_default();
        bars.push(Bar {
            start: at(a),
            peak_at: at(peak),
            value: values.get(peak).copied().unwrap_or_default(),
            baseline: baseline(cfg, width, history, at(peak).saturating_sub(known_since)).value,
        });
        a = b;
    }
    Chart {
        bars,
        buckets_per_bar: per_bar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_window_is_drawn_with_a_bounded_number_of_bars_keeping_the_peak() {
        let cfg = SpikeConfig::default();
        let width = 60;
        let mut values = vec![0.01; 400 * 1_440 + 7 * 1_440];
        let spike = values.len() - 1_000;
        values[spike] = 50.0;
        let started = std::time::Instant::now();
        let chart = build(&cfg, width, &values, 0, 7 * 1_440, 0);
        assert!(chart.bars.len() <= MAX_BARS, "{}", chart.bars.len());
        assert!(chart.buckets_per_bar > 1);
        let peak = chart
            .bars
            .iter()
            .find(|b| b.value == 50.0)
            .expect("the spike keeps its own height");
        assert_eq!(peak.peak_at, spike as i64 * width);
        assert!(peak.baseline < 1.0);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_short_window_has_a_bar_per_bucket() {
        let cfg = SpikeConfig::default();
        let values = vec![1.0; 48];
        let chart = build(&cfg, 3_600, &values, 0, 24, 0);
        assert_eq!(chart.bars.len(), 24);
        assert_eq!(chart.buckets_per_bar, 1);
        assert_eq!(chart.bars[0].start, 24 * 3_600);
        assert!(build(&cfg, 3_600, &[], 0, 5, 0).bars.is_empty());
    }
}
