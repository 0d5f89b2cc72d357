//! `/keys`: every key, searchable (name or id), filtered by source, status and workspace,
//! sorted by spend today / 7 days / 30 days, last use or age, 100 to a page — so a person finds
//! a key in one step among 10,000. Plain GET forms: no scripts needed.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use super::pages::{error_page, esc, money, page, tz, url, when};
use super::AppState;
use crate::store::StoredKey;

/// Keys per page.
const PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub struct KeysQuery {
    q: Option<String>,
    source: Option<String>,
    status: Option<String>,
    workspace: Option<String>,
    sort: Option<String>,
    page: Option<usize>,
}

/// One row of the list.
struct Row<'a> {
    key: &'a StoredKey,
    today: f64,
    week: f64,
    month: f64,
    last_used: Option<i64>,
}

/// The sort orders offered, as (value, label); the first is the default.
const SORTS: [(&str, &str); 6] = [
    ("today", "spend today"),
    ("7d", "spend 7 days"),
    ("30d", "spend 30 days"),
    ("last_used", "last used"),
    ("age", "age (oldest first)"),
    ("name", "name"),
];

pub async fn keys(State(state): State<AppState>, Query(q): Query<KeysQuery>) -> Response {
    let zone = tz(&state);
    let now = Utc::now();
    let [day, _] = crate::budget::current_periods(zone, now);
    let (today, end) = day.span();
    let utc_today = now.timestamp().div_euclid(86_400) * 86_400;
    let width = state.config.poll.bucket_width.seconds();
    // Local midnights, right across a DST change (and so read from the daily rollup).
    let start_of = |n: u32| {
        crate::period::last_n(crate::period::PeriodKind::Day, zone, now, n)
            .first()
            .map_or(today, |p| p.start.timestamp())
    };
    let (week_start, month_start) = (start_of(7), start_of(30));
    let store = &state.store;
    let read = tokio::try_join!(
        store.all_keys(),
        store.last_used(),
        store.spend_by_key(width, zone, today, end, utc_today),
        store.spend_by_key(width, zone, week_start, end, utc_today),
        store.spend_by_key(width, zone, month_start, end, utc_today),
    );
    let (keys, last_used, d1, d7, d30) = match read {
        Ok(x) => x,
        Err(e) => return error_page(&state, e),
    };
    let index = |rows: Vec<(String, String, f64)>| -> HashMap<(String, String), f64> {
        rows.into_iter().map(|(s, k, v)| ((s, k), v)).collect()
    };
    let (d1, d7, d30) = (index(d1), index(d7), index(d30));
    let last_used: HashMap<(String, String), i64> =
        last_used.into_iter().map(|(s, k, t)| ((s, k), t)).collect();
    let needle =
        q.q.as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_lowercase();
    fn want(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }
    let mut rows: Vec<Row<'_>> = keys
        .iter()
        .filter(|k| {
            needle.is_empty()
                || k.key_id.to_lowercase().contains(&needle)
                || k.name
                    .as_deref()
                    .is_some_and(|n| n.to_lowercase().contains(&needle))
        })
        .filter(|k| want(&q.source).is_none_or(|s| k.source == s))
        .filter(|k| want(&q.status).is_none_or(|s| k.status == s))
        .filter(|k| {
            want(&q.workspace).is_none_or(|w| k.workspace_id.as_deref().unwrap_or("default") == w)
        })
        .map(|k| {
            let id = (k.source.clone(), k.key_id.clone());
            Row {
                key: k,
                today: d1.get(&id).copied().unwrap_or_default(),
                week: d7.get(&id).copied().unwrap_or_default(),
                month: d30.get(&id).copied().unwrap_or_default(),
                last_used: last_used.get(&id).copied(),
            }
        })
        .collect();
    let sort = q
        .sort
        .as_deref()
        .filter(|s| SORTS.iter().any(|(v, _)| v == s))
        .unwrap_or("today");
    let by = |f: fn(&Row<'_>) -> f64| move |a: &Row<'_>, b: &Row<'_>| f(b).total_cmp(&f(a));
    match sort {
        "7d" => rows.sort_by(by(|r| r.week)),
        "30d" => rows.sort_by(by(|r| r.month)),
        "last_used" => rows.sort_by_key(|r| std::cmp::Reverse(r.last_used)),
        "age" => rows.sort_by_key(|r| r.key.created_at.unwrap_or(i64::MAX)),
        "name" => rows.sort_by_cached_key(|r| {
            r.key
                .name
                .as_deref()
                .unwrap_or(&r.key.key_id)
                .to_lowercase()
        }),
        _ => rows.sort_by(by(|r| r.today)),
    }
    let pages = rows.len().div_ceil(PAGE).max(1);
    let page_no = q.page.unwrap_or(1).clamp(1, pages);
    let shown = &rows[((page_no - 1) * PAGE).min(rows.len())..(page_no * PAGE).min(rows.len())];
    let body = format!(
        "{}<p class=\"muted\">{} of {} keys{}. Spend is the best known figure (bills where billed, else estimates), days in {}.</p>{}{}",
        filters(&q, &keys, sort),
        if rows.is_empty() { "0".to_owned() } else { format!("{}–{}", (page_no - 1) * PAGE + 1, (page_no - 1) * PAGE + shown.len()) },
        rows.len(),
        if rows.len() == keys.len() { String::new() } else { format!(" (filtered from {})", keys.len()) },
        esc(zone.name()),
        table(shown, now.timestamp(), zone),
        pager(&q, sort, page_no, pages)
    );
    page(&state, "Keys", &body)
}

fn filters(q: &KeysQuery, keys: &[StoredKey], sort: &str) -> String {
    let options = |values: Vec<&str>, chosen: Option<&str>| {
        let mut values = values;
        values.sort_unstable();
        values.dedup();
        let mut o = String::from("<option value=\"\">all</option>");
        for v in values {
            let _ = write!(
                o,
                "<option value=\"{}\"{}>{}</option>",
                esc(v),
                if chosen == Some(v) { " selected" } else { "" },
                esc(v)
            );
        }
        o
    };
    let sources = options(
        keys.iter().map(|k| k.source.as_str()).collect(),
        q.source.as_deref(),
    );
    let statuses = options(
        keys.iter().map(|k| k.status.as_str()).collect(),
        q.status.as_deref(),
    );
    let workspaces = options(
        keys.iter()
            .map(|k| k.workspace_id.as_deref().unwrap_or("default"))
            .collect(),
        q.workspace.as_deref(),
    );
    let mut sorts = String::new();
    for (v, label) in SORTS {
        let _ = write!(
            sorts,
            "<option value=\"{v}\"{}>{label}</option>",
            if v == sort { " selected" } else { "" }
        );
    }
    format!(
        "<form method=\"get\" action=\"/keys\" class=\"filters\" role=\"search\">\
         <label>Search<input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"name or key id\"></label>\
         <label>Source<select name=\"source\">{sources}</select></label>\
         <label>Status<select name=\"status\">{statuses}</select></label>\
         <label>Workspace<select name=\"workspace\">{workspaces}</select></label>\
         <label>Sort by<select name=\"sort\">{sorts}</select></label>\
         <button type=\"submit\">Show</button></form>",
        esc(q.q.as_deref().unwrap_or_default())
    )
}

fn table(rows: &[Row<'_>], now: i64, zone: chrono_tz::Tz) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">No key matches.</p>".to_owned();
    }
    let mut o = String::from(
        "<table id=\"keys\"><tr><th>key</th><th>source</th><th>status</th><th>workspace</th>\
         <th class=\"num\">today</th><th class=\"num\">7 days</th><th class=\"num\">30 days</th>\
         <th>last used</th><th class=\"num\">age</th></tr>",
    );
    for r in rows {
        let k = r.key;
        let _ = write!(
            o,
            "<tr class=\"key\" data-key=\"{}\"><td><a href=\"/keys/{}?source={}\">{}</a><br><code class=\"muted\">{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&k.key_id),
            url(&k.key_id),
            url(&k.source),
            esc(k.name.as_deref().unwrap_or(&k.key_id)),
            esc(&k.key_id),
            esc(&k.source),
            esc(&k.status),
            esc(k.workspace_id.as_deref().unwrap_or("default")),
            money(r.today),
            money(r.week),
            money(r.month),
            r.last_used.map_or_else(|| "never".to_owned(), |t| when(t, zone)),
            k.created_at
                .map(|c| format!("{} d", (now - c).div_euclid(86_400)))
                .unwrap_or_default()
        );
    }
    o + "</table>"
}

fn pager(q: &KeysQuery, sort: &str, page_no: usize, pages: usize) -> String {
    if pages <= 1 {
        return String::new();
    }
    let link = |n: usize, text: &str| {
        format!(
            "<a href=\"/keys?q={}&amp;source={}&amp;status={}&amp;workspace={}&amp;sort={}&amp;page={n}\">{text}</a>",
            url(q.q.as_deref().unwrap_or_default()),
            url(q.source.as_deref().unwrap_or_default()),
            url(q.status.as_deref().unwrap_or_default()),
            url(q.workspace.as_deref().unwrap_or_default()),
            url(sort)
        )
    };
    let mut o = String::from("<p class=\"pager\">");
    if page_no > 1 {
        o.push_str(&link(page_no - 1, "← previous"));
        o.push(' ');
    }
    let _ = write!(o, "page {page_no} of {pages}");
    if page_no < pages {
        o.push(' ');
        o.push_str(&link(page_no + 1, "next →"));
    }
    o + "</p>"
}
