//! `format = "alertmanager"`: alerts posted to `/api/v2/alerts` of every configured
//! Alertmanager, as the array of `{labels, annotations, startsAt, endsAt, generatorURL}` it
//! takes.
//!
//! A firing alert is posted valid for four times `resend_every` and posted again every
//! `resend_every` while it fires ([`Outbox::resend_due`]), as Prometheus does: Alertmanager keeps
//! it as long as keywatch says so, and ends it on its own if keywatch stops (the dead-man rules
//! in `contrib/prometheus` page for that). A resolve posts `endsAt`. When an alert's labels
//! change while it fires (a budget's next threshold, a higher severity), the label sets posted
//! before are ended in the same request, so Alertmanager holds one alert per keywatch alert.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::message::AlertView;
use super::{webhook, NotifyError, Outbox};
use crate::config::{AlertmanagerOptions, Notifier, WebhookFormat, WebhookNotifier};
use crate::store::{Store, StoreError};

/// The label set of an alert: its identity in Alertmanager. Empty values are left out, as
/// Alertmanager treats them as absent.
pub fn labels(view: &AlertView) -> BTreeMap<&'static str, String> {
    let a = &view.alert;
    let mut labels = BTreeMap::from([
        ("alertname", a.rule.clone()),
        ("severity", a.severity.as_str().to_owned()),
        ("keywatch_id", a.id.clone()),
    ]);
    for (name, value) in [
        ("source", &a.source),
        ("key_id", &a.key_id),
        ("key_name", &a.key_name),
        ("budget", &a.budget),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            labels.insert(name, v.to_owned());
        }
    }
    if a.rule == "budget" {
        if let Some(t) = a.threshold {
            labels.insert("threshold", format!("{t:.0}"));
        }
    }
    labels
}

/// One alert as Alertmanager's API v2 takes it, valid until `ends_at` (RFC 3339).
fn postable(view: &AlertView, options: &AlertmanagerOptions, ends_at: &str, now: i64) -> Value {
    let mut annotations = BTreeMap::from([
        ("summary", view.alert.summary.clone()),
        ("description", description(view)),
    ]);
    if let Some(runbook) = &options.runbook_url {
        annotations.insert("runbook_url", runbook.replace("{rule}", view.rule()));
    }
    let mut alert = json!({
        "labels": labels(view),
        "annotations": annotations,
        "startsAt": not_after(&view.alert.starts_at, now),
        "endsAt": ends_at,
    });
    if let Some(link) = &view.link {
        alert["generatorURL"] = link.as_str().into();
    }
    alert
}

/// `ts` (RFC 3339), or `now` when it is later: Alertmanager refuses an alert that starts after
/// it ends (a start dated by a clock that was ahead).
fn not_after(ts: &str, now: i64) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) if t.timestamp() > now => at(now),
        _ => ts.to_owned(),
    }
}

/// The numbers and what to do, for the `description` annotation.
fn description(view: &AlertView) -> String {
    match view.numbers() {
        Some(n) => format!("{n}. What to do: {}", view.advice()),
        None => format!("What to do: {}", view.advice()),
    }
}

/// RFC 3339 of Unix seconds `ts`.
fn at(ts: i64) -> String {
    crate::alerts::rfc3339(ts)
}

/// The request body for `current` (firing or resolved) at `now`, ending every label set of
/// `earlier` (what was posted for the same alert before) that differs from the current one.
pub fn body(
    current: &AlertView,
    earlier: &[AlertView],
    options: &AlertmanagerOptions,
    now: i64,
) -> Value {
    let ends = if current.resolved() {
        // Never later than now: Alertmanager keeps an alert whose end is ahead active.
        let ended = current
            .alert
            .ends_at
            .as_deref()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .map_or(now, |e| e.timestamp().min(now));
        at(ended)
    } else {
        at(now + valid_for(options.resend_every))
    };
    let mut posted = vec![labels(current)];
    let mut alerts = vec![postable(current, options, &ends, now)];
    for old in earlier {
        let l = labels(old);
        if !posted.contains(&l) {
            alerts.push(postable(old, options, &at(now), now));
            posted.push(l);
        }
    }
    Value::Array(alerts)
}

/// How long (seconds) a firing alert posted now stays valid: four resends, as Prometheus does.
fn valid_for(resend_every: Duration) -> i64 {
    4 * resend_every.as_secs().max(1) as i64
}

/// POSTs `body` to every Alertmanager of the notifier at once (a member that is down costs one
/// timeout, not one per member). Delivered when one accepts it; the failures of the rest are
/// logged. Members of a cluster share silences and what they notified, not alerts: a member
/// that missed a post has the alert from the next resend, and ends an alert it missed the end
/// of when its `endsAt` passes.
pub async fn post(
    client: &reqwest::Client,
    hook: &WebhookNotifier,
    options: &AlertmanagerOptions,
    id: &str,
    body: &str,
    now: i64,
) -> Result<String, NotifyError> {
    let posts = options.urls.iter().map(|base| async move {
        let url = format!("{}/api/v2/alerts", base.expose_secret());
        webhook::post_to(client, &url, hook, id, body, now).await
    });
    let (mut accepted, mut failed) = (Vec::new(), Vec::new());
    for result in futures_util::future::join_all(posts).await {
        match result {
            Ok(answer) => accepted.push(answer),
            Err(e) => failed.push(e),
        }
    }
    let total = options.urls.len();
    match (accepted.first(), failed.into_iter().next()) {
        (Some(answer), None) => Ok(answer.clone()),
        (Some(answer), Some(e)) => {
            tracing::warn!(notifier = %hook.name, error = %e,
                "an Alertmanager of the notifier did not take the alerts; the others did");
            Ok(format!(
                "{answer} from {} of {total} Alertmanagers",
                accepted.len()
            ))
        }
        (None, Some(e)) => Err(e),
        (None, None) => Err(NotifyError::Config(
            "no Alertmanager URL is configured".to_owned(),
        )),
    }
}

impl Outbox {
    /// Posts every firing alert again to each `alertmanager` notifier whose `resend_every` has
    /// passed since its last resend (at once after a start): the alerts at or above its
    /// `min_severity`, silenced ones only if it was told of them before. A failure is logged;
    /// the next resend tries again.
    pub(super) async fn resend_due(&self, store: &Store, now: i64) -> Result<(), StoreError> {
        let hooks: Vec<(&WebhookNotifier, &AlertmanagerOptions)> = self
            .config
            .notifiers
            .iter()
            .filter_map(|n| match n {
                Notifier::Webhook(h) if h.format == WebhookFormat::Alertmanager => {
                    h.alertmanager.as_ref().map(|o| (h, o))
                }
                _ => None,
            })
            .collect();
        // (alert, silenced) for every firing alert, read once for all notifiers.
        let mut firing: Option<Vec<(crate::model::Alert, bool)>> = None;
        for (hook, options) in hooks {
            // On the monotonic clock: a wall clock stepped back must not stop the resends.
            let due = {
                let last = self.resent.lock().unwrap_or_else(|e| e.into_inner());
                last.get(&hook.name)
                    .is_none_or(|t| t.elapsed() >= options.resend_every)
            };
            if !due {
                continue;
            }
            if firing.is_none() {
                let mut open = Vec::new();
                for a in store.alerts(false).await? {
                    let silenced = store.is_silenced(&a, now).await?;
                    open.push((a, silenced));
                }
                firing = Some(open);
            }
            let mut views = Vec::new();
            for (a, silenced) in firing.iter().flatten() {
                if a.severity < hook.min_severity {
                    continue;
                }
                // A silence holds back what was not announced yet; an alert Alertmanager
                // already has keeps being posted, or it would end there as if resolved.
                if *silenced && store.sent_payloads(&a.id, &hook.name).await?.is_empty() {
                    continue;
                }
                views.push(AlertView::new(a.wire()).linked(self.config.external_url()));
            }
            self.resent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(hook.name.clone(), std::time::Instant::now());
            // Alertmanager compares with its own clock: the real time, whatever `now` is.
            let now = chrono::Utc::now().timestamp();
            if views.is_empty() {
                continue;
            }
            let alerts: Vec<Value> = views
                .iter()
                .map(|v| postable(v, options, &at(now + valid_for(options.resend_every)), now))
                .collect();
            let id = format!("resend_{}_{now}", hook.name);
            let body = Value::Array(alerts).to_string();
            let result = post(&self.client, hook, options, &id, &body, now).await;
            crate::metrics::resent(&hook.name, result.is_ok());
            if let Err(e) = result {
                tracing::warn!(notifier = %hook.name, error = %e, alerts = views.len(),
                    "firing alerts could not be posted again to Alertmanager; retrying at the next resend");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> AlertmanagerOptions {
        AlertmanagerOptions {
            urls: vec![secrecy::SecretString::from("http://am:9093".to_owned())],
            resend_every: Duration::from_secs(60),
            runbook_url: Some("https://wiki.example/keywatch/{rule}".to_owned()),
        }
    }

    fn budget(threshold: f64, severity: &str) -> AlertView {
        AlertView::parse(&format!(
            r#"{{"version":1,"id":"kw_b","status":"firing","rule":"budget","severity":"{severity}",
            "budget":"team","summary":"Budget team: $80.00 spent","observed":80.0,"baseline":100.0,
            "threshold":{threshold},"unit":"usd","starts_at":"2027-01-15T08:00:00Z"}}"#
        ))
        .unwrap()
        .linked(Some("https://kw.example"))
    }

    #[test]
    fn a_firing_alert_carries_its_labels_annotations_and_a_validity_of_four_resends() {
        let body = body(&budget(75.0, "warning"), &[], &options(), 1_800_000_000);
        assert_eq!(
            body,
            json!([{
                "labels": {"alertname": "budget", "severity": "warning", "keywatch_id": "kw_b",
                           "budget": "team", "threshold": "75"},
                "annotations": {
                    "summary": "Budget team: $80.00 spent",
                    "description": "$80.00 of $100.00 (75% crossed). What to do: Review the keys driving the spend (keywatch history --key ID) and whether the budget still fits; deactivate keys that should not be spending.",
                    "runbook_url": "https://wiki.example/keywatch/budget"
                },
                "startsAt": "2027-01-15T08:00:00Z",
                "endsAt": "2027-01-15T08:04:00Z",
                "generatorURL": "https://kw.example/alerts#alert-kw_b"
            }])
        );
    }

    #[test]
    fn an_escalation_ends_the_label_sets_posted_before() {
        let earlier = [budget(50.0, "info"), budget(75.0, "warning")];
        let body = body(
            &budget(100.0, "critical"),
            &earlier,
            &options(),
            1_800_000_000,
        );
        let alerts = body.as_array().unwrap();
        assert_eq!(alerts.len(), 3);
        assert_eq!(alerts[0]["labels"]["threshold"], "100");
        assert_eq!(alerts[0]["endsAt"], "2027-01-15T08:04:00Z");
        for (old, threshold) in alerts[1..].iter().zip(["50", "75"]) {
            assert_eq!(old["labels"]["threshold"], threshold);
            assert_eq!(old["endsAt"], "2027-01-15T08:00:00Z", "ended now");
        }
    }
}
