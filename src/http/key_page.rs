//! `/keys/{key_id}`: the key's buckets with the spike rule's baseline and level, alert markers,
//! and its inventory facts. The window is bounded (`crate::window`), the chart has at most
//! `chart::MAX_BARS` bars, and an unknown key is a 404.

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use super::pages::{alert_list, error_page, esc, money, page, tz, url, when};
use super::{api, chart, AppState};
use crate::alerts::{rfc3339, Alert};
use crate::detect::SpikeMetric;

#[derive(Deserialize)]
pub struct KeyQuery {
    source: Option<String>,
    window: Option<String>,
    /// One local day (`2026-12-01`, in `[http] timezone`) instead of a window: its hours.
    day: Option<String>,
}

/// The unit the chart is drawn in: the spike rule's metric for this key.
#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Usd,
    Tokens,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Self::Usd => money(v),
            Self::Tokens => format!("{v:.0} tokens"),
        }
    }
}

pub async fn key(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    let zone = tz(&state);
    let window_text = q.window.as_deref().unwrap_or("7d");
    let window = match crate::window::parse_window(window_text) {
        Ok(d) => d,
        Err(e) => return api::bad_parameter("window", &e),
    };
    let source = q.source.as_deref();
    let now = Utc::now().timestamp();
    let w = state.config.poll.bucket_width.seconds();
    let mut until = now.div_euclid(w) * w + w;
    // Both bounded: the window by crate::window, the baseline window by the config check.
    let mut since = until - window.as_secs() as i64;
    let mut span_text = format!("last {window_text}");
    if let Some(day) = q.day.as_deref() {
        let bad = |why: &str| api::error(StatusCode::BAD_REQUEST, format!("day {day:?}: {why}"));
        let Ok(date) = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
            return bad("give a date such as 2026-12-01");
        };
        let period = crate::period::Period::starting(crate::period::PeriodKind::Day, zone, date);
        let (start, end) = period.span();
        if start > now || start < now - crate::window::MAX_DAYS as i64 * 86_400 {
            return bad("give a day from the last 400 days, not in the future");
        }
        if w >= 86_400 {
            return bad(
                "days are already single buckets with [poll] bucket_width = \"1d\": use window",
            );
        }
        // Every bucket that overlaps the day (zones half an hour off UTC, 30-minute buckets).
        (since, until) = (start.div_euclid(w) * w, (end + w - 1).div_euclid(w) * w);
        span_text = format!("on {} ({})", date, zone.name());
    }
    let from = (since - state.config.spike.baseline_window.0.as_secs() as i64).div_euclid(w) * w;
    let (buckets, keys, alerts, actions) = match tokio::try_join!(
        state.store.key_buckets(&key_id, source, w, from, until),
        state.store.keys_by_id(&key_id),
        state.store.key_alerts(&key_id),
        state.store.actions_for_key(&key_id, source)
    ) {
        Ok(x) => x,
        Err(e) => return error_page(&state, e),
    };
    let key = keys.iter().find(|k| source.is_none_or(|s| k.source == s));
    if key.is_none() && buckets.is_empty() {
        match state.store.key_has_usage(&key_id, source).await {
            Ok(true) => {}
            Ok(false) => return unknown(&state, &key_id, source),
            Err(e) => return error_page(&state, e),
        }
    }
    let title = key
        .and_then(|k| k.name.clone())
        .unwrap_or_else(|| key_id.clone());
    // The rule judges by tokens when so configured, and keys on an unpriced model by tokens
    // with their own floor (their dollars are only a floor); the chart shows what is judged.
    let spike = &state.config.spike;
    let unpriced = spike.metric == SpikeMetric::Cost && buckets.iter().any(|b| b.unpriced);
    let (cfg, unit) = match (spike.metric, unpriced) {
        (SpikeMetric::Tokens, _) => (spike.clone(), Unit::Tokens),
        (SpikeMetric::Cost, true) => (spike.by_tokens(), Unit::Tokens),
        (SpikeMetric::Cost, false) => (spike.clone(), Unit::Usd),
    };
    let points: Vec<(i64, f64)> = buckets
        .iter()
        .map(|b| {
            (
                b.start,
                if unit == Unit::Tokens {
                    b.tokens
                } else {
                    b.cost_usd
                },
            )
        })
        .collect();
    let known_since = key.and_then(|k| k.created_at).unwrap_or(from);
    let first_shown = usize::try_from((since - from) / w).unwrap_or_default();
    let factor = cfg.factor;
    let built = tokio::task::spawn_blocking(move || {
        let values = crate::alerts::dense_values(&points, from, until - w, w);
        chart::build(&cfg, w, &values, from, first_shown, known_since)
    })
    .await;
    let chart = match built {
        Ok(c) => c,
        Err(e) => return error_page(&state, format!("the chart could not be computed: {e}")),
    };
    let key_alerts: Vec<Alert> = alerts
        .into_iter()
        .filter(|a| a.key_id.as_deref() == Some(key_id.as_str()))
        .filter(|a| source.is_none_or(|s| a.source.as_deref() == Some(s)))
        .collect();
    let svg = svg(&chart, unit, factor, &key_alerts, since, until, w, zone);
    let busy = (unit == Unit::Usd && w == 3_600)
        .then(|| chart.bars.last().map(|b| b.baseline))
        .flatten();
    let minutes = super::minutes::section(&state, &key_id, source, busy, now, zone).await;
    // The ten newest alerts' stories.
    let mut newest: Vec<&Alert> = key_alerts.iter().collect();
    newest.sort_by_key(|a| std::cmp::Reverse(a.starts_at));
    newest.truncate(super::incident::STORIES);
    let newest: Vec<Alert> = newest.into_iter().cloned().collect();
    let ids: Vec<&str> = newest.iter().map(|a| a.id.as_str()).collect();
    let (strip, entries) = tokio::join!(super::status::strip(&state), state.store.timeline(&ids));
    let story = match entries {
        Ok(entries) => super::incident::timelines(&newest, &entries, &actions, zone),
        Err(e) => format!(
            "<p class=\"problem\">The alerts' timeline cannot be read: {}</p>",
            esc(&e.to_string())
        ),
    };
    let now_line = super::incident::now_line(&chart, factor, |v| unit.show(v));
    let windows: String = ["24h", "7d", "30d", "90d"]
        .iter()
        .map(|w| {
            if *w == window_text && q.day.is_none() {
                format!("<b>{w}</b>")
            } else {
                format!(
                    "<a href=\"/keys/{}?source={}&amp;window={w}\">{w}</a>",
                    url(&key_id),
                    url(source.unwrap_or_default())
                )
            }
        })
        .collect::<Vec<_>>()
        .join(" · ");
    let facts = key.map(|k| facts(&state, k, now, zone)).unwrap_or_default();
    let what = if unit == Unit::Tokens {
        "Tokens"
    } else {
        "Cost"
    };
    let mut notes = String::new();
    if chart.buckets_per_bar > 1 {
        let _ = write!(
            notes,
            "<p>Each bar is the busiest of {} buckets.</p>",
            chart.buckets_per_bar
        );
    }
    if unpriced {
        notes.push_str("<p>This key has usage on a model without a price, so the spike rule judges it by tokens (floor <code>min_baseline_tokens</code>).</p>");
    }
    page(&state,
        &title,
        &format!(
            "{strip}{now_line}<p class=\"windows\">Window: {windows}</p><h2>{what} per bucket, {}</h2>{svg}{notes}<p class=\"legend\"><span>bars: usage</span><span style=\"color:#59a14f\">line: baseline</span><span style=\"color:#e15759\">line: spike threshold ({}x)</span><span style=\"color:#b00020\">dot: alert</span></p>\
             <p>Export: <a class=\"csv\" href=\"/api/v1/usage?key={}&amp;since={}&amp;format=csv\">usage as CSV</a> (also <code>keywatch history --key {} --format csv</code>)</p>\
             {minutes}<h2>Alerts on this key</h2>{}{story}<h2>Actions on this key</h2>{}<h2>Key</h2>{facts}",
            esc(&span_text), factor, url(&key_id), url(window_text), esc(&key_id), alert_list(&key_alerts, zone),
            action_list(&actions, zone)
        ),
    )
}

/// Every change made to the key at its provider, newest first.
fn action_list(actions: &[crate::store::KeyAction], zone: chrono_tz::Tz) -> String {
    if actions.is_empty() {
        return "<p>None: keywatch has not changed this key (<code>keywatch keys deactivate</code>, or a <code>[[containment]]</code> policy).</p>".to_owned();
    }
    let mut o = String::from(
        "<table><tr><th>when</th><th>action</th><th>result</th><th>by</th><th>reason</th></tr>",
    );
    for a in actions.iter().rev() {
        let _ = write!(
            o,
            "<tr class=\"action\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            super::pages::when(a.at, zone),
            esc(&a.action),
            esc(&a.result),
            esc(&a.by),
            esc(&a.reason)
        );
    }
    o.push_str("</table>");
    o
}

/// 404: nothing is stored about the key.
fn unknown(state: &AppState, key_id: &str, source: Option<&str>) -> Response {
    let mut r = page(
        state,
        "Unknown key",
        &format!(
            "<p>No key <code>{}</code>{} is known: nothing about it is stored. Check the id (the overview links every key); a new key appears after the next poll.</p>",
            esc(key_id),
            source.map(|s| format!(" in source <code>{}</code>", esc(s))).unwrap_or_default()
        ),
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The key's chart: usage bars, the baseline and spike level as lines, alerts as dots, times
/// in `zone` (UTC in the hover text too).
#[allow(clippy::too_many_arguments)]
fn svg(
    chart: &chart::Chart,
    unit: Unit,
    factor: f64,
    alerts: &[Alert],
    since: i64,
    until: i64,
    width: i64,
    zone: chrono_tz::Tz,
) -> String {
    let local = |ts: i64, f: &str| super::pages::local(ts, zone, f);
    let per_bar = chart.buckets_per_bar.max(1) as i64;
    let bar_secs = width * per_bar;
    let short = until - since <= 2 * 86_400;
    let x_labels = chart
        .bars
        .iter()
        .enumerate()
        .map(|(i, b)| (i, local(b.start, if short { "%H:%M" } else { "%-d %b" })))
        .collect();
    let titles = chart
        .bars
        .iter()
        .map(|b| {
            let at = format!(
                "{} ({} UTC)",
                local(b.peak_at, "%Y-%m-%d %H:%M %Z"),
                rfc3339(b.peak_at)
            );
            let busiest = if per_bar > 1 {
                format!(", the busiest of {per_bar} buckets")
            } else {
                String::new()
            };
            format!(
                "{at}{busiest}: {} (baseline {})",
                unit.show(b.value),
                unit.show(b.baseline)
            )
        })
        .collect();
    let markers = alerts
        .iter()
        .filter_map(|a| {
            let (start, _) = a.period.filter(|p| p.0 >= since && p.0 < until)?;
            Some(super::plot::Marker {
                slot: ((start - since) / bar_secs).max(0) as usize,
                rule: a.rule.as_str().to_owned(),
                title: a.summary.clone(),
            })
        })
        .collect();
    let (y_title, y_format): (&str, fn(f64) -> String) = match unit {
        Unit::Usd => ("USD per bucket", super::plot::usd_tick),
        Unit::Tokens => ("tokens per bucket", super::plot::count_tick),
    };
    let plot = super::plot::Plot {
        id: "key-usage",
        label: "usage per bucket".to_owned(),
        slots: chart.bars.len(),
        x_labels,
        x_title: format!(
            "time ({}), one bar = {}{}",
            zone.name(),
            humantime::format_duration(std::time::Duration::from_secs(bar_secs.max(0) as u64)),
            if per_bar > 1 {
                " (its busiest bucket)"
            } else {
                ""
            }
        ),
        y_title: y_title.to_owned(),
        y_format,
        stacks: vec![super::plot::Stack {
            name: "usage".to_owned(),
            colour: "#4e79a7",
            values: chart.bars.iter().map(|b| b.value).collect(),
            titles,
            links: Vec::new(),
        }],
        lines: vec![
            super::plot::Line {
                name: "baseline".to_owned(),
                colour: "#59a14f",
                values: chart.bars.iter().map(|b| b.baseline).collect(),
            },
            super::plot::Line {
                name: "spike threshold".to_owned(),
                colour: "#e15759",
                values: chart.bars.iter().map(|b| b.baseline * factor).collect(),
            },
        ],
        markers,
    };
    super::plot::responsive(&plot)
}

fn facts(state: &AppState, k: &crate::store::StoredKey, now: i64, zone: chrono_tz::Tz) -> String {
    let mut facts = String::from("<table>");
    let age = k.created_at.map(|c| (now - c).div_euclid(86_400));
    for (label, value) in [
        ("key id", esc(&k.key_id)),
        ("source", esc(&k.source)),
        ("status", esc(&k.status)),
        (
            "workspace",
            esc(k.workspace_id.as_deref().unwrap_or("default")),
        ),
        (
            "created",
            k.created_at.map(|c| when(c, zone)).unwrap_or_default(),
        ),
        (
            "age",
            age.map(|a| {
                format!(
                    "{a} days (rotation policy {} days)",
                    state.config.rotation.max_key_age_days
                )
            })
            .unwrap_or_default(),
        ),
        ("first seen", when(k.first_seen, zone)),
        ("last seen in listing", when(k.last_seen, zone)),
        ("hint", esc(k.partial_key_hint.as_deref().unwrap_or("-"))),
    ] {
        let _ = write!(facts, "<tr><th>{label}</th><td>{value}</td></tr>");
    }
    facts.push_str("</table>");
    facts
}
