//! Notification: the outbox ([`Outbox`]) that delivers alert state changes and digests to email
//! and webhook notifiers, with retries and back-off across restarts; the messages each kind of
//! notifier takes; the test alert.

mod alertmanager;
mod batch;
mod digest;
pub mod email;
mod html;
pub mod message;
mod outbox;
pub mod webhook;

pub use batch::{MAX_ALERTS_PER_EMAIL, MAX_EMAIL_BYTES};
pub use outbox::{retry_delay, Mode, Outbox, OutboxReport};

use chrono::Utc;

use crate::config::Notifier;
use crate::model::{AlertObject, AlertStatus, Severity};
use crate::store::Delivery;
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

impl Outbox {
    /// Sends a clearly marked test alert through `notifier`, bypassing the outbox.
    pub async fn send_test(&self, notifier: &Notifier) -> Result<String, NotifyError> {
        let now = Utc::now();
        let payload = test_alert(notifier.name(), now).to_json_string();
        let delivery = Delivery {
            id: format!("msg_test_{}", now.timestamp_nanos_opt().unwrap_or_default()),
            event_seq: 0,
            alert_id: "test".to_owned(),
            notifier: notifier.name().to_owned(),
            payload,
            attempts: 0,
            created_at: now.timestamp(),
            next_attempt_at: now.timestamp(),
            queued_at_ms: Some(now.timestamp_millis()),
        };
        match notifier {
            Notifier::Email(mail) => {
                let view = AlertView::parse(&delivery.payload).ok_or_else(|| {
                    NotifyError::Config("the test alert is not an alert object".to_owned())
                })?;
                email::send(mail, &[view.linked(self.config.external_url())]).await
            }
            Notifier::Webhook(hook) => {
                let base = self.config.external_url();
                webhook::send(self.client(), hook, &delivery, base, &[], now.timestamp()).await
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
    fn the_test_alert_is_written_as_it_always_was_with_its_actions() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            test_alert("ops", now).to_json_string(),
            r#"{"actions":[],"baseline":null,"budget":null,"ends_at":null,"id":"kw_test_1800000000","key_id":null,"key_name":"test alert","observed":null,"period":null,"rule":"test","severity":"info","source":null,"starts_at":"2027-01-15T08:00:00Z","status":"firing","summary":"This is a test alert from keywatch to the notifier \"ops\": if you can read it, the wiring works. No action needed.","threshold":null,"unit":"none","version":1}"#
        );
    }
}
