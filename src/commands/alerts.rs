//! `keywatch alerts`, `silence`, `silences`, `unsilence`.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::Utc;

use crate::alerts::{rfc3339, Alert};
use crate::cli::{AlertFilter, ListFormat};
use crate::config::Config;
use crate::exit;
use crate::store::{Silence, Store};

pub async fn list(
    config: &Config,
    all: bool,
    filter: &AlertFilter,
    format: ListFormat,
) -> anyhow::Result<u8> {
    let store = Store::connect_existing(&config.storage).await?;
    let alerts: Vec<Alert> = store
        .alerts(all)
        .await?
        .into_iter()
        .filter(|a| filter.keeps(a))
        .collect();
    store.close().await;
    match format {
        ListFormat::Json => {
            let items: Vec<_> = alerts.iter().map(Alert::wire).collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        ListFormat::Table => print!("{}", table(&alerts, all)),
    }
    Ok(exit::OK)
}

/// Two lines per alert, fitting 80 columns: status, severity, rule, key and start; then the
/// summary, wrapped.
pub fn table(alerts: &[Alert], all: bool) -> String {
    if alerts.is_empty() {
        return if all {
            "no alerts\n"
        } else {
            "no open alerts\n"
        }
        .to_owned();
    }
    let mut o = String::new();
    for a in alerts {
        let subject = a
            .budget
            .as_deref()
            .map(|b| format!("budget {b}"))
            .or_else(|| a.key_name.clone())
            .or_else(|| a.key_id.clone())
            .or_else(|| a.source.clone())
            .unwrap_or_default();
        // Provider text (key names, error bodies in summaries) cannot drive the terminal.
        let subject = crate::text::clean(&subject);
        let when = rfc3339(a.starts_at);
        let head = format!(
            "{:<8} {:<8} {:<18} {}",
            a.status.as_str().to_uppercase(),
            a.severity.as_str().to_uppercase(),
            a.rule.as_str(),
            truncate(&subject, 80 - 37 - when.len() - 1),
        );
        let _ = writeln!(o, "{head:<width$} {when}", width = 79 - when.len());
        for line in wrap(&crate::text::clean(&a.summary), 76) {
            let _ = writeln!(o, "    {line}");
        }
        let _ = writeln!(o, "    id {}", a.id);
    }
    o
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

pub async fn silence(
    config: &Config,
    key: Option<String>,
    rule: Option<String>,
    duration: Duration,
    reason: String,
) -> anyhow::Result<u8> {
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must say why the silence is needed");
    }
    let now = Utc::now().timestamp();
    let secs = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2);
    let silence = Silence {
        id: format!("sil_{:08x}", fastrand::u32(..)),
        key_id: key,
        rule,
        reason,
        created_at: now,
        expires_at: now.saturating_add(secs),
        removed_at: None,
    };
    // A silence may come before the first run; an existing database is never migrated here.
    let store = match Store::connect_existing(&config.storage).await {
        // Before the first run: the database is made (and migrated) as `run` would.
        Err(crate::store::StoreError::Missing(_)) => Store::connect(&config.storage).await?,
        other => other?,
    };
    store.add_silence(&silence).await?;
    store.close().await;
    println!(
        "silenced {} until {} ({}); undo with `keywatch unsilence {}`",
        describe(&silence),
        rfc3339(silence.expires_at),
        humantime::format_duration(duration),
        silence.id
    );
    Ok(exit::OK)
}

fn describe(s: &Silence) -> String {
    match (&s.key_id, &s.rule) {
        (Some(k), Some(r)) => format!("rule {r} on key {k}"),
        (Some(k), None) => format!("key {k}"),
        (None, Some(r)) => format!("rule {r}"),
        (None, None) => "everything".to_owned(),
    }
}

pub async fn silences(config: &Config, format: ListFormat) -> anyhow::Result<u8> {
    let store = Store::connect_existing(&config.storage).await?;
    let list = store.silences().await?;
    store.close().await;
    let now = Utc::now().timestamp();
    if format == ListFormat::Json {
        let items: Vec<serde_json::Value> = list.iter().map(|s| s.to_json(now)).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(exit::OK);
    }
    if list.is_empty() {
        println!("no silences");
    }
    for s in &list {
        let state = match s.removed_at {
            Some(t) => format!("removed {}", rfc3339(t)),
            None if s.expires_at <= now => format!("expired {}", rfc3339(s.expires_at)),
            None => format!("active until {}", rfc3339(s.expires_at)),
        };
        println!(
            "{}  {}  {state}\n    reason: {}",
            s.id,
            crate::text::clean(&describe(s)),
            crate::text::clean(&s.reason)
        );
    }
    Ok(exit::OK)
}

pub async fn unsilence(config: &Config, id: &str) -> anyhow::Result<u8> {
    let store = Store::connect_existing(&config.storage).await?;
    let removed = store.remove_silence(id, Utc::now().timestamp()).await?;
    store.close().await;
    if removed {
        println!("silence {id} removed");
        Ok(exit::OK)
    } else {
        eprintln!("keywatch: no active silence {id:?} (see `keywatch silences`)");
        Ok(exit::FAILURE)
    }
}
