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

/// Unix seconds `ts` in `zone`, formatted with `format` (chrono's `strftime` syntax).
pub(super) fn local(ts: i64, zone: Tz, format: &str) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|t| t.with_timezone(&zone).format(format).to_string())
        .unwrap_or_default()
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
    let mut r = Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — keywatch</title><style>{CSS}</style>\
         <script src=\"/assets/keywatch.js\" defer></script></head><body data-refresh=\"{}\">\
         <nav><b>keywatch</b> <a href=\"/\">Overview</a> <a href=\"/keys\">Keys</a> <a href=\"/alerts\">Alerts</a> <a href=\"/reports\">Reports</a>{}{}</nav>\
         <main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        // Pages with live data refresh in place every minute (assets/keywatch.js).
        if title == "Sign in" { 0 } else { REFRESH_SECS },
        if state.config.http.as_ref().is_some_and(|h| h.token.is_some()) && title != "Sign in" {
            "<form method=\"post\" action=\"/logout\" class=\"signout\"><button type=\"submit\">Sign out</button></form>"
        } else {
            ""
        },
        super::leadership::banner(state)
            .map(|b| format!(" <small class=\"replica\">{}</small>", esc(&b)))
            .unwrap_or_default(),
        esc(title)
    ))
    .into_response();
    // Pages hold spend and key names: never kept by a shared cache or the back button.
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

/// How often a page's content is refreshed in place, seconds.
const REFRESH_SECS: u32 = 60;

/// `/assets/keywatch.js`: the in-place refresh (the only script; pages work without it).
pub async fn script() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../assets/keywatch.js"),
    )
        .into_response()
}

/// One style sheet for every page: light and dark (`prefers-color-scheme`), readable from a
/// 360 px phone to a wide screen — tables scroll inside their box on narrow screens, long names
/// wrap, and each chart has a drawing for narrow screens (see `plot`).
const CSS: &str = ":root{color-scheme:light dark;--bg:#fff;--fg:#1d1d1f;--muted:#5f6368;--line:#e3e3e3;--grid:#ececec;--zero:#8a8a8a;--panel:#fafafa;--link:#0b57d0;--crit:#b00020;--warn:#9a5700;--info:#334f99;--ok:#2e7d32;--banner:#fff3cd;--banner-fg:#5c4400}\
@media (prefers-color-scheme:dark){:root{--bg:#141517;--fg:#e8e8e8;--muted:#a5a8ad;--line:#2e3035;--grid:#2a2c31;--zero:#80848b;--panel:#1b1c20;--link:#8ab4f8;--crit:#ff7a7a;--warn:#f2b661;--info:#a9bcff;--ok:#7bc77e;--banner:#3b3116;--banner-fg:#f5dc9a}}\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:15px;line-height:1.45;max-width:1200px;margin:auto;padding:.5rem 1rem 2rem;background:var(--bg);color:var(--fg);overflow-wrap:break-word}\
h1,td.summary,code{overflow-wrap:anywhere}\
a{color:var(--link)}code{font-size:.9em}\
nav{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:center;padding:.4rem 0;border-bottom:1px solid var(--line)}\
nav form{margin:0 0 0 auto}\
h1{font-size:1.45rem;margin:.8rem 0 .4rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}\
.muted,.asof{color:var(--muted);font-size:.85rem}\
.plot svg{display:block;width:100%;height:auto;background:var(--panel);border:1px solid var(--line);border-radius:4px}\
.plot svg.narrow{display:none}\
svg text{fill:var(--fg)}svg text.tick,svg text.axis-title{fill:var(--muted)}\
svg line.grid{stroke:var(--grid)}svg line.zero,svg line.tick-mark{stroke:var(--zero)}svg .alert-marker{fill:var(--crit)}\
table{border-collapse:collapse;width:100%;font-size:.9rem}\
td,th{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;vertical-align:top}\
th{font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.critical{color:var(--crit);font-weight:600}.warning{color:var(--warn);font-weight:600}.info{color:var(--info)}\
tr.resolved{opacity:.7}.ok{color:var(--ok)}\
.legend span{display:inline-block;margin-right:1rem}.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px;border-radius:2px}\
.banner{background:var(--banner);color:var(--banner-fg);padding:.5rem .75rem;border-radius:4px;margin:.75rem 0}\
.problem{color:var(--crit);font-weight:600}.empty{color:var(--muted);padding:1rem;border:1px dashed var(--line);border-radius:4px}\
form.login{display:grid;gap:.5rem;max-width:22rem}form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:.5rem 0}\
form.filters label{display:grid;font-size:.85rem;color:var(--muted)}\
input,button,select{font:inherit;padding:.35rem .5rem;max-width:100%}\
@media (max-width:640px){body{font-size:14px;padding:.5rem .6rem 2rem}.plot svg.wide{display:none}.plot svg.narrow{display:block}\
table{display:block;overflow-x:auto;max-width:100%}td,th{padding:.3rem .4rem}\
table.alerts,table.alerts tbody,table.alerts tr{display:block}table.alerts tr:first-child{display:none}\
table.alerts tr{border-bottom:1px solid var(--line);padding:.4rem 0}table.alerts td{display:inline;border:0;padding:0 .5rem 0 0}\
table.alerts td[data-label]::before{content:attr(data-label);color:var(--muted)}table.alerts td.summary{display:block;padding:.2rem 0 0}}";

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

/// The most alerts one list shows; the rest are counted, with where to see them.
const MAX_LISTED: usize = 100;

pub(super) fn alert_list(alerts: &[Alert], zone: Tz) -> String {
    if alerts.is_empty() {
        return "<p>No alerts.</p>".to_owned();
    }
    let more = alerts.len().saturating_sub(MAX_LISTED);
    let alerts = &alerts[..alerts.len().min(MAX_LISTED)];
    let mut o = String::from(
        "<table class=\"alerts\"><tr><th>severity</th><th>rule</th><th>key</th><th>since</th><th>state</th><th>summary</th></tr>",
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
        let resolved = a.status == crate::alerts::AlertStatus::Resolved;
        let state = match (resolved, a.ends_at) {
            (true, Some(end)) => format!("<span class=\"ok\">resolved</span> {}", when(end, zone)),
            (true, None) => "<span class=\"ok\">resolved</span>".to_owned(),
            (false, _) => "<b>firing</b>".to_owned(),
        };
        let _ = write!(
            o,
            "<tr class=\"alert{}\" id=\"alert-{}\" data-rule=\"{}\"><td class=\"{}\">{}</td><td>{}</td><td>{key}</td><td data-label=\"since \">{}</td><td>{state}</td><td class=\"summary\">{}</td></tr>",
            if resolved { " resolved" } else { "" },
            esc(&a.id),
            esc(a.rule.as_str()),
            a.severity.as_str(),
            a.severity.as_str(),
            esc(a.rule.as_str()),
            when(a.starts_at, zone),
            esc(&a.summary)
        );
    }
    o.push_str("</table>");
    if more > 0 {
        let _ = write!(
            o,
            "<p class=\"muted\">And {more} more (the {MAX_LISTED} most urgent are shown): narrow the list on <a href=\"/alerts\">Alerts</a>, or <code>keywatch alerts --format json</code>.</p>"
        );
    }
    o
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
    let (usage, keys, alerts, (periods, forecasts)) = match tokio::try_join!(
        spend_per_day(&state, zone, width, &spans),
        state.store.all_keys(),
        state.store.alerts(false),
        crate::budget::standing(&state.store, &state.config, Utc::now())
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
    let labels: Vec<String> = (0..grid.len())
        .map(|i| match top.get(i) {
            Some((s, k)) => name(s, k),
            None => "other".to_owned(),
        })
        .collect();
    let stacks = grid
        .iter()
        .zip(&labels)
        .zip(COLOURS)
        .enumerate()
        .map(|(i, ((values, label), colour))| super::plot::Stack {
            name: label.clone(),
            colour,
            values: values.clone(),
            titles: days
                .iter()
                .zip(values)
                .map(|(d, v)| {
                    format!(
                        "{} ({}): {label} {} — click for its hours",
                        d.label,
                        zone.name(),
                        money(*v)
                    )
                })
                .collect(),
            // A key's day opens its hours on the key page ("other" is several keys).
            links: days
                .iter()
                .map(|d| {
                    top.get(i).map(|(s, k)| {
                        format!("/keys/{}?source={}&day={}", url(k), url(s), url(&d.label))
                    })
                })
                .collect(),
        })
        .collect();
    let plot = super::plot::Plot {
        id: "spend-per-day",
        label: format!("spend per day, last 30 days, {}", zone.name()),
        slots: days.len(),
        x_labels: days
            .iter()
            .enumerate()
            .map(|(i, d)| (i, d.first_day.format("%-d %b").to_string()))
            .collect(),
        x_title: format!("day ({}), one bar per day", zone.name()),
        y_title: "USD per day".to_owned(),
        y_format: super::plot::usd_tick,
        stacks,
        lines: Vec::new(),
        markers: Vec::new(),
    };
    let total: f64 = grid.iter().flatten().sum();
    let svg = if total > 0.0 {
        super::plot::responsive(&plot)
    } else {
        "<p class=\"empty\">No spend in the last 30 days: nothing to chart yet. Usage appears after the first poll that finds some.</p>".to_owned()
    };
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
    let budgets = budget_table(&periods, &forecasts, zone);
    let (strip, silences) = tokio::join!(
        super::status::strip(&state),
        super::status::silences(&state)
    );
    page(&state,
        "Overview",
        &format!("{strip}<h2>Spend per day, last 30 days ({})</h2>{svg}{legend}<h2>Budgets</h2>{budgets}<h2>Open alerts</h2>{}{silences}",
            esc(zone.name()), alert_list(&alerts, zone)),
    )
}

/// Every budget's day and month that it limits: spent, limit, share, and for the month the
/// projection and the day it reaches the limit at this pace.
fn budget_table(
    periods: &[crate::budget::SpendGauge],
    forecasts: &[crate::budget::BudgetForecast],
    zone: Tz,
) -> String {
    if periods.is_empty() {
        return "<p class=\"empty\">No budgets: add <code>[[budgets]]</code> with <code>daily_usd</code> or <code>monthly_usd</code> to watch spend against a limit.</p>".to_owned();
    }
    let mut o = String::from("<table id=\"budgets\"><tr><th>budget</th><th>period</th><th class=\"num\">spent</th><th class=\"num\">limit</th><th class=\"num\">used</th><th class=\"num\">projected</th><th>limit reached</th></tr>");
    for g in periods {
        let limit = g.limit_usd.unwrap_or_default();
        let pct = if limit > 0.0 {
            g.spent_usd / limit * 100.0
        } else {
            0.0
        };
        let class = match pct {
            p if p >= 100.0 => "critical",
            p if p >= 75.0 => "warning",
            _ => "",
        };
        let month = (g.period == "month")
            .then(|| forecasts.iter().find(|f| f.budget == g.name))
            .flatten();
        let _ = write!(
            o,
            "<tr class=\"budget\" data-period=\"{}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num {class}\">{:.0}%</td><td class=\"num\">{}</td><td>{}</td></tr>",
            g.period,
            esc(&g.name),
            if g.period == "day" { "today" } else { "this month" },
            money(g.spent_usd),
            money(limit),
            // Floored: 99.6 % is not shown as 100 % while the limit is not reached.
            pct.floor(),
            month.map_or_else(|| "—".to_owned(), |f| money(f.forecast.projected)),
            match (month, pct >= 100.0) {
                (_, true) => "<b class=\"critical\">reached</b>".to_owned(),
                (Some(f), false) => f
                    .forecast
                    .crosses_at
                    .map_or_else(|| "not this month".to_owned(), |t| format!("at this pace {}", when(t, zone))),
                (None, false) => "—".to_owned(),
            }
        );
    }
    o + "</table>"
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
        "<form method=\"get\" class=\"filters\">rule <select name=\"rule\"><option value=\"\">any</option>",
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
    let (strip, silences) = tokio::join!(
        super::status::strip(&state),
        super::status::silences(&state)
    );
    page(
        &state,
        "Alerts",
        &format!(
            "{strip}{form}<h2>Firing</h2>{}<h2>Recently resolved</h2>{}{silences}",
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
