//! The key page's recent minutes: the recent `1m` stream of the last `[detect.spike.fast]
//! lookback`, with the level the minute spike check fires at. Shown only when the check is on.

use std::fmt::Write as _;

use chrono_tz::Tz;

use super::pages::{esc, money, when};
use super::AppState;

/// The section, or an empty string when the minute check is off or nothing is stored.
pub async fn section(
    state: &AppState,
    key_id: &str,
    source: Option<&str>,
    busy_per_hour: Option<f64>,
    now: i64,
    zone: Tz,
) -> String {
    let Some(lookback) = state.config.poll.recent else {
        return String::new();
    };
    let until = now.div_euclid(60) * 60 + 60;
    let from = until - lookback.0.as_secs() as i64;
    let Ok(buckets) = state
        .store
        .key_buckets(key_id, source, 60, from, until)
        .await
    else {
        return "<p>The recent minutes could not be read.</p>".to_owned();
    };
    if buckets.is_empty() {
        return format!(
            "<h2>Last {lookback}, per minute</h2><p>No usage in the recent minute stream.</p>"
        );
    }
    let points: Vec<(i64, f64)> = buckets.iter().map(|b| (b.start, b.cost_usd)).collect();
    let values = crate::alerts::dense_values(&points, from, until - 60, 60);
    let spike = &state.config.spike;
    let factor = spike.fast_factor();
    let level = busy_per_hour.map(|b| factor * b / 60.0);
    let max = values.iter().copied().chain(level).fold(0.01f64, f64::max);
    let (cw, ch, pad) = (900.0, 160.0, 24.0);
    let step = (cw - 2.0 * pad) / values.len().max(1) as f64;
    let y = |v: f64| ch - pad - v / max * (ch - 2.0 * pad);
    let mut svg = format!(
        "<svg class=\"chart\" id=\"key-minutes\" viewBox=\"0 0 {cw} {ch}\" role=\"img\" aria-label=\"cost per minute\"><text x=\"4\" y=\"14\" font-size=\"11\">{}</text><g fill=\"#4e79a7\">",
        esc(&money(max))
    );
    for (i, v) in values.iter().enumerate().filter(|(_, v)| **v > 0.0) {
        let x = pad + i as f64 * step;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>",
            y(*v),
            (step - 0.5).max(0.5),
            ch - pad - y(*v),
            money(*v)
        );
    }
    svg.push_str("</g>");
    if let Some(l) = level {
        let _ = write!(
            svg,
            "<line class=\"series\" data-series=\"minute-level\" x1=\"{pad}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e15759\" stroke-width=\"2\"/>",
            cw - pad,
            y(l),
            y(l)
        );
    }
    svg.push_str("</svg>");
    let total: f64 = values.iter().sum();
    let level_text = level.map_or(String::new(), |l| {
        format!(
            " The red line is {factor}x the key's busy level per minute ({}/min): the minute check fires when a window burns above it.",
            money(l)
        )
    });
    format!(
        "<h2>Last {lookback}, per minute</h2>{svg}<p>{} in the last {lookback}, from {} (minutes not yet delivered by the provider are missing, not zero).{level_text}</p>",
        money(total),
        when(from, zone),
    )
}
