//! Step two: sense-check the parsed schema and resolve it into a [`Config`]. Every error names
//! the key it is about.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;

use super::schema::{BudgetSection, PollSection, RawConfig, SourceSection};
use super::secret::{pair, Env};
use super::{BucketWidth, Budget, BudgetScope, Config, ConfigError, Notifier, SourceConfig};
use crate::prices::{Price, PriceTable};

mod containment;
mod notifiers;

use notifiers::{build_digests, build_notifiers};

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn build(raw: RawConfig, path: &Path, base_dir: &Path, env: &dyn Env) -> Result<Config> {
    let mut warnings = Vec::new();
    let storage = super::storage::build(&raw.storage, base_dir, env)?;
    check_poll(&raw.poll, &mut warnings)?;
    if let Err((key, msg)) = raw.detect.spike.check() {
        return Err(ConfigError::invalid(format!("detect.spike.{key}"), msg));
    }
    if raw.poll.lookback.0 < raw.detect.spike.baseline_window.0 {
        warnings.push(format!(
            "poll.lookback ({}) is shorter than detect.spike.baseline_window ({}): spike \
             baselines will be thin until enough history has been polled",
            humantime::format_duration(raw.poll.lookback.0),
            humantime::format_duration(raw.detect.spike.baseline_window.0)
        ));
    }
    if !(1..=3650).contains(&raw.rotation.max_key_age_days) {
        return Err(ConfigError::invalid(
            "rotation.max_key_age_days",
            format!(
                "must be between 1 and 3650, got {}",
                raw.rotation.max_key_age_days
            ),
        ));
    }
    let http = raw
        .http
        .as_ref()
        .map(|h| super::http::build_http(h, base_dir, env))
        .transpose()?;
    let sources = build_sources(&raw.sources, base_dir, env)?;
    let mut prices = PriceTable::builtin();
    for (model, p) in &raw.prices {
        let key = format!("prices.{}", toml_key(model));
        let price = Price {
            input: p.input,
            output: p.output,
            cache_write_5m: p.cache_write_5m.unwrap_or(p.input * 1.25),
            cache_write_1h: p.cache_write_1h.unwrap_or(p.input * 2.0),
            cache_read: p.cache_read.unwrap_or(p.input * 0.1),
        };
        if let Some((field, value)) = price.invalid_field() {
            return Err(ConfigError::invalid(
                format!("{key}.{field}"),
                format!("must be a price in USD per million tokens, 0 or more; got {value}"),
            ));
        }
        prices.set(model, price);
    }
    let budgets = build_budgets(&raw.budgets, &sources)?;
    let mut notifiers = build_notifiers(&raw.notifiers, base_dir, env, &mut warnings)?;
    let timeout = raw.delivery.timeout.0;
    if !(1..=300).contains(&timeout.as_secs()) || timeout.subsec_nanos() != 0 {
        return Err(ConfigError::invalid(
            "delivery.timeout",
            "must be whole seconds from 1s to 5m",
        ));
    }
    for n in &mut notifiers {
        match n {
            Notifier::Email(e) => e.timeout = timeout,
            Notifier::Webhook(w) => w.timeout = timeout,
        }
    }
    let digests = build_digests(&raw.digests, &notifiers)?;
    let containment = containment::build(&raw.containment, &sources)?;
    let expire = raw.delivery.expire_after.0.as_secs();
    if !(60..=30 * 86_400).contains(&expire) {
        return Err(ConfigError::invalid(
            "delivery.expire_after",
            "must be between 1m and 30d",
        ));
    }
    if let super::Keep::For(kept) = raw.storage.retention.for_width(raw.poll.bucket_width) {
        let needed = raw.poll.lookback.0.max(raw.detect.spike.baseline_window.0);
        if kept < needed {
            return Err(ConfigError::invalid(
                format!("storage.retention.\"{}\"", raw.poll.bucket_width.as_str()),
                format!(
                    "keeps {} of usage, less than poll.lookback or detect.spike.baseline_window ({}) need",
                    humantime::format_duration(kept),
                    humantime::format_duration(needed)
                ),
            ));
        }
    }
    if matches!(raw.storage.retention.alerts, super::Keep::For(d) if d.as_secs() < 86_400) {
        return Err(ConfigError::invalid(
            "storage.retention.alerts",
            "must be at least 1d",
        ));
    }
    let mut poll = raw.poll;
    let mut retention = raw.storage.retention.clone();
    let fast = &raw.detect.spike.fast;
    if fast.enabled && poll.bucket_width == BucketWidth::Hour {
        poll.recent = Some(fast.lookback);
    }
    if retention.minute.is_none() && poll.bucket_width != BucketWidth::Minute {
        retention.minute = Some(super::Keep::For(std::time::Duration::from_secs(2 * 86_400)));
    }
    Ok(Config {
        path: path.to_path_buf(),
        storage,
        retention,
        poll,
        http,
        sources,
        prices,
        spike: raw.detect.spike,
        rotation: raw.rotation,
        budgets,
        notifiers,
        delivery: raw.delivery,
        digests,
        containment,
        warnings,
    })
}

/// Quotes a TOML key when it is not a bare key, as in `prices."claude-3.5"`.
fn toml_key(k: &str) -> String {
    if k.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

fn check_poll(poll: &PollSection, warnings: &mut Vec<String>) -> Result<()> {
    let secs = |d: super::HumanDuration| d.0.as_secs();
    if secs(poll.interval) < 10 || secs(poll.interval) > 3600 {
        return Err(ConfigError::invalid(
            "poll.interval",
            "must be between 10s and 1h: the providers' usage data changes every few minutes, \
             and a leak must be heard about within minutes",
        ));
    }
    if poll.timeout.0.as_millis() < 100 || secs(poll.timeout) > 600 {
        return Err(ConfigError::invalid(
            "poll.timeout",
            "must be between 100ms and 10m",
        ));
    }
    if poll.timeout.0 >= poll.interval.0 {
        warnings.push(
            "poll.timeout is not shorter than poll.interval: a slow provider delays every poll"
                .to_owned(),
        );
    }
    let width = poll.bucket_width.seconds() as u64;
    if secs(poll.lookback) < width || secs(poll.lookback) > 400 * 86_400 {
        return Err(ConfigError::invalid(
            "poll.lookback",
            format!(
                "must be between one bucket ({}) and 400d",
                poll.bucket_width.as_str()
            ),
        ));
    }
    if secs(poll.settle) > 86_400 {
        return Err(ConfigError::invalid("poll.settle", "must be 1d or less"));
    }
    if !(1..=512).contains(&poll.max_page_mib) {
        return Err(ConfigError::invalid(
            "poll.max_page_mib",
            format!("must be 1 to 512 (MiB), got {}", poll.max_page_mib),
        ));
    }
    if secs(poll.late_window) > 7 * 86_400 {
        return Err(ConfigError::invalid(
            "poll.late_window",
            "must be 7d or less (0s turns the re-read of late usage off)",
        ));
    }
    if poll.late_window.0 > Duration::ZERO
        && (poll.late_every.0 < poll.interval.0 || secs(poll.late_every) > 7 * 86_400)
    {
        return Err(ConfigError::invalid(
            "poll.late_every",
            "must be at least poll.interval and at most 7d",
        ));
    }
    if poll.retries > 10 {
        return Err(ConfigError::invalid(
            "poll.retries",
            format!("must be 10 or fewer, got {}", poll.retries),
        ));
    }
    if poll.retry_backoff.0.as_millis() < 10 || secs(poll.retry_backoff) > 300 {
        return Err(ConfigError::invalid(
            "poll.retry_backoff",
            "must be between 10ms and 5m",
        ));
    }
    Ok(())
}

/// Refuses control characters (CR/LF, ESC, …) in a value that reaches logs, tables, email
/// headers or the SMTP dialogue.
fn plain_text(key: &str, value: &str) -> Result<()> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(ConfigError::invalid(
            key,
            format!(
                "contains the control character {:?}; remove it (names and hosts are one plain line)",
                c
            ),
        )),
        None => Ok(()),
    }
}

fn check_name(key: &str, name: &str, seen: &mut HashSet<String>) -> Result<()> {
    if name.trim().is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    plain_text(key, name)?;
    if !seen.insert(name.to_owned()) {
        return Err(ConfigError::invalid(
            key,
            format!("{name:?} is used twice; names must be unique"),
        ));
    }
    Ok(())
}

fn build_sources(
    raw: &[SourceSection],
    base_dir: &Path,
    env: &dyn Env,
) -> Result<Vec<SourceConfig>> {
    if raw.is_empty() {
        return Err(ConfigError::invalid(
            "sources",
            "no [[sources]] configured: add one with name, provider and admin_key_env",
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let at = format!("sources[{i}]");
        check_name(&format!("{at}.name"), &s.name, &mut seen)?;
        let base = s
            .base_url
            .as_deref()
            .unwrap_or(s.provider.default_base_url());
        let base_url = reqwest::Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("{at}.base_url"),
                    format!("{base:?} is not an http(s) URL"),
                )
            })?;
        let secret = pair(s.admin_key_env.clone(), s.admin_key_file.clone());
        let admin_key = secret.resolve_required(&format!("{at}.admin_key"), base_dir, env)?;
        out.push(SourceConfig {
            name: s.name.clone(),
            provider: s.provider,
            admin_key,
            admin_key_origin: secret.describe(),
            base_url,
        });
    }
    Ok(out)
}

/// The scope `key_id`, `key_name` (a glob) or `workspace_id` of the table at `at` names: the
/// whole organisation when none is given, `None` when more than one is.
fn scope(
    at: &str,
    key_id: &Option<String>,
    key_name: &Option<String>,
    workspace_id: &Option<String>,
) -> Result<Option<BudgetScope>> {
    Ok(match (key_id, key_name, workspace_id) {
        (None, None, None) => Some(BudgetScope::Organisation),
        (Some(id), None, None) => Some(BudgetScope::Key(id.clone())),
        (None, Some(glob), None) => Some(BudgetScope::KeyName(glob::Pattern::new(glob).map_err(
            |e| {
                ConfigError::invalid(
                    format!("{at}.key_name"),
                    format!("{glob:?} is not a valid glob: {e}"),
                )
            },
        )?)),
        (None, None, Some(ws)) => Some(BudgetScope::Workspace(ws.clone())),
        _ => None,
    })
}

fn build_budgets(raw: &[BudgetSection], sources: &[SourceConfig]) -> Result<Vec<Budget>> {
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, b)| {
            let at = format!("budgets[{i}]");
            check_name(&format!("{at}.name"), &b.name, &mut seen)?;
            let scope = match scope(&at, &b.key_id, &b.key_name, &b.workspace_id)? {
                Some(scope) => scope,
                None => {
                    return Err(ConfigError::invalid(
                        &at,
                        "give at most one scope: key_id, key_name or workspace_id (none = the \
                         whole organisation)",
                    ))
                }
            };
            if b.daily_usd.is_none() && b.monthly_usd.is_none() {
                return Err(ConfigError::invalid(
                    &at,
                    "give daily_usd, monthly_usd or both",
                ));
            }
            for (key, v) in [("daily_usd", b.daily_usd), ("monthly_usd", b.monthly_usd)] {
                if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                    return Err(ConfigError::invalid(
                        format!("{at}.{key}"),
                        format!("must be an amount in USD above 0, got {v}"),
                    ));
                }
            }
            let mut thresholds = b.thresholds.clone();
            thresholds.sort_unstable();
            thresholds.dedup();
            if thresholds.is_empty()
                || thresholds.len() != b.thresholds.len()
                || thresholds.iter().any(|t| !(1..=1000).contains(t))
            {
                return Err(ConfigError::invalid(
                    format!("{at}.thresholds"),
                    "must be distinct percentages between 1 and 1000, e.g. [50, 75, 90, 100]",
                ));
            }
            if let Some(source) = &b.source {
                if !sources.iter().any(|s| &s.name == source) {
                    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
                    return Err(ConfigError::invalid(
                        format!("{at}.source"),
                        format!("no source named {source:?} (sources: {})", names.join(", ")),
                    ));
                }
            }
            let timezone: Tz = b.timezone.parse().map_err(|_| {
                ConfigError::invalid(
                    format!("{at}.timezone"),
                    format!(
                        "unknown time zone {:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"",
                        b.timezone
                    ),
                )
            })?;
            Ok(Budget {
                name: b.name.clone(),
                source: b.source.clone(),
                scope,
                daily_usd: b.daily_usd,
                monthly_usd: b.monthly_usd,
                thresholds,
                timezone,
            })
        })
        .collect()
}
