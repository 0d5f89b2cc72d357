//! Notification: the outbox worker that delivers alert state changes to email and webhook
//! notifiers, with retries and back-off across restarts.

mod batch;
pub mod email;
pub mod message;
pub mod webhook;

pub use batch::{MAX_ALERTS_PER_EMAIL, MAX_EMAIL_BYTES};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::config::{Config, Notifier};
use crate::model::{AlertObject, AlertStatus, Severity};
use crate::store::{Delivery, Store, StoreError};
use message::AlertView;

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The notifier is misconfigured (a retry will not help until the config changes).
    #[error("{0}")]
    Config(String),
    #[error("no answer within delivery.timeout")]
    Timeout,
    /// Could not talk to the receiver.
    #[error("{0}")]
    Transport(String),
    /// The receiver answered, but not with success.
    #[error("{0}")]
    Rejected(String),
}

impl NotifyError {
    /// Whether another attempt may succeed: a misconfigured notifier fails the same way until
    /// its config changes, so its deliveries are given up at once (with an error log naming
    /// what to fix) instead of being retried until they expire.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Config(_))
    }
}

/// Whether a pass delivers only what is due (the daemon) or everything pending (`run --once`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Due,
    All,
}

/// What one outbox pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutboxReport {
    pub delivered: usize,
    pub failed: usize,
    pub expired: usize,
}

/// Delivers from the outbox to the configured notifiers.
pub struct Outbox {
    config: Arc<Config>,
    client: reqwest::Client,
}

/// The delay before attempt `attempts + 1`: 1 minute doubling to 1 hour, with jitter.
pub fn retry_delay(attempts: i64) -> Duration {
    let secs = (60u64 << attempts.clamp(0, 6)).min(3_600);
    Duration::from_secs(secs).mul_f64(0.75 + 0.5 * fastrand::f64())
}

impl Outbox {
    pub fn new(config: Arc<Config>) -> Self {
        crate::metrics::notifiers_configured(config.notifiers.iter().map(Notifier::name));
        let client = reqwest::Client::builder()
            .user_agent(concat!("keywatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { config, client }
    }

    /// One pass over the pending deliveries.
    pub async fn deliver(&self, store: &Store, mode: Mode) -> Result<OutboxReport, StoreError> {
        self.deliver_at(store, mode, Utc::now().timestamp()).await
    }

    /// One pass as if the time were `now` (Unix seconds): which deliveries are due, which have
    /// expired and when the next retry is. Tests advance `now` instead of sleeping; signatures
    /// always carry the real time, as receivers check it against their clock.
    pub async fn deliver_at(
        &self,
        store: &Store,
        mode: Mode,
        now: i64,
    ) -> Result<OutboxReport, StoreError> {
        let mut report = OutboxReport::default();
        let expire_after = self.config.delivery.expire_after.0.as_secs() as i64;
        // Expiry is checked on every pass, not only when a delivery's next retry is due, so a
        // long backoff does not keep a notification past its age.
        let (expired, pending): (Vec<Delivery>, Vec<Delivery>) = store
            .pending_deliveries()
            .await?
            .into_iter()
            .partition(|d| now - d.created_at >= expire_after);
        for d in &expired {
            tracing::error!(delivery = %d.id, alert = %d.alert_id, notifier = %d.notifier, attempts = d.attempts,
                "giving up on a notification that could not be delivered within delivery.expire_after");
            store
                .mark_expired(&d.id, "expired: not delivered within delivery.expire_after")
                .await?;
            crate::metrics::delivery_expired(&d.notifier);
            report.expired += 1;
        }
        let mut by_notifier: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
        for d in pending
            .iter()
            .filter(|d| mode == Mode::All || d.next_attempt_at <= now)
        {
            by_notifier.entry(d.notifier.as_str()).or_default().push(d);
        }
        for (name, live) in by_notifier {
            if live.is_empty() {
                continue;
            }
            let Some(notifier) = self.config.notifiers.iter().find(|n| n.name() == name) else {
                for d in live {
                    store
                        .mark_expired(&d.id, "the notifier is no longer configured")
                        .await?;
                    crate::metrics::delivery_expired(name);
                    report.expired += 1;
                }
                continue;
            };
            let mut outcome = Recorder {
                store,
                name,
                now,
                report: &mut report,
            };
            match notifier {
                Notifier::Email(mail) => batch::deliver(mail, &live, &mut outcome).await?,
                Notifier::Webhook(hook) => {
                    for d in live {
                        let result =
                            webhook::send(&self.client, hook, d, Utc::now().timestamp()).await;
                        outcome.record(d, result).await?;
                    }
                }
            }
        }
        crate::metrics::deliveries_pending(&store.pending_by_notifier().await?);
        Ok(report)
    }

    /// Sends a clearly marked test alert through `notifier`, bypassing the outbox.
    pub async fn send_test(&self, notifier: &Notifier) -> Result<String, NotifyError> {
        let now = Utc::now();
        let payload = test_alert(notifier.name(), now).to_json_string();
        let delivery = Delivery {
            id: format!("msg_test_{}", now.timestamp_nanos_opt().unwrap_or_default()),
            alert_id: "test".to_owned(),
            notifier: notifier.name().to_owned(),
            payload,
            attempts: 0,
            created_at: now.timestamp(),
            next_attempt_at: now.timestamp(),
        };
        match notifier {
            Notifier::Email(mail) => {
                let view = AlertView::parse(&delivery.payload).ok_or_else(|| {
                    NotifyError::Config("the test alert is not an alert object".to_owned())
                })?;
                email::send(mail, &[view]).await
            }
            Notifier::Webhook(hook) => {
                webhook::send(&self.client, hook, &delivery, now.timestamp()).await
            }
        }
    }
}

/// The clearly marked test alert `test-notify` sends to the notifier `name` at `now`.
fn test_alert(name: &str, now: chrono::DateTime<Utc>) -> AlertObject {
    AlertObject {
        version: 1,
        id: format!("kw_test_{}", now.timestamp()),
        status: AlertStatus::Firing,
        rule: "test".to_owned(),
        severity: Severity::Info,
        key_name: Some("test alert".to_owned()),
        summary: format!("This is a test alert from keywatch to the notifier {name:?}: if you can read it, the wiring works. No action needed."),
        unit: "none".to_owned(),
        starts_at: now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ..AlertObject::default()
    }
}

/// Records the outcome of attempts to one notifier in the store, the metrics, the log and the
/// pass's report.
pub(crate) struct Recorder<'a> {
    store: &'a Store,
    name: &'a str,
    now: i64,
    report: &'a mut OutboxReport,
}

impl Recorder<'_> {
    async fn record(
        &mut self,
        d: &Delivery,
        result: Result<String, NotifyError>,
    ) -> Result<(), StoreError> {
        let (name, now) = (self.name, self.now);
        match result {
            Ok(answer) => {
                let answer = crate::config::secret::redact(&answer);
                self.store.mark_delivered(&d.id, now, &answer).await?;
                crate::metrics::delivery_attempted(name, Some((now - d.created_at).max(0) as f64));
                tracing::info!(delivery = %d.id, alert = %d.alert_id, notifier = name, answer = %answer, "notification delivered");
                self.report.delivered += 1;
            }
            Err(e) if !e.retryable() => {
                let error = crate::config::secret::redact(&e.to_string()).into_owned();
                crate::metrics::delivery_attempted(name, None);
                self.report.failed += 1;
                self.give_up(
                    d,
                    &format!("the notifier is misconfigured ({error}): fix it in [[notifiers]]"),
                )
                .await?;
            }
            Err(e) => {
                let error = crate::config::secret::redact(&e.to_string()).into_owned();
                let next = now + retry_delay(d.attempts).as_secs() as i64;
                tracing::warn!(delivery = %d.id, alert = %d.alert_id, notifier = name, error = %error,
                    attempts = d.attempts + 1, "notification failed; will retry");
                self.store.mark_failed(&d.id, next, &error).await?;
                crate::metrics::delivery_attempted(name, None);
                self.report.failed += 1;
            }
        }
        Ok(())
    }

    /// A delivery that can never be sent (its stored payload is not an alert object).
    async fn give_up(&mut self, d: &Delivery, why: &str) -> Result<(), StoreError> {
        tracing::error!(delivery = %d.id, alert = %d.alert_id, notifier = self.name, why, "giving up on a notification");
        self.store.mark_expired(&d.id, why).await?;
        crate::metrics::delivery_expired(self.name);
        self.report.expired += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_misconfigured_notifier_is_not_retried() {
        assert!(!NotifyError::Config("bad address".into()).retryable());
        assert!(NotifyError::Timeout.retryable());
        assert!(NotifyError::Transport("refused".into()).retryable());
        assert!(NotifyError::Rejected("HTTP 503".into()).retryable());
    }

    #[test]
    fn the_test_alert_is_written_as_it_always_was() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            test_alert("ops", now).to_json_string(),
            r#"{"baseline":null,"budget":null,"ends_at":null,"id":"kw_test_1800000000","key_id":null,"key_name":"test alert","observed":null,"period":null,"rule":"test","severity":"info","source":null,"starts_at":"2027-01-15T08:00:00Z","status":"firing","summary":"This is a test alert from keywatch to the notifier \"ops\": if you can read it, the wiring works. No action needed.","threshold":null,"unit":"none","version":1}"#
        );
    }
}
