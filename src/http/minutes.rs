//! The key page's recent minutes: the recent `1m` stream of the last `[detect.spike.fast]
//! lookback`, with the level the minute spike check fires at. Shown only when the check is on.

use chrono_tz::Tz;

use super::pages::{money, when};
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
    let local = |ts: i64, f: &str| super::pages::local(ts, zone, f);
    let at = |i: usize| from + i as i64 * 60;
    let plot = super::plot::Plot {
        id: "key-minutes",
        label: "cost per minute".to_owned(),
        slots: values.len(),
        x_labels: (0..values.len())
            .filter(|i| at(*i) % 300 == 0)
            .map(|i| (i, local(at(i), "%H:%M")))
            .collect(),
        x_title: format!("minute ({}), one bar = 1 minute", zone.name()),
        y_title: "USD per minute".to_owned(),
        y_format: super::plot::usd_tick,
        stacks: vec![super::plot::Stack {
            name: "usage".to_owned(),
            colour: "#4e79a7",
            values: values.clone(),
            titles: (0..values.len())
                .map(|i| {
                    format!(
                        "{} ({} UTC): {}",
                        local(at(i), "%H:%M %Z"),
                        crate::alerts::rfc3339(at(i)),
                        money(values[i])
                    )
                })
                .collect(),
            links: Vec::new(),
        }],
        lines: level
            .map(|l| super::plot::Line {
                name: "minute-level".to_owned(),
                colour: "#e15759",
                values: vec![l; values.len()],
            })
            .into_iter()
            .collect(),
        markers: Vec::new(),
    };
    let svg = super::plot::responsive(&plot);
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
