//! `keywatch keys`: the key inventory, its naming lint, and changing a key at its provider by
//! hand (deactivate, activate, delete), each change recorded.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::cli::{KeyChangeArgs, KeysAction, ListFormat};
use crate::config::Config;
use crate::containment::{act, explain, Order, Outcome};
use crate::exit;
use crate::providers::key_admin::KeyChange;
use crate::store::{Store, StoredKey};

/// One key as `keys` lists it.
#[derive(Debug, serde::Serialize)]
struct Listed {
    source: String,
    key_id: String,
    name: Option<String>,
    status: String,
    workspace_id: Option<String>,
    created_at: Option<String>,
    created_by: Option<String>,
    age_days: Option<i64>,
    last_used_at: Option<String>,
    spend_today_usd: f64,
    spend_7d_usd: f64,
    open_alerts: usize,
    in_inventory: bool,
}

pub async fn list(
    config: &Config,
    source: Option<&str>,
    status: Option<&str>,
    lint: bool,
    format: ListFormat,
) -> anyhow::Result<u8> {
    let store = Store::connect_existing(&config.storage).await?;
    let now = Utc::now();
    let zone = config
        .http
        .as_ref()
        .map_or(chrono_tz::Tz::UTC, |h| h.timezone);
    let width = config.poll.bucket_width.seconds();
    let today = crate::period::Period::containing(crate::period::PeriodKind::Day, zone, now);
    let week_start =
        crate::period::local_midnight(zone, today.first_day - chrono::Duration::days(6));
    let utc_today = now.timestamp().div_euclid(86_400) * 86_400;
    let (keys, creators, last_used, open, day, week) = tokio::try_join!(
        store.all_keys(),
        store.key_creators(),
        store.last_used(),
        store.alerts(false),
        store.spend_by_key(
            width,
            zone,
            today.start.timestamp(),
            today.end.timestamp(),
            utc_today
        ),
        store.spend_by_key(
            width,
            zone,
            week_start.timestamp(),
            today.end.timestamp(),
            utc_today
        ),
    )?;
    store.close().await;
    let last_used: HashMap<(String, String), i64> =
        last_used.into_iter().map(|(s, k, t)| ((s, k), t)).collect();
    let spend = |rows: &[(String, String, f64)]| -> HashMap<(String, String), f64> {
        rows.iter()
            .map(|(s, k, u)| ((s.clone(), k.clone()), *u))
            .collect()
    };
    let (day, week) = (spend(&day), spend(&week));
    let mut alerts: HashMap<(String, String), usize> = HashMap::new();
    for a in &open {
        if let (Some(s), Some(k)) = (&a.source, &a.key_id) {
            *alerts.entry((s.clone(), k.clone())).or_default() += 1;
        }
    }
    let rfc = |t: i64| crate::alerts::rfc3339(t);
    let listed: Vec<Listed> = keys
        .into_iter()
        .filter(|k| source.is_none_or(|s| s == k.source))
        .filter(|k| status.is_none_or(|s| s.eq_ignore_ascii_case(&k.status)))
        .map(|k| {
            let id = (k.source.clone(), k.key_id.clone());
            Listed {
                created_at: k.created_at.map(rfc),
                created_by: creators.get(&id).cloned(),
                age_days: k
                    .created_at
                    .map(|c| (now.timestamp() - c).div_euclid(86_400)),
                last_used_at: last_used.get(&id).copied().map(rfc),
                spend_today_usd: crate::text::usd(day.get(&id).copied().unwrap_or(0.0)),
                spend_7d_usd: crate::text::usd(week.get(&id).copied().unwrap_or(0.0)),
                open_alerts: alerts.get(&id).copied().unwrap_or(0),
                source: k.source,
                key_id: k.key_id,
                name: k.name,
                status: k.status,
                workspace_id: k.workspace_id,
                in_inventory: k.in_inventory,
            }
        })
        .collect();
    if lint {
        print!("{}", lint_report(&listed, format)?);
        return Ok(exit::OK);
    }
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&listed)?),
        ListFormat::Table => print!("{}", table(&listed, now.timestamp(), zone)),
    }
    Ok(exit::OK)
}

fn cut(s: &str, n: usize) -> String {
    let s = crate::text::clean(s);
    if s.chars().count() <= n {
        s.into_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// How long ago, shortly: `12m`, `5h`, `3d`.
fn ago(now: i64, t: i64) -> String {
    let s = (now - t).max(0);
    match s {
        0..=3_599 => format!("{}m", s / 60),
        3_600..=172_799 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

/// At most 100 columns: a heading per source, then id, name, status, age, last use, spend
/// today and over 7 days, open alerts.
fn table(keys: &[Listed], now: i64, zone: chrono_tz::Tz) -> String {
    let mut o = format!("keys: spend today and over 7 days in {zone} (USD, best known)\n");
    let mut sources: Vec<&str> = keys.iter().map(|k| k.source.as_str()).collect();
    sources.dedup();
    for source in sources {
        let _ = writeln!(o, "\nsource {}", cut(source, 60));
        let _ = writeln!(
            o,
            "{:<30} {:<18} {:<8} {:>5} {:>6} {:>8} {:>9} {:>5}",
            "id", "name", "status", "age", "used", "today", "7 days", "open"
        );
        for k in keys.iter().filter(|k| k.source == source) {
            let parse = |t: &Option<String>| {
                t.as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp())
            };
            let _ = writeln!(
                o,
                "{:<30} {:<18} {:<8} {:>5} {:>6} {:>8.2} {:>9.2} {:>5}",
                cut(&k.key_id, 30),
                cut(k.name.as_deref().unwrap_or("-"), 18),
                cut(&k.status, 8),
                k.age_days.map_or("-".to_owned(), |d| format!("{d}d")),
                parse(&k.last_used_at).map_or("never".to_owned(), |t| ago(now, t)),
                k.spend_today_usd,
                k.spend_7d_usd,
                k.open_alerts
            );
        }
    }
    o
}

/// Environments a key name may start with.
const ENVIRONMENTS: [&str; 9] = [
    "prod",
    "production",
    "staging",
    "stage",
    "dev",
    "test",
    "ci",
    "qa",
    "sandbox",
];

/// Why `name` breaks the naming convention (environment-service-date, e.g.
/// `prod-api-gateway-2026-04-25`), or `None` when it follows it.
pub fn lint_name(name: Option<&str>) -> Option<String> {
    let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
        return Some("no name".to_owned());
    };
    let mut why = Vec::new();
    let env = name.split(['-', '_']).next().unwrap_or("");
    if !ENVIRONMENTS.contains(&env.to_ascii_lowercase().as_str()) {
        why.push(format!(
            "does not start with an environment ({})",
            ENVIRONMENTS.join(", ")
        ));
    }
    let date = name.len() >= 10
        && name.is_char_boundary(name.len() - 10)
        && chrono::NaiveDate::parse_from_str(&name[name.len() - 10..], "%Y-%m-%d").is_ok();
    if !date {
        why.push("does not end with its creation date (YYYY-MM-DD)".to_owned());
    }
    let parts = name.split('-').count();
    if date && parts < 5 {
        why.push("names no service between environment and date".to_owned());
    }
    (!why.is_empty()).then(|| why.join("; "))
}

fn lint_report(keys: &[Listed], format: ListFormat) -> anyhow::Result<String> {
    let found: Vec<(&Listed, String)> = keys
        .iter()
        .filter(|k| k.status != "deleted")
        .filter_map(|k| lint_name(k.name.as_deref()).map(|why| (k, why)))
        .collect();
    Ok(match format {
        ListFormat::Json => {
            let items: Vec<_> = found
                .iter()
                .map(|(k, why)| {
                    serde_json::json!({"source": k.source, "key_id": k.key_id,
                    "name": k.name, "problem": why})
                })
                .collect();
            serde_json::to_string_pretty(&items)? + "\n"
        }
        ListFormat::Table => {
            let mut o = format!(
                "{} of {} keys break the naming convention environment-service-date \
                 (e.g. prod-api-gateway-2026-04-25)\n",
                found.len(),
                keys.iter().filter(|k| k.status != "deleted").count()
            );
            for (k, why) in &found {
                let _ = writeln!(
                    o,
                    "{:<30} {:<24} {}",
                    cut(&k.key_id, 30),
                    cut(k.name.as_deref().unwrap_or("-"), 24),
                    why
                );
            }
            o
        }
    })
}

/// Who acts by hand: `cli:` and the login name, as far as the environment says.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("cli:{}", crate::text::clean(&user))
}

/// The key `args` names: exactly one stored key, or an error saying what to do.
async fn find_key(store: &Store, args: &KeyChangeArgs) -> Result<StoredKey, String> {
    let mut found: Vec<StoredKey> = store
        .keys_by_id(&args.key)
        .await
        .map_err(|e| format!("cannot read the inventory: {e}"))?
        .into_iter()
        .filter(|k| args.source.as_deref().is_none_or(|s| s == k.source))
        .collect();
    if found.len() == 1 {
        if let Some(k) = found.pop() {
            return Ok(k);
        }
    }
    match found.len() {
        0 => Err(format!(
            "unknown key {:?}{}: it is not in keywatch's inventory (keywatch keys lists it; a key \
             created since the last poll appears after the next one)",
            args.key,
            args.source
                .as_deref()
                .map(|s| format!(" in source {s:?}"))
                .unwrap_or_default()
        )),
        _ => Err(format!(
            "key {:?} is in several sources ({}): name one with --source",
            args.key,
            found
                .iter()
                .map(|k| k.source.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub async fn change(config: &Config, action: KeysAction) -> anyhow::Result<u8> {
    let (change, args, confirmed) = match action {
        KeysAction::Deactivate(a) => (KeyChange::Deactivate, a, true),
        KeysAction::Activate(a) => (KeyChange::Activate, a, true),
        KeysAction::Delete { change, yes } => (KeyChange::Delete, change, yes),
    };
    if !confirmed {
        eprintln!(
            "refused: deleting key {} cannot be undone (OpenAI keeps no deleted keys). Add --yes \
             to delete it.",
            args.key
        );
        return Ok(exit::FAILURE);
    }
    if change == KeyChange::Delete && args.source.is_none() {
        eprintln!(
            "refused: name the key's source with --source: a deletion cannot be undone, so \
             keywatch does not guess it"
        );
        return Ok(exit::FAILURE);
    }
    if args.reason.trim().is_empty() {
        eprintln!("refused: --reason is empty; say why, it is recorded with the action");
        return Ok(exit::FAILURE);
    }
    let store = Store::connect_existing(&config.storage).await?;
    let key = match find_key(&store, &args).await {
        Ok(k) => k,
        Err(e) => {
            store.close().await;
            eprintln!("{e}");
            return Ok(exit::FAILURE);
        }
    };
    let Some(source) = config.sources.iter().find(|s| s.name == key.source) else {
        store.close().await;
        eprintln!(
            "source {:?} of key {} is not in the config any more: keywatch has no admin key for it",
            key.source, key.key_id
        );
        return Ok(exit::FAILURE);
    };
    let client = crate::containment::client(source, &config.poll)
        .map_err(|e| anyhow::anyhow!("source {:?}: {e}", source.name))?;
    let order = Order {
        key: &key,
        change,
        by: operator(),
        reason: args.reason.clone(),
        alert_id: None,
        policy: None,
        dry_run: false,
    };
    let now = Utc::now().timestamp();
    let (outcome, id) = act(
        &store,
        Some(&client),
        &order,
        now,
        &CancellationToken::new(),
    )
    .await?;
    store.close().await;
    let name = key.name.as_deref().unwrap_or(&key.key_id);
    Ok(match outcome {
        Outcome::Done(answer) => {
            println!(
                "{} {} ({}) at {}: the provider answered {} (recorded as action {id})",
                past(change),
                crate::text::clean(name),
                crate::text::clean(&key.key_id),
                crate::text::clean(&key.source),
                crate::config::secret::redact(&answer)
            );
            if change == KeyChange::Deactivate {
                println!(
                    "undo: keywatch keys activate --key {} --source {} --reason \"…\"",
                    key.key_id, key.source
                );
            }
            exit::OK
        }
        Outcome::Failed(e) => {
            eprintln!(
                "{} {} ({}) at {} failed (recorded as action {id}):\n{}",
                change.as_str(),
                crate::text::clean(name),
                crate::text::clean(&key.key_id),
                crate::text::clean(&key.source),
                explain(&e)
            );
            if e.temporary() {
                exit::TEMPFAIL
            } else {
                exit::FAILURE
            }
        }
        Outcome::DryRun => exit::OK,
    })
}

fn past(change: KeyChange) -> &'static str {
    match change {
        KeyChange::Deactivate => "deactivated",
        KeyChange::Activate => "activated",
        KeyChange::Delete => "deleted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_linted_against_environment_service_date() {
        assert_eq!(lint_name(Some("prod-api-gateway-2026-04-25")), None);
        assert_eq!(lint_name(Some("dev-playground-2026-11-01")), None);
        assert!(lint_name(Some("my key")).unwrap().contains("environment"));
        assert!(lint_name(Some("prod-gateway")).unwrap().contains("date"));
        assert!(lint_name(Some("prod-2026-04-25"))
            .unwrap()
            .contains("service"));
        assert_eq!(lint_name(None).as_deref(), Some("no name"));
        assert!(
            lint_name(Some("prod-ü-2026-04-2ü")).is_some(),
            "no panic on multibyte"
        );
    }
}
