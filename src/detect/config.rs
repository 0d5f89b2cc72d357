//! Tunables of the detection rules, with their meaning, unit, valid range and default.
//! `config.example.toml` repeats these comments.

use std::time::Duration;

use serde::Deserialize;

use super::burn::FastConfig;
use crate::model::HumanDuration;

/// What the spike rule measures per bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeMetric {
    /// Estimated cost in USD.
    Cost,
    /// Total tokens (all input classes plus output).
    Tokens,
}

/// `[detect.spike]`: compares each key's latest settled bucket with its own baseline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikeConfig {
    /// Fire when observed >= `factor` x baseline. Unitless, > 1.0; default 10.0.
    pub factor: f64,
    /// Rolling window of the key's own buckets the baseline is computed over.
    /// At least one day, at most 90 days; default 7 days.
    pub baseline_window: HumanDuration,
    /// The key's busy level: this quantile of its buckets in the window (zero buckets count).
    /// Range 0.5 to 0.999; default 0.9.
    pub baseline_quantile: f64,
    /// Also the median at the same hour of day over the past week; the larger baseline wins.
    /// Default true.
    pub seasonal: bool,
    /// The metric compared: cost (USD) or tokens. Default cost.
    pub metric: SpikeMetric,
    /// Floor for the baseline, in the metric's unit (USD or tokens), so near-zero keys do not
    /// page on a blip. At least 0; default 0.05.
    pub min_baseline: f64,
    /// Floor for the baseline in tokens per bucket, used when the metric is cost but a key
    /// uses a model without a price (its dollars are only a floor, so it is judged by tokens).
    /// At least 0; default 20000.
    pub min_baseline_tokens: f64,
    /// `[detect.spike.fast]`: the minute-level check beside the hourly one.
    pub fast: FastConfig,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        Self {
            factor: 10.0,
            baseline_window: HumanDuration(Duration::from_secs(7 * 86_400)),
            baseline_quantile: 0.9,
            seasonal: true,
            metric: SpikeMetric::Cost,
            min_baseline: 0.05,
            min_baseline_tokens: 20_000.0,
            fast: FastConfig::default(),
        }
    }
}

impl SpikeConfig {
    /// Sense-checks the values; returns the offending key (relative to `[detect.spike]`) and
    /// what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.factor.is_finite() && self.factor > 1.0) {
            return Err((
                "factor",
                format!("must be greater than 1.0, got {}", self.factor),
            ));
        }
        let window = self.baseline_window.0.as_secs();
        if !(86_400..=90 * 86_400).contains(&window) {
            return Err((
                "baseline_window",
                format!(
                    "must be between 1d and 90d, got {}",
                    humantime::format_duration(self.baseline_window.0)
                ),
            ));
        }
        if !(0.5..=0.999).contains(&self.baseline_quantile) {
            return Err((
                "baseline_quantile",
                format!(
                    "must be between 0.5 and 0.999, got {}",
                    self.baseline_quantile
                ),
            ));
        }
        if !(self.min_baseline.is_finite() && self.min_baseline >= 0.0) {
            return Err((
                "min_baseline",
                format!("must be 0 or more, got {}", self.min_baseline),
            ));
        }
        if !(self.min_baseline_tokens.is_finite() && self.min_baseline_tokens >= 0.0) {
            return Err((
                "min_baseline_tokens",
                format!("must be 0 or more, got {}", self.min_baseline_tokens),
            ));
        }
        self.fast.check().map_err(|(key, msg)| match key {
            "windows" => ("fast.windows", msg),
            "factor" => ("fast.factor", msg),
            "min_usd_per_hour" => ("fast.min_usd_per_hour", msg),
            "min_active_minutes" => ("fast.min_active_minutes", msg),
            "resolve_window" => ("fast.resolve_window", msg),
            "resolve_below" => ("fast.resolve_below", msg),
            "delay" => ("fast.delay", msg),
            _ => ("fast.lookback", msg),
        })
    }

    /// The minute check's factor: `[detect.spike.fast] factor`, else [`FAST_FACTOR_SHARE`] x
    /// `factor` (7.5 with the defaults).
    pub fn fast_factor(&self) -> f64 {
        self.fast
            .factor
            .unwrap_or(crate::detect::burn::FAST_FACTOR_SHARE * self.factor)
    }

    /// The settings for judging a key by tokens: the same rule with the token floor.
    pub fn by_tokens(&self) -> Self {
        Self {
            metric: SpikeMetric::Tokens,
            min_baseline: self.min_baseline_tokens,
            ..self.clone()
        }
    }
}
