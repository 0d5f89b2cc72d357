//! Alerts: the verdicts of `detect` turned into alert state (firing, resolved) with stable ids,
//! and the alert object of docs/contract.md.

mod evaluate;
pub mod rules;
mod series_cache;

pub use evaluate::{evaluate, Detector, EvalReport};
pub use series_cache::Refresh;

pub use crate::model::{alert_id, stable_hash, Alert, AlertObject, AlertStatus, Rule};

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

pub use crate::text::rfc3339;

impl Alert {
    /// The alert object of docs/contract.md (version 1). Amounts in USD are rounded to 6 decimals
    /// (no float noise such as `11.969100000000001`); the summary never carries a configured
    /// secret.
    pub fn wire(&self) -> AlertObject {
        let money = |v: Option<f64>| match self.unit.as_str() {
            "usd" => v.map(crate::text::usd),
            _ => v,
        };
        AlertObject {
            version: 1,
            id: self.id.clone(),
            status: self.status,
            rule: self.rule.as_str().to_owned(),
            severity: self.severity,
            source: self.source.clone(),
            key_id: self.key_id.clone(),
            key_name: self.key_name.clone(),
            budget: self.budget.clone(),
            summary: crate::config::secret::redact(&self.summary).into_owned(),
            observed: money(self.observed),
            baseline: money(self.baseline),
            threshold: self.threshold,
            unit: self.unit.clone(),
            period: self
                .period
                .map(|(s, e)| format!("{}/{}", rfc3339(s), rfc3339(e))),
            starts_at: rfc3339(self.starts_at),
            ends_at: self.ends_at.map(rfc3339),
            actions: self.actions.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    fn spike() -> Alert {
        Alert {
            id: alert_id(Rule::Spike, "spike/anthropic-prod/apikey_01", "1800000000"),
            scope: "spike/anthropic-prod/apikey_01".to_owned(),
            rule: Rule::Spike,
            severity: Severity::Critical,
            status: AlertStatus::Firing,
            source: Some("anthropic-prod".to_owned()),
            key_id: Some("apikey_01".to_owned()),
            key_name: Some("prod-rag-service".to_owned()),
            budget: None,
            summary: "prod-rag-service used $7.41 with sk-wire-test-secret-0123 in it".to_owned(),
            observed: Some(11.969100000000001),
            baseline: Some(0.49000000000000005),
            threshold: Some(10.000000000000002),
            unit: "usd".to_owned(),
            period: Some((1_800_000_000, 1_800_003_600)),
            starts_at: 1_800_000_000,
            ends_at: None,
            actions: Vec::new(),
        }
    }

    fn remember_secret() {
        let env = std::collections::HashMap::from([(
            "KW_WIRE_TEST".to_owned(),
            "sk-wire-test-secret-0123".to_owned(),
        )]);
        crate::config::secret::pair(Some("KW_WIRE_TEST".to_owned()), None)
            .resolve("x.admin_key", std::path::Path::new("/"), &env)
            .unwrap();
    }

    const SPIKE: &str = r#"{"actions":[],"baseline":0.49,"budget":null,"ends_at":null,"id":"kw_07cebd19cd2443ad","key_id":"apikey_01","key_name":"prod-rag-service","observed":11.9691,"period":"2027-01-15T08:00:00Z/2027-01-15T09:00:00Z","rule":"spike","severity":"critical","source":"anthropic-prod","starts_at":"2027-01-15T08:00:00Z","status":"firing","summary":"prod-rag-service used $7.41 with [REDACTED] in it","threshold":10.000000000000002,"unit":"usd","version":1}"#;

    #[test]
    fn a_spike_alert_is_written_as_it_always_was_with_its_actions() {
        remember_secret();
        assert_eq!(spike().wire().to_json_string(), SPIKE);
        let pretty = serde_json::to_string_pretty(&[spike().wire()]).unwrap();
        let lines: Vec<&str> = pretty.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "[",
                "  {",
                "    \"actions\": [],",
                "    \"baseline\": 0.49,"
            ]
        );
        assert_eq!(lines[lines.len() - 3..], ["    \"version\": 1", "  }", "]"]);
    }

    #[test]
    fn money_is_rounded_only_in_usd_and_the_summary_redacted() {
        remember_secret();
        let mut tokens = spike();
        tokens.unit = "tokens".to_owned();
        tokens.status = AlertStatus::Resolved;
        tokens.ends_at = Some(1_800_007_200);
        assert_eq!(
            tokens.wire().to_json_string(),
            r#"{"actions":[],"baseline":0.49000000000000005,"budget":null,"ends_at":"2027-01-15T10:00:00Z","id":"kw_07cebd19cd2443ad","key_id":"apikey_01","key_name":"prod-rag-service","observed":11.969100000000001,"period":"2027-01-15T08:00:00Z/2027-01-15T09:00:00Z","rule":"spike","severity":"critical","source":"anthropic-prod","starts_at":"2027-01-15T08:00:00Z","status":"resolved","summary":"prod-rag-service used $7.41 with [REDACTED] in it","threshold":10.000000000000002,"unit":"tokens","version":1}"#
        );
        let usd = spike().wire();
        assert_eq!((usd.observed, usd.baseline), (Some(11.9691), Some(0.49)));
        assert!(!usd.summary.contains("sk-wire-test"), "{}", usd.summary);
    }

    #[test]
    fn the_object_reads_back_with_the_same_fields() {
        remember_secret();
        let written = spike().wire();
        let read: AlertObject = serde_json::from_str(&written.to_json_string()).unwrap();
        assert_eq!(read, written);
        assert_eq!(read.severity, Severity::Critical);
        assert_eq!(read.status, AlertStatus::Firing);
        assert_eq!(read.rule, "spike");
    }

    #[test]
    fn unknown_fields_are_accepted_and_missing_ones_defaulted() {
        let with_more = SPIKE.replacen('{', r#"{"runbook":"https://example.com","tags":[1,2],"#, 1);
        let read: AlertObject = serde_json::from_str(&with_more).unwrap();
        assert_eq!(read, serde_json::from_str::<AlertObject>(SPIKE).unwrap());
        let sparse: AlertObject =
            serde_json::from_str(r#"{"id":"kw_1","rule":"key_age"}"#).unwrap();
        assert_eq!(
            (sparse.status, sparse.severity),
            (AlertStatus::Firing, Severity::Info)
        );
        assert_eq!((sparse.observed, sparse.period), (None, None));
    }
}
