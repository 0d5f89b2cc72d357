//! `keywatch export`: an evidence folder about one key for an incident ticket or the provider's
//! support — inventory record, usage at the finest stored resolution, alerts, a summary — with
//! a `SHA256SUMS` file that `sha256sum -c SHA256SUMS` verifies. Never a secret: keywatch holds
//! none of the key's value, only the provider's redacted hint.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use sha2::{Digest, Sha256};

use super::history::{csv, time, Evidence};
use crate::alerts::Alert;
use crate::cli::TimeArg;
use crate::config::Config;
use crate::exit;
use crate::store::{HistoryRow, Store};

pub async fn run(
    config: &Config,
    key: &str,
    source: Option<&str>,
    since: TimeArg,
    until: Option<TimeArg>,
    out: &Path,
) -> anyhow::Result<u8> {
    let (since, until) = crate::window::range(since, until, Utc::now())
        .map_err(|e| anyhow::anyhow!("--since/--until: {e}"))?;
    if out.exists()
        && out
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!(
            "{} exists and is not empty: evidence is never overwritten; choose a new --out",
            out.display()
        );
    }
    let store = Store::connect_existing(&config.storage).await?;
    let Evidence { keys, rows, billed } =
        Evidence::read(&store, config, key, source, since, until).await?;
    let alerts: Vec<Alert> = store
        .alerts(true)
        .await?
        .into_iter()
        .filter(|a| {
            a.key_id.as_deref() == Some(key)
                && source.is_none_or(|s| a.source.as_deref() == Some(s))
        })
        .collect();
    let actions = store.actions_for_key(key, source).await?;
    store.close().await;
    if keys.is_empty() && rows.is_empty() {
        eprintln!("keywatch: no key {key:?} in the store (check the id)");
        return Ok(exit::FAILURE);
    }

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let inventory: Vec<serde_json::Value> = keys
        .iter()
        .filter(|k| source.is_none_or(|s| k.source == s))
        .map(|k| {
            serde_json::json!({
                "source": k.source, "key_id": k.key_id, "name": k.name, "status": k.status,
                "created_at": k.created_at.map(time), "workspace_id": k.workspace_id,
                "partial_key_hint": k.partial_key_hint, "first_seen": time(k.first_seen),
                "last_seen": time(k.last_seen), "listed_by_provider": k.in_inventory,
                "status_changed_at": k.status_changed_at.map(time),
            })
        })
        .collect();
    let files = [
        ("key.json", serde_json::to_string_pretty(&inventory)? + "\n"),
        ("usage.csv", csv(key, &rows, &billed)),
        (
            "alerts.json",
            serde_json::to_string_pretty(&alerts.iter().map(Alert::wire).collect::<Vec<_>>())?
                + "\n",
        ),
        ("actions.json", actions_json(&actions)? + "\n"),
        (
            "summary.txt",
            summary(
                config,
                key,
                &rows,
                &alerts,
                since.timestamp(),
                until.timestamp(),
            ) + &timeline(&actions),
        ),
    ];
    let mut sums = String::new();
    for (name, content) in &files {
        std::fs::write(out.join(name), content).with_context(|| format!("writing {name}"))?;
        let _ = writeln!(sums, "{:x}  {name}", Sha256::digest(content.as_bytes()));
    }
    std::fs::write(out.join("SHA256SUMS"), &sums)?;
    println!(
        "evidence for {key} written to {}: key.json, usage.csv ({} rows), alerts.json ({}), actions.json ({}), summary.txt, SHA256SUMS\nverify with: (cd {} && sha256sum -c SHA256SUMS)",
        out.display(),
        rows.len(),
        alerts.len(),
        actions.len(),
        out.display()
    );
    Ok(exit::OK)
}

/// Every change made to the key at its provider (by hand or by policy, dry runs too).
fn actions_json(actions: &[crate::store::KeyAction]) -> anyhow::Result<String> {
    let items: Vec<serde_json::Value> = actions
        .iter()
        .map(|a| {
            serde_json::json!({
                "at": time(a.at), "source": a.source, "key_id": a.key_id, "action": a.action,
                "result": a.result, "by": a.by, "reason": a.reason, "alert_id": a.alert_id,
                "policy": a.policy, "answer": a.answer,
            })
        })
        .collect();
    Ok(serde_json::to_string_pretty(&items)?)
}

/// The containment timeline: one line per action, oldest first.
fn timeline(actions: &[crate::store::KeyAction]) -> String {
    let mut o = format!("actions:       {}\n", actions.len());
    for a in actions {
        let _ = writeln!(
            o,
            "  {} {} {} by {}: {}",
            time(a.at),
            a.action,
            a.result,
            crate::text::clean(&a.by),
            crate::text::clean(&a.reason)
                .chars()
                .take(120)
                .collect::<String>()
        );
    }
    o
}

/// First and last use, the peak bucket, total cost, and the peak against the key's busy level.
fn summary(
    config: &Config,
    key: &str,
    rows: &[HistoryRow],
    alerts: &[Alert],
    since: i64,
    until: i64,
) -> String {
    let mut o = format!(
        "keywatch evidence for key {key}\nwindow: {} to {} (UTC)\ngenerated: {}\n\n",
        time(since),
        time(until),
        time(Utc::now().timestamp())
    );
    let used: Vec<&HistoryRow> = rows.iter().filter(|r| r.tokens.total() > 0).collect();
    let (Some(first), Some(last)) = (used.first(), used.last()) else {
        o.push_str("no usage stored in this window\n");
        return o;
    };
    // Per bucket (several models add up).
    let mut buckets: Vec<(i64, f64, i64)> = Vec::new();
    for r in rows {
        match buckets.last_mut() {
            Some(b) if b.0 == r.bucket_start => {
                b.1 += r.cost_usd.unwrap_or(0.0);
                b.2 += r.tokens.total();
            }
            _ => buckets.push((r.bucket_start, r.cost_usd.unwrap_or(0.0), r.tokens.total())),
        }
    }
    let total: f64 = buckets.iter().map(|b| b.1).sum();
    // Peak and level in the unit the spike rule judges (`metric`), against its floor in it.
    let by_tokens = config.spike.metric == crate::detect::SpikeMetric::Tokens;
    let metric = |b: &(i64, f64, i64)| if by_tokens { b.2 as f64 } else { b.1 };
    let peak =
        buckets.iter().copied().fold(
            (0, 0.0, 0),
            |a, b| {
                if metric(&b) > metric(&a) {
                    b
                } else {
                    a
                }
            },
        );
    let width = config.poll.bucket_width.seconds();
    let points: Vec<(i64, f64)> = buckets.iter().map(|b| (b.0, metric(b))).collect();
    let from = since.div_euclid(width) * width;
    let values =
        crate::alerts::dense_values(&points, from, buckets.last().map_or(from, |b| b.0), width);
    let baseline = crate::detect::spike::baseline(&config.spike, width, &values, until - since);
    let _ = writeln!(o, "first use:     {}", time(first.bucket_start));
    let _ = writeln!(
        o,
        "last use:      {}",
        time(last.bucket_start + last.bucket_width)
    );
    // Tokens on models without a price are not in the dollars: then the total is a floor.
    let unpriced: i64 = rows
        .iter()
        .filter(|r| r.cost_usd.is_none())
        .fold(0i64, |a, r| a.saturating_add(r.tokens.total()));
    if unpriced > 0 {
        let models: std::collections::BTreeSet<&str> = rows
            .iter()
            .filter(|r| r.cost_usd.is_none())
            .map(|r| r.model.as_str())
            .collect();
        let models: Vec<String> = models
            .into_iter()
            .map(|m| crate::text::clean(m).into_owned())
            .collect();
        let _ = writeln!(
            o,
            "total cost:    at least ${total:.4} (estimated from list prices; {unpriced} tokens \
             on {} have no price and are not counted)",
            models.join(", ")
        );
    } else {
        let _ = writeln!(o, "total cost:    ${total:.4} (estimated from list prices)");
    }
    let _ = writeln!(
        o,
        "peak bucket:   {} — ${:.4}, {} tokens",
        time(peak.0),
        peak.1,
        peak.2
    );
    let level = if by_tokens {
        format!("{:.0} tokens", baseline.value)
    } else {
        format!("${:.4}", baseline.value)
    };
    let _ = writeln!(
        o,
        "busy level:    {level} per bucket ({} quantile over the window)",
        config.spike.baseline_quantile
    );
    let _ = writeln!(o, "peak / level:  {:.1}x", metric(&peak) / baseline.value);
    let _ = writeln!(o, "alerts:        {}", alerts.len());
    for a in alerts {
        let _ = writeln!(
            o,
            "  {} {} {} {}",
            time(a.starts_at),
            a.status.as_str(),
            a.rule.as_str(),
            a.id
        );
    }
    o
}
