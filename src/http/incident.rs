//! The key page as an incident view: is the key still burning and how fast against its normal,
//! and for each of its alerts what happened when — fired (and escalated), held back by a
//! silence, delivered where, contained, resolved.

use std::fmt::Write as _;

use super::chart::Chart;
use super::pages::{esc, when};
use crate::alerts::Alert;
use crate::store::{KeyAction, TimelineEntry};

/// "Now": the last bar against its baseline, and how long usage has stayed above the spike
/// level. `show` prints a value in the chart's unit.
pub fn now_line(chart: &Chart, factor: f64, show: impl Fn(f64) -> String) -> String {
    // The newest bars may be empty: the provider delivers a bucket after it ends.
    let Some(at) = chart.bars.iter().rposition(|b| b.value > 0.0) else {
        return "<p class=\"now\">No usage in this window.</p>".to_owned();
    };
    let last = &chart.bars[at];
    let ratio = if last.baseline > 0.0 {
        format!(
            ", {:.1}× its normal {}",
            last.value / last.baseline,
            show(last.baseline)
        )
    } else {
        String::new()
    };
    let above = chart.bars[..=at]
        .iter()
        .rev()
        .take_while(|b| b.baseline > 0.0 && b.value >= b.baseline * factor)
        .last();
    let state = match above {
        Some(first) => format!(
            "<b class=\"critical\">Above the spike level ({factor}× normal) since {}</b>",
            crate::alerts::rfc3339(first.start)
        ),
        None => "<span class=\"ok\">Under the spike level</span>".to_owned(),
    };
    format!(
        "<p class=\"now\">Latest bucket with usage: <b>{}</b>{ratio}. {state}.</p>",
        show(last.value)
    )
}

/// How many of a key's alerts have their story told (the newest).
pub const STORIES: usize = 10;

/// Each of `alerts` (the key's newest, newest first) with its timeline.
pub fn timelines(
    alerts: &[Alert],
    entries: &[TimelineEntry],
    actions: &[KeyAction],
    zone: chrono_tz::Tz,
) -> String {
    if alerts.is_empty() {
        return String::new();
    }
    let mut o = String::from("<h2>What happened</h2>");
    for a in alerts.iter().take(STORIES) {
        let _ = write!(
            o,
            "<section class=\"timeline\" id=\"timeline-{}\"><h3>{} <span class=\"{}\">{}</span> — {}</h3><ol>",
            esc(&a.id),
            esc(a.rule.as_str()),
            a.severity.as_str(),
            a.severity.as_str(),
            if a.ends_at.is_some() { "resolved" } else { "firing" }
        );
        let mut lines: Vec<(i64, String)> = Vec::new();
        let mut fired = 0;
        for e in entries.iter().filter(|e| e.alert_id == a.id) {
            let text = match (e.what.as_str(), e.notifier.as_str()) {
                ("firing", _) => {
                    fired += 1;
                    let word = if fired == 1 {
                        "fired"
                    } else {
                        "fired again (escalated or re-opened)"
                    };
                    match e.detail.as_deref() {
                        Some("silenced") => {
                            format!("{word}; a silence held its notifications back")
                        }
                        _ => word.to_owned(),
                    }
                }
                ("resolved", _) => match e.detail.as_deref() {
                    Some("silenced") => "resolved (silenced: not notified)".to_owned(),
                    _ => "resolved".to_owned(),
                },
                (state, notifier) => format!(
                    "{} <b>{}</b>{}",
                    match state {
                        "delivered" => "delivered to",
                        "pending" => "waiting to be delivered to",
                        _ => "given up on delivering to",
                    },
                    esc(notifier),
                    e.detail
                        .as_deref()
                        .map(|d| format!(": {}", esc(d)))
                        .unwrap_or_default()
                ),
            };
            lines.push((e.at, text));
        }
        for act in actions
            .iter()
            .filter(|x| x.alert_id.as_deref() == Some(a.id.as_str()))
        {
            lines.push((
                act.at,
                format!(
                    "contained: {} {} by {} ({})",
                    esc(&act.action),
                    esc(&act.result),
                    esc(&act.by),
                    esc(&act.reason)
                ),
            ));
        }
        // Stable: within a second the store's order (a state change before its deliveries).
        lines.sort_by_key(|(at, _)| *at);
        for (at, text) in lines {
            let _ = write!(o, "<li>{} {text}</li>", when(at, zone));
        }
        o.push_str("</ol></section>");
    }
    o
}
