//! Alerts: the verdicts of `detect` turned into alert state (firing, resolved) with stable ids,
//! and the alert object of docs/contract.md.

mod evaluate;
pub mod forecast;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

pub use evaluate::{evaluate, EvalReport};

use crate::config::Severity;

/// The rules that raise alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Spike,
    Budget,
    BudgetForecast,
    KeyAge,
    InactiveKeyUsage,
    SourceUnhealthy,
    UnpricedUsage,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::Spike,
        Rule::Budget,
        Rule::BudgetForecast,
        Rule::KeyAge,
        Rule::InactiveKeyUsage,
        Rule::SourceUnhealthy,
        Rule::UnpricedUsage,
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
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
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

/// A key's series as a dense vector from bucket `from` to `to` inclusive (idle buckets 0), for
/// the pure rules.
pub fn dense_values(points: &[(i64, f64)], from: i64, to: i64, width: i64) -> Vec<f64> {
    let n = if to >= from {
        ((to - from) / width + 1) as usize
    } else {
        0
    };
    let mut values = vec![0.0; n];
    for &(start, value) in points {
        if (from..=to).contains(&start) {
            values[((start - from) / width) as usize] = value;
        }
    }
    values
}

pub fn rfc3339(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl Alert {
    /// The alert object of docs/contract.md (version 1). Amounts in USD are rounded to 6 decimals
    /// (no float noise such as `11.969100000000001`); the summary never carries a configured
    /// secret.
    pub fn to_json(&self) -> Value {
        let money = |v: Option<f64>| match self.unit.as_str() {
            "usd" => v.map(crate::text::usd),
            _ => v,
        };
        json!({
            "version": 1,
            "id": self.id,
            "status": self.status.as_str(),
            "rule": self.rule.as_str(),
            "severity": self.severity.as_str(),
            "source": self.source,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "budget": self.budget,
            "summary": crate::config::secret::redact(&self.summary),
            "observed": money(self.observed),
            "baseline": money(self.baseline),
            "threshold": self.threshold,
            "unit": self.unit,
            "period": self.period.map(|(s, e)| format!("{}/{}", rfc3339(s), rfc3339(e))),
            "starts_at": rfc3339(self.starts_at),
            "ends_at": self.ends_at.map(rfc3339),
        })
    }
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
