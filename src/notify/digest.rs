//! A queued digest, as each kind of notifier takes it: an email with the period's report as a
//! CSV attachment, the digest object on a json webhook, a Slack message. PagerDuty takes
//! incidents, not digests: the send is recorded as skipped.

use serde_json::json;

use super::{email, webhook, NotifyError};
use crate::config::{Notifier, WebhookFormat};
use crate::store::DigestSend;

/// Sends one digest; returns what the receiver answered.
pub(super) async fn send(
    client: &reqwest::Client,
    notifier: &Notifier,
    s: &DigestSend,
) -> Result<String, NotifyError> {
    match notifier {
        Notifier::Email(n) => {
            let name = format!("keywatch-{}-{}.csv", s.digest, s.period);
            email::send_text(n, &s.subject, s.body.clone(), Some((&name, &s.csv))).await
        }
        Notifier::Webhook(hook) => {
            let id = format!(
                "msg_digest_{:016x}",
                crate::model::stable_hash(&[&s.digest, &s.period, &s.notifier])
            );
            let body = match hook.format {
                WebhookFormat::Json => s.payload.clone(),
                WebhookFormat::Slack => {
                    let (subject, body) = (
                        crate::text::slack(&s.subject),
                        crate::text::clean_multiline(&s.body),
                    );
                    json!({"text": format!("*{subject}*\n```{}```", crate::text::slack_escape(&body))}).to_string()
                }
                WebhookFormat::Pagerduty => {
                    return Ok("skipped: PagerDuty takes incidents, not digests".to_owned())
                }
                WebhookFormat::Alertmanager => {
                    return Ok("skipped: Alertmanager takes alerts, not digests".to_owned())
                }
            };
            let now = chrono::Utc::now().timestamp();
            webhook::post(client, hook, &id, &body, now).await
        }
    }
}
