//! `/reports`: the `keywatch report` table for a chosen period, grouping, length and zone, with
//! the same rows as a CSV download (`/api/v1/report?…&format=csv`) — finance's "what did each
//! team's keys cost this month, against last month".

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::api::{report_request, ReportQuery};
use super::pages::{error_page, esc, money, page, url};
use super::AppState;

const GROUPINGS: [(&str, &str); 6] = [
    ("key", "key"),
    ("workspace", "workspace"),
    ("source", "source"),
    ("model", "model"),
    ("tier", "price tier"),
    ("workspace,key", "workspace, then key"),
];

pub async fn reports(State(state): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let req = match report_request(&state, &q) {
        Ok(r) => r,
        Err(bad) => {
            // The form again, with the API's explanation.
            let status = bad.status();
            let why = axum::body::to_bytes(bad.into_body(), 4_096)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut r = page(
                &state,
                "Reports",
                &format!("{}<p class=\"problem\">{}</p>", form(&q), esc(&why)),
            );
            *r.status_mut() = status;
            return r;
        }
    };
    let width = state.config.poll.bucket_width.seconds();
    let report = match crate::report::load(&state.store, width, &req, Utc::now()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let mut r = page(
                &state,
                "Reports",
                &format!(
                    "{}<p class=\"problem\">{}</p>",
                    form(&q),
                    esc(&e.replace("--", ""))
                ),
            );
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            return r;
        }
        Err(e) => return error_page(&state, e),
    };
    let csv = format!(
        "/api/v1/report?period={}&amp;by={}&amp;last={}&amp;since={}&amp;until={}&amp;timezone={}&amp;format=csv",
        url(q.period.as_deref().unwrap_or("day")),
        url(q.by.as_deref().unwrap_or("key")),
        url(q.last.as_deref().unwrap_or_default()),
        url(q.since.as_deref().unwrap_or_default()),
        url(q.until.as_deref().unwrap_or_default()),
        url(req.zone.name())
    );
    let body = format!(
        "{}<p><a class=\"csv\" href=\"{csv}\" download>Download as CSV</a> · the same rows as <code>keywatch report --format csv</code>, times in {}.</p>{}\
         <p class=\"muted\">USD is the best known cost: the provider's bill for the closed UTC days it billed per key, keywatch's estimate from list prices for the rest (basis <code>billed</code>, <code>estimated</code>, or <code>floor</code> when usage on a model without a price is left out). A period marked * is not over: its change compares with the period before up to the same point.</p>",
        form(&q),
        esc(req.zone.name()),
        table(&report)
    );
    page(&state, "Reports", &body).into_response()
}

fn form(q: &ReportQuery) -> String {
    let period = q.period.as_deref().unwrap_or("day");
    let by = q.by.as_deref().unwrap_or("key");
    let mut o = String::from(
        "<form method=\"get\" action=\"/reports\" class=\"filters\"><label>Period<select name=\"period\">",
    );
    for p in ["day", "week", "month"] {
        let _ = write!(
            o,
            "<option{}>{p}</option>",
            if p == period { " selected" } else { "" }
        );
    }
    o.push_str("</select></label><label>Group by<select name=\"by\">");
    for (v, label) in GROUPINGS {
        let _ = write!(
            o,
            "<option value=\"{v}\"{}>{label}</option>",
            if v == by { " selected" } else { "" }
        );
    }
    let _ = write!(
        o,
        "</select></label><label>Periods<input name=\"last\" inputmode=\"numeric\" size=\"4\" value=\"{}\" placeholder=\"default\"></label>\
         <label>Time zone<input name=\"timezone\" size=\"16\" value=\"{}\" placeholder=\"the dashboard's\"></label>\
         <button type=\"submit\">Show</button></form>",
        esc(q.last.as_deref().unwrap_or_default()),
        esc(q.timezone.as_deref().unwrap_or_default())
    );
    o
}

fn table(report: &crate::report::Report) -> String {
    if report.rows.is_empty() {
        return "<p class=\"empty\">No usage in these periods.</p>".to_owned();
    }
    let columns: Vec<&str> = report
        .rows
        .first()
        .map(|r| r.group.iter().map(|(c, _)| *c).collect())
        .unwrap_or_default();
    let mut o = String::from("<table id=\"report\"><tr><th>period</th>");
    for c in &columns {
        let _ = write!(o, "<th>{}</th>", esc(c));
    }
    o.push_str("<th class=\"num\">USD</th><th>basis</th><th class=\"num\">change</th><th class=\"num\">share</th><th class=\"num\">requests</th></tr>");
    for r in &report.rows {
        let _ = write!(
            o,
            "<tr class=\"row\"><td>{}{}</td>",
            esc(&r.period),
            if r.partial { "*" } else { "" }
        );
        for (_, v) in &r.group {
            let _ = write!(o, "<td>{}</td>", esc(v));
        }
        let _ = write!(
            o,
            "<td class=\"num\">{}{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td><td class=\"num\">{}</td></tr>",
            if r.unpriced_tokens > 0 { "≥" } else { "" },
            money(r.spend_usd),
            r.basis.as_str(),
            match (r.change_usd, r.change_pct) {
                (Some(c), Some(p)) => format!("{}{} ({p:+.0}%)", if c >= 0.0 { "+" } else { "−" }, money(c.abs())),
                (Some(c), None) => format!("{}{}", if c >= 0.0 { "+" } else { "−" }, money(c.abs())),
                _ => "new".to_owned(),
            },
            r.share_pct,
            r.requests.map(|n| n.to_string()).unwrap_or_default()
        );
    }
    o + "</table>"
}
