//! Alerts: the verdicts of `detect` turned into alert state (firing, resolved) with stable ids,
//! and the alert object of docs/contract.md.

mod evaluate;
pub mod forecast;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

pub use evaluate::{evaluate, EvalReport};

pub use crate::model::{alert_id, stable_hash, Alert, AlertStatus, Rule};

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
