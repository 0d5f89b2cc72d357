//! The shared vocabulary every layer speaks: alert, rule, status, severity and durations. A leaf:
//! it imports nothing from the crate, so dependencies point one way.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// A humantime duration such as `"90s"`, `"5m"` or `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// The longest duration any key accepts (3650 days): longer ones overflow the calendar
/// arithmetic they feed and mean nothing for a monitor. Each key has its own, tighter range.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

pub(crate) fn parse_bounded(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d > MAX_DURATION {
        return Err("longer than the 3650d any duration may be".to_owned());
    }
    Ok(d)
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_bounded(&text).map(HumanDuration).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"90s\", \"5m\", \"1h\" or \"7d\""
            ))
        })
    }
}

/// Stored as its [`Severity::as_str`] name (`sqlx::Type`: TEXT in SQLite).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize, Serialize, sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The rules that raise alerts. Stored as its [`Rule::as_str`] name (`sqlx::Type`: TEXT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Rule {
    Spike,
    Budget,
    BudgetForecast,
    KeyAge,
    InactiveKeyUsage,
    SourceUnhealthy,
    UnpricedUsage,
    RotationStalled,
}

impl Rule {
    pub const ALL: [Rule; 8] = [
        Rule::Spike,
        Rule::Budget,
        Rule::BudgetForecast,
        Rule::KeyAge,
        Rule::InactiveKeyUsage,
        Rule::SourceUnhealthy,
        Rule::UnpricedUsage,
        Rule::RotationStalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spike => "spike",
            Self::Budget => "budget",
            Self::BudgetForecast => "budget_forecast",
            Self::KeyAge => "key_age",
            Self::InactiveKeyUsage => "inactive_key_usage",
            Self::SourceUnhealthy => "source_unhealthy",
            Self::UnpricedUsage => "unpriced_usage",
            Self::RotationStalled => "rotation_stalled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Stored as its [`AlertStatus::as_str`] name (`sqlx::Type`: TEXT in SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum AlertStatus {
    #[default]
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert: a condition episode with its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Stable: [`alert_id`] of the rule, scope and episode.
    pub id: String,
    /// What open alerts are matched by, e.g. `spike/anthropic-prod/apikey_01…`.
    pub scope: String,
    pub rule: Rule,
    pub severity: Severity,
    pub status: AlertStatus,
    pub source: Option<String>,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub budget: Option<String>,
    pub summary: String,
    pub observed: Option<f64>,
    pub baseline: Option<f64>,
    pub threshold: Option<f64>,
    /// `usd`, `tokens`, `days`, `percent` or `seconds`.
    pub unit: String,
    /// The bucket or budget period the numbers are about (Unix seconds, end exclusive).
    pub period: Option<(i64, i64)>,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    /// What keywatch did to the key in answer (containment), oldest first.
    pub actions: Vec<ActionObject>,
}

/// One change keywatch made (or, dry-run, would have made) to a key in answer to an alert, as
/// the alert object's `actions` shows it. Fields in alphabetical order, like the object's.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ActionObject {
    /// `deactivate`, `activate` or `delete`.
    pub action: String,
    /// RFC 3339 UTC.
    pub at: String,
    /// `policy:NAME` or `cli:USER`.
    pub by: String,
    pub reason: String,
    /// `done`, `failed` or `dry-run`.
    pub result: String,
}

impl Alert {
    /// A firing alert of `rule` about `scope` in its `episode`, from `starts_at`, with no
    /// numbers yet: each rule fills in what it knows.
    pub fn firing(
        rule: Rule,
        scope: String,
        episode: &str,
        severity: Severity,
        starts_at: i64,
    ) -> Self {
        Self {
            id: alert_id(rule, &scope, episode),
            scope,
            rule,
            severity,
            status: AlertStatus::Firing,
            source: None,
            key_id: None,
            key_name: None,
            budget: None,
            summary: String::new(),
            observed: None,
            baseline: None,
            threshold: None,
            unit: String::new(),
            period: None,
            starts_at,
            ends_at: None,
            actions: Vec::new(),
        }
    }
}

/// The alert object of docs/contract.md (version 1), as written to `alerts --format json`, the
/// API, the outbox and json webhooks, and as read back by messages. Built from an [`Alert`] by
/// `Alert::wire` (money rounded, summary redacted).
///
/// The fields are declared in alphabetical order on purpose: the object has always been written
/// with its keys sorted, and receivers may have pinned the bytes (signatures cover them).
/// Reading is lenient, as a stored payload is read back by a later version: unknown fields are
/// ignored and missing ones take their defaults.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AlertObject {
    /// Containment actions taken in answer, oldest first (`[]` when none).
    pub actions: Vec<ActionObject>,
    pub baseline: Option<f64>,
    pub budget: Option<String>,
    /// RFC 3339 UTC.
    pub ends_at: Option<String>,
    pub id: String,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub observed: Option<f64>,
    /// `start/end` in RFC 3339 UTC, end exclusive.
    pub period: Option<String>,
    /// A [`Rule`] name, or `test` for the test alert of `test-notify`.
    pub rule: String,
    pub severity: Severity,
    pub source: Option<String>,
    /// RFC 3339 UTC.
    pub starts_at: String,
    pub status: AlertStatus,
    pub summary: String,
    pub threshold: Option<f64>,
    /// `usd`, `tokens`, `days`, `seconds`, or `none` for the test alert.
    pub unit: String,
    pub version: u8,
}

impl AlertObject {
    /// The object as JSON text, e.g. an outbox payload.
    pub fn to_json_string(&self) -> String {
        // Cannot fail: the object holds only strings, numbers and options of them.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Replaces every text field `t` with `f(t)`, e.g. to make them safe to show.
    pub fn map_texts(&mut self, f: impl Fn(&str) -> String) {
        let required = [
            &mut self.id,
            &mut self.rule,
            &mut self.starts_at,
            &mut self.summary,
            &mut self.unit,
        ];
        let optional = [
            &mut self.budget,
            &mut self.ends_at,
            &mut self.key_id,
            &mut self.key_name,
            &mut self.period,
            &mut self.source,
        ];
        for text in required.into_iter().chain(optional.into_iter().flatten()) {
            *text = f(text);
        }
        for a in &mut self.actions {
            for text in [&mut a.action, &mut a.by, &mut a.reason, &mut a.result] {
                *text = f(text);
            }
        }
    }
}

/// A stable alert id: the same rule, scope and episode always give the same id.
pub fn alert_id(rule: Rule, scope: &str, episode: &str) -> String {
    format!("kw_{:016x}", stable_hash(&[rule.as_str(), scope, episode]))
}

/// FNV-1a 64 over the parts (each followed by a 0 byte), written out here so ids never change
/// with a library or compiler version.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.bytes().chain([0])) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = alert_id(Rule::Spike, "spike/src/k", "1800000000");
        assert_eq!(a, alert_id(Rule::Spike, "spike/src/k", "1800000000"));
        assert_ne!(a, alert_id(Rule::Spike, "spike/src/k", "1800003600"));
        assert_ne!(a, alert_id(Rule::KeyAge, "spike/src/k", "1800000000"));
        assert_eq!(a.len(), 19);
    }
}
