//! The dashboard: server-rendered HTML with inline SVG charts — no scripts, no CDN, works
//! offline. Everything that comes from a provider or the config is escaped.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::AppState;
use crate::alerts::Alert;
use crate::period::PeriodKind;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    crate::text::html(s)
}

/// Percent-encodes a path or query component.
pub(super) fn url(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn money(v: f64) -> String {
    format!("${v:.2}")
}

pub(super) fn tz(state: &AppState) -> Tz {
    state.config.http.as_ref().map_or(Tz::UTC, |h| h.timezone)
}

/// A time in the dashboard's zone, UTC on hover.
pub(super) fn when(ts: i64, zone: Tz) -> String {
    let Some(t) = DateTime::<Utc>::from_timestamp(ts, 0) else {
        return String::new();
    };
    format!(
        "<time datetime=\"{}\" title=\"{} UTC\">{}</time>",
        t.to_rfc3339(),
        t.format("%Y-%m-%d %H:%M"),
        t.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z")
    )
}

pub(super) fn page(state: &AppState, title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — keywatch</title><style>{CSS}</style></head><body>\
         <nav><b>keywatch</b> <a href=\"/\">Overview</a> <a href=\"/alerts\">Alerts</a>{}</nav>\
         <h1>{}</h1>{body}</body></html>",
        esc(title),
        if state.config.http.as_ref().is_some_and(|h| h.token.is_some()) && title != "Sign in" {
            "<form method=\"post\" action=\"/logout\" class=\"signout\"><button type=\"submit\">Sign out</button></form>"
        } else {
            ""
        },
        esc(title)
    ))
    .into_response()
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1rem;color:#222}\
nav a{margin-left:1rem}svg{width:100%;height:auto;background:#fafafa;border:1px solid #ddd}\
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{border-bottom:1px solid #eee;padding:.3rem;text-align:left}\
.num{text-align:right}.critical{color:#b00020;font-weight:bold}.warning{color:#a15c00}.info{color:#336}\
.legend span{display:inline-block;margin-right:1rem}.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}\
@media (max-width:600px){td,th{font-size:.75rem}}";

const COLOURS: [&str; 9] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f",
];

pub(super) fn error_page(state: &AppState, e: impl std::fmt::Display) -> Response {
    let mut r = page(
        state,
        "Error",
        &format!("<p>cannot read the store: {}</p>", esc(&e.to_string())),
    );
    *r.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    r
}

pub(super) fn alert_list(alerts: &[Alert], zone: Tz) -> String {
    if alerts.is_empty() {
        return "<p>No alerts.</p>".to_owned();
    }
    let mut o = String::from(
        "<table><tr><th>severity</th><th>rule</th><th>key</th><th>since</th><th>summary</th></tr>",
    );
    for a in alerts {
        let key = match &a.key_id {
            Some(id) => format!(
                "<a href=\"/keys/{}?source={}\">{}</a>",
                url(id),
                url(a.source.as_deref().unwrap_or_default()),
                esc(a.key_name.as_deref().unwrap_or(id))
            ),
            None => esc(a
                .budget
                .as_deref()
                .or(a.source.as_deref())
                .unwrap_or_default()),
        };
        let _ = write!(
            o,
            "<tr class=\"alert\" id=\"alert-{}\" data-rule=\"{}\"><td class=\"{}\">{}{}</td><td>{}</td><td>{key}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.id),
            esc(a.rule.as_str()),
            a.severity.as_str(),
            a.severity.as_str(),
            if a.status == crate::alerts::AlertStatus::Resolved { " (resolved)" } else { "" },
            esc(a.rule.as_str()),
            when(a.starts_at, zone),
            esc(&a.summary)
        );
    }
    o + "</table>"
}

/// The chart's series over `days` (local days, in order): the top 8 keys and the rest, from the
/// daily rollup, or summed from the buckets when the zone is not rolled up.
async fn spend_per_day(
    state: &AppState,
    zone: Tz,
    width: i64,
    days: &[(i64, i64)],
) -> Result<crate::store::TopSpend, crate::store::StoreError> {
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return Ok(crate::store::TopSpend::default());
    };
    if let Some(top) = state
        .store
        .top_daily_spend(zone, width, first.0, last.1, 8)
        .await?
    {
        return Ok(top);
    }
    let rows: Vec<crate::store::DaySpend> = state
        .store
        .usage_by_period_from_buckets(width, days)
        .await?
        .into_iter()
        .map(|u| crate::store::DaySpend {
            day: u.period,
            source: u.source,
            key_id: u.key_id,
            cost_usd: u.cost_usd,
        })
        .collect();
    Ok(crate::store::TopSpend::from_rows(&rows, days.len(), 8))
}

/// `/`: spend per day for 30 days stacked by key (top 8 + other), budgets, open alerts.
pub async fn overview(State(state): State<AppState>) -> Response {
    let zone = tz(&state);
    let days = crate::period::last_n(PeriodKind::Day, zone, Utc::now(), 30);
    let spans: Vec<(i64, i64)> = days.iter().map(crate::period::Period::span).collect();
    let width = state.config.poll.bucket_width.seconds();
    let (usage, keys, alerts, forecasts) = match tokio::try_join!(
        spend_per_day(&state, zone, width, &spans),
        state.store.all_keys(),
        state.store.alerts(false),
        crate::budget::forecasts(&state.store, &state.config, Utc::now())
    ) {
        Ok(x) => x,
        Err(e) => return error_page(&state, e),
    };
    let name = |s: &str, k: &str| {
        keys.iter()
            .find(|x| x.source == s && x.key_id == k)
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| k.to_owned())
    };
    let top = &usage.keys;
    let mut grid = usage.days.clone();
    let more = usage.other.is_some();
    grid.extend(usage.other.clone());
    let n_series = grid.len();
    let max_day = (0..days.len())
        .map(|d| grid.iter().map(|s| s[d]).sum::<f64>())
        .fold(0.0, f64::max)
        .max(0.01);
    let (w, h, pad) = (900.0, 260.0, 30.0);
    let bar = (w - 2.0 * pad) / days.len() as f64;
    let mut svg = format!("<svg class=\"chart\" id=\"spend-per-day\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"spend per day\">");
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"14\" font-size=\"11\">{}</text>",
        money(max_day)
    );
    let mut base = vec![0.0f64; days.len()];
    for (i, series) in grid.iter().enumerate().take(n_series.min(COLOURS.len())) {
        let label = if i < top.len() {
            name(&top[i].0, &top[i].1)
        } else {
            "other".to_owned()
        };
        let _ = write!(
            svg,
            "<g class=\"series\" data-series=\"{}\" fill=\"{}\">",
            esc(&label),
            COLOURS[i]
        );
        for (d, v) in series.iter().enumerate() {
            if *v <= 0.0 {
                continue;
            }
            let bh = v / max_day * (h - 2.0 * pad);
            let y = h - pad - base[d] - bh;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\"><title>{} {}: {}</title></rect>",
                pad + d as f64 * bar,
                bar * 0.85,
                esc(&days[d].label),
                esc(&label),
                money(*v)
            );
            base[d] += bh;
        }
        svg.push_str("</g>");
    }
    let _ = write!(svg, "<text x=\"{pad}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text></svg>",
        h - 8.0, esc(&days[0].label), w - pad, h - 8.0, esc(&days[days.len() - 1].label));
    let mut legend = String::from("<p class=\"legend\">");
    for (i, (s, k)) in top.iter().enumerate() {
        let _ = write!(legend, "<span><i class=\"swatch\" style=\"background:{}\"></i><a href=\"/keys/{}?source={}\">{}</a></span>", COLOURS[i], url(k), url(s), esc(&name(s, k)));
    }
    if more {
        let _ = write!(
            legend,
            "<span><i class=\"swatch\" style=\"background:{}\"></i>other</span>",
            COLOURS[8]
        );
    }
    legend.push_str("</p>");
    let mut budgets = String::from("<table><tr><th>budget</th><th class=\"num\">month to date</th><th class=\"num\">limit</th><th class=\"num\">projected</th><th>limit reached</th></tr>");
    for f in &forecasts {
        let _ = write!(
            budgets,
            "<tr class=\"budget\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&f.budget), money(f.spent), money(f.limit), money(f.forecast.projected),
            f.forecast.crosses_at.map_or_else(|| "not this month".to_owned(), |t| when(t, zone))
        );
    }
    budgets.push_str("</table>");
    page(&state,
        "Overview",
        &format!("<h2>Spend per day, last 30 days ({})</h2>{svg}{legend}<h2>Budgets this month</h2>{budgets}<h2>Open alerts</h2>{}",
            esc(zone.name()), alert_list(&alerts, zone)),
    )
}

#[derive(Deserialize)]
pub struct AlertsQuery {
    rule: Option<String>,
    severity: Option<String>,
}

/// `/alerts`: firing and recently resolved alerts, filtered by rule and severity.
pub async fn alerts(State(state): State<AppState>, Query(q): Query<AlertsQuery>) -> Response {
    let zone = tz(&state);
    let all = match state.store.alerts(true).await {
        Ok(a) => a,
        Err(e) => return error_page(&state, e),
    };
    let keep = |a: &&Alert| {
        q.rule
            .as_deref()
            .is_none_or(|r| r.is_empty() || a.rule.as_str() == r)
            && q.severity
                .as_deref()
                .is_none_or(|s| s.is_empty() || a.severity.as_str() == s)
    };
    let firing: Vec<Alert> = all
        .iter()
        .filter(|a| a.status == crate::alerts::AlertStatus::Firing)
        .filter(keep)
        .cloned()
        .collect();
    let resolved: Vec<Alert> = all
        .iter()
        .filter(|a| a.status == crate::alerts::AlertStatus::Resolved)
        .filter(keep)
        .take(50)
        .cloned()
        .collect();
    let mut form = String::from(
        "<form method=\"get\">rule <select name=\"rule\"><option value=\"\">any</option>",
    );
    for r in crate::alerts::Rule::ALL {
        let _ = write!(
            form,
            "<option{}>{}</option>",
            if q.rule.as_deref() == Some(r.as_str()) {
                " selected"
            } else {
                ""
            },
            r.as_str()
        );
    }
    form.push_str("</select> severity <select name=\"severity\"><option value=\"\">any</option>");
    for s in ["info", "warning", "critical"] {
        let _ = write!(
            form,
            "<option{}>{s}</option>",
            if q.severity.as_deref() == Some(s) {
                " selected"
            } else {
                ""
            }
        );
    }
    form.push_str("</select> <button>filter</button></form>");
    page(
        &state,
        "Alerts",
        &format!(
            "{form}<h2>Firing</h2>{}<h2>Recently resolved</h2>{}",
            alert_list(&firing, zone),
            alert_list(&resolved, zone)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn provider_text_is_escaped() {
        assert_eq!(
            esc("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(esc("a\"b'c&"), "a&quot;b&#39;c&amp;");
    }
}
