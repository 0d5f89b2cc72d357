//! What every dashboard page says about the data itself: a banner for each source that is
//! failing (no successful poll for three intervals, or never), "data as of" the last
//! successful poll, and the active silences.

use std::fmt::Write as _;

use chrono::Utc;

use super::pages::{esc, when};
use super::AppState;

/// The banner (if a source is failing) and the "data as of" line, in the page's zone.
pub async fn strip(state: &AppState) -> String {
    let now = Utc::now().timestamp();
    let zone = super::pages::tz(state);
    let interval = state.config.poll.interval.0.as_secs() as i64;
    let width = state.config.poll.bucket_width.seconds();
    let mut failing = Vec::new();
    let mut newest: Option<i64> = None;
    for source in &state.config.sources {
        match state.store.usage_poll_state(&source.name, width).await {
            Ok(s) => {
                newest = newest.max(s.last_success_at);
                match s.last_success_at {
                    Some(t) if now - t <= 3 * interval => {}
                    Some(t) => failing.push(format!(
                        "<b>{}</b>: no successful poll since {} ({} ago){}",
                        esc(&source.name),
                        when(t, zone),
                        humantime::format_duration(std::time::Duration::from_secs(
                            (now - t).max(0) as u64
                        )),
                        s.last_error
                            .as_deref()
                            .map(|e| format!(" — last error: {}", esc(e)))
                            .unwrap_or_default()
                    )),
                    None => failing.push(format!(
                        "<b>{}</b>: never polled successfully{}",
                        esc(&source.name),
                        s.last_error
                            .as_deref()
                            .map(|e| format!(" — last error: {}", esc(e)))
                            .unwrap_or_default()
                    )),
                }
            }
            Err(e) => failing.push(format!(
                "<b>{}</b>: cannot read its poll state: {}",
                esc(&source.name),
                esc(&e.to_string())
            )),
        }
    }
    let mut o = String::new();
    if !failing.is_empty() {
        let _ = write!(
            o,
            "<div class=\"banner\" role=\"alert\"><b>Data may be stale.</b> {}. Usage and alerts for it stop at that point; check <code>keywatch check-config</code> and the log.</div>",
            failing.join("; ")
        );
    }
    let _ = write!(
        o,
        "<p class=\"asof\">Data as of {} (polled every {}) · page drawn {}</p>",
        newest.map_or_else(|| "no poll yet".to_owned(), |t| when(t, zone)),
        humantime::format_duration(state.config.poll.interval.0),
        when(now, zone)
    );
    o
}

/// The active silences, with reason and expiry; empty when there are none.
pub async fn silences(state: &AppState) -> String {
    let now = Utc::now().timestamp();
    let zone = super::pages::tz(state);
    let Ok(all) = state.store.silences().await else {
        return String::new();
    };
    let active: Vec<_> = all
        .iter()
        .filter(|s| s.removed_at.is_none() && s.expires_at > now)
        .collect();
    if active.is_empty() {
        return String::new();
    }
    let mut o = String::from(
        "<h2>Active silences</h2><table id=\"silences\"><tr><th>key</th><th>rule</th><th>reason</th><th>until</th><th>id</th></tr>",
    );
    for s in active {
        let _ = write!(
            o,
            "<tr class=\"silence\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(s.key_id.as_deref().unwrap_or("any")),
            esc(s.rule.as_deref().unwrap_or("any")),
            esc(&s.reason),
            when(s.expires_at, zone),
            esc(&s.id)
        );
    }
    o + "</table><p class=\"muted\">Silences hold back notifications, not detection. End one with <code>keywatch unsilence ID</code>.</p>"
}
