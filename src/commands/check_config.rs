//! `keywatch check-config`: the parsed configuration, summarised without any secret.

use std::fmt::Write as _;

use crate::config::{BudgetScope, Config, Notifier, TlsMode};
use crate::exit;
use crate::prices::PRICES_CHECKED;
use crate::store::Store;

pub async fn print(config: &Config) -> anyhow::Result<u8> {
    let mut out = summary(config);
    // Models already stored without a price (only when the database exists; never created here).
    if config.storage.sqlite_path().is_none_or(|p| p.exists()) {
        match Store::connect_existing(&config.storage).await {
            Ok(store) => {
                let unpriced = store.unpriced_models().await?;
                for m in &unpriced {
                    let model = crate::text::clean(&m.model);
                    let _ = writeln!(
                        out,
                        "unpriced  {} on {}: {} rows, {} tokens stored without a cost; add [prices.\"{}\"]",
                        model, m.source, m.rows, m.tokens, model
                    );
                }
                store.close().await;
            }
            Err(e) => {
                let e = crate::text::clean(&e.to_string()).into_owned();
                let _ = writeln!(out, "database  cannot be read: {e}");
            }
        }
    }
    for w in &config.warnings {
        let _ = writeln!(out, "warning   {w}");
    }
    print!("{out}");
    Ok(exit::OK)
}

/// A duration as the config writes it: `8d`, `2m`, `1h30m`, `90s`.
fn format_duration(d: std::time::Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

fn money(v: f64) -> String {
    format!("${v:.2}")
}

/// The summary lines, in config order.
pub fn summary(c: &Config) -> String {
    let mut o = String::new();
    let p = &c.poll;
    let _ = writeln!(o, "config    {}: ok", c.path.display());
    let _ = writeln!(o, "storage   {}", c.storage.describe());
    let _ = writeln!(
        o,
        "poll      every {}, {} buckets, lookback {}, settle {} (timeout {}, {} retries from {})",
        format_duration(p.interval.0),
        p.bucket_width.as_str(),
        format_duration(p.lookback.0),
        format_duration(p.settle.0),
        format_duration(p.timeout.0),
        p.retries,
        format_duration(p.retry_backoff.0)
    );
    if let Some(h) = &c.http {
        let auth = if h.token.is_some() {
            "bearer token required"
        } else {
            "no token"
        };
        let _ = writeln!(o, "http      {} ({auth})", h.listen);
    }
    for s in &c.sources {
        let _ = writeln!(
            o,
            "source    {}: {} at {}, admin key from {}",
            s.name,
            s.provider.as_str(),
            s.base_url,
            s.admin_key_origin
        );
    }
    let overrides = c.prices.overridden();
    let _ = writeln!(
        o,
        "prices    {} models (built-in table checked {PRICES_CHECKED}){}",
        c.prices.len(),
        if overrides.is_empty() {
            String::new()
        } else {
            format!("; from the config: {}", overrides.join(", "))
        }
    );
    let sp = &c.spike;
    let _ = writeln!(
        o,
        "spike     factor {}, window {}, quantile {}, seasonal {}, metric {}, floor {}",
        sp.factor,
        format_duration(sp.baseline_window.0),
        sp.baseline_quantile,
        sp.seasonal,
        match sp.metric {
            crate::detect::SpikeMetric::Cost => "cost",
            crate::detect::SpikeMetric::Tokens => "tokens",
        },
        sp.min_baseline
    );
    if c.poll.recent.is_some() {
        let windows: Vec<String> = sp
            .fast
            .windows
            .iter()
            .map(|w| format!("{}/{}", w.long, w.short))
            .collect();
        let _ = writeln!(
            o,
            "minutes   factor {}, windows {}, floor ${}/h, delay {}, resolve under {} x level for {}",
            sp.fast_factor(),
            windows.join(" "),
            sp.fast.min_usd_per_hour,
            sp.fast.delay,
            sp.fast.resolve_below,
            sp.fast.resolve_window
        );
    } else {
        let _ = writeln!(o, "minutes   off (the hourly check judges alone)");
    }
    let _ = writeln!(
        o,
        "rotation  keys older than {} days",
        c.rotation.max_key_age_days
    );
    for b in &c.budgets {
        let scope = match &b.scope {
            BudgetScope::Organisation => "the organisation".to_owned(),
            BudgetScope::Key(k) => format!("key {k}"),
            BudgetScope::KeyName(g) => format!("keys named {}", g.as_str()),
            BudgetScope::Workspace(w) => format!("workspace {w}"),
        };
        let limits: Vec<String> = [("daily", b.daily_usd), ("monthly", b.monthly_usd)]
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} {}", money(v))))
            .collect();
        let thresholds: Vec<String> = b.thresholds.iter().map(u32::to_string).collect();
        let scope = match &b.source {
            Some(source) => format!("{scope} on {source}"),
            None => scope,
        };
        let _ = writeln!(
            o,
            "budget    {}: {scope}, {}, alerts at {} %, {}",
            b.name,
            limits.join(", "),
            thresholds.join("/"),
            b.timezone
        );
    }
    for p in &c.containment {
        let scope = match &p.scope {
            BudgetScope::Organisation => "the organisation".to_owned(),
            BudgetScope::Key(k) => format!("key {k}"),
            BudgetScope::KeyName(g) => format!("keys named {}", g.as_str()),
            BudgetScope::Workspace(w) => format!("workspace {w}"),
        };
        let rules: Vec<&str> = p.rules.iter().map(|r| r.as_str()).collect();
        let action = match p.action {
            crate::config::PolicyAction::Deactivate => "DEACTIVATES the key at its provider",
            crate::config::PolicyAction::DryRun => "dry-run: records what it would do",
        };
        let _ = writeln!(
            o,
            "contain   {}: {scope}{}, when {} fires: {action}",
            p.name,
            p.source
                .as_deref()
                .map(|s| format!(" on {s}"))
                .unwrap_or_default(),
            rules.join(" or ")
        );
    }
    for n in &c.notifiers {
        match n {
            Notifier::Email(e) => {
                let tls = match e.tls {
                    TlsMode::None => "no TLS",
                    TlsMode::Starttls => "STARTTLS",
                    TlsMode::Tls => "TLS",
                };
                let auth = if e.password.is_some() {
                    ", with login"
                } else {
                    ""
                };
                let _ = writeln!(
                    o,
                    "notifier  {}: email via {}:{} ({tls}{auth}) from {} to {}, min {}",
                    e.name,
                    e.smtp_host,
                    e.smtp_port,
                    e.from,
                    e.to.join(", "),
                    e.min_severity.as_str()
                );
            }
            Notifier::Webhook(w) => {
                let signed = if w.secret.is_some() { ", signed" } else { "" };
                let _ = writeln!(
                    o,
                    "notifier  {}: webhook ({}) to {}{signed}, min {}",
                    w.name,
                    match w.format {
                        crate::config::WebhookFormat::Json => "json",
                        crate::config::WebhookFormat::Slack => "slack",
                        crate::config::WebhookFormat::Pagerduty => "pagerduty",
                        crate::config::WebhookFormat::Alertmanager => "alertmanager",
                    },
                    w.url_display,
                    w.min_severity.as_str()
                );
            }
        }
    }
    for d in &c.digests {
        let _ = writeln!(
            o,
            "digest    {}: {} at {} {} to {}",
            d.name,
            match d.schedule {
                crate::config::DigestSchedule::Daily => "daily",
                crate::config::DigestSchedule::Weekly => "weekly",
            },
            d.at.format("%H:%M"),
            d.timezone,
            d.notifiers.join(", ")
        );
    }
    o
}
