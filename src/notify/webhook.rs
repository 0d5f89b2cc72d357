//! Webhook delivery: the alert object signed per Standard Webhooks, a Slack message, or a
//! PagerDuty Events API v2 event.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::message::{pagerduty, slack, AlertView};
use super::NotifyError;
use crate::config::{WebhookFormat, WebhookNotifier};
use crate::store::Delivery;

/// Signs `body` per Standard Webhooks: base64 HMAC-SHA256 over `id.timestamp.body` with the
/// decoded `whsec_` secret, as `v1,<signature>`.
pub fn sign(
    secret: &SecretString,
    id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, NotifyError> {
    let encoded = secret.expose_secret().trim_start_matches("whsec_");
    let key = BASE64.decode(encoded).map_err(|_| {
        NotifyError::Config("the webhook secret is not valid base64 after \"whsec_\"".to_owned())
    })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| NotifyError::Config("the webhook secret cannot key HMAC-SHA256".to_owned()))?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// Sends one delivery; returns what the receiver answered (e.g. `HTTP 200`).
pub async fn send(
    client: &reqwest::Client,
    hook: &WebhookNotifier,
    delivery: &Delivery,
    base: Option<&str>,
    earlier: &[AlertView],
    now: i64,
) -> Result<String, NotifyError> {
    let view = AlertView::parse(&delivery.payload)
        .ok_or_else(|| {
            NotifyError::Config("stored alert payload is not an alert object".to_owned())
        })?
        .linked(base);
    let body = match hook.format {
        WebhookFormat::Json => with_url(&delivery.payload, view.link.as_deref()),
        WebhookFormat::Slack => slack(&view).to_string(),
        WebhookFormat::Pagerduty => {
            let mut event = pagerduty(&view);
            let key = hook
                .routing_key
                .as_ref()
                .ok_or_else(|| NotifyError::Config("pagerduty needs routing_key_env".to_owned()))?;
            event["routing_key"] = key.expose_secret().into();
            event.to_string()
        }
        WebhookFormat::Alertmanager => {
            let options = hook.alertmanager.as_ref().ok_or_else(|| {
                NotifyError::Config("alertmanager options are missing".to_owned())
            })?;
            let body = super::alertmanager::body(&view, earlier, options, now).to_string();
            return super::alertmanager::post(client, hook, options, &delivery.id, &body, now)
                .await;
        }
    };
    post(client, hook, &delivery.id, &body, now).await
}

/// The stored alert object with `"url"` (the dashboard link) added when there is one; else the
/// payload as stored, byte for byte.
fn with_url(payload: &str, link: Option<&str>) -> String {
    let Some(link) = link else {
        return payload.to_owned();
    };
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("url".to_owned(), link.into());
            serde_json::Value::Object(object).to_string()
        }
        _ => payload.to_owned(),
    }
}

/// POSTs `body` to the hook, signed when a secret is configured.
pub async fn post(
    client: &reqwest::Client,
    hook: &WebhookNotifier,
    id: &str,
    body: &str,
    now: i64,
) -> Result<String, NotifyError> {
    post_to(client, hook.url.expose_secret(), hook, id, body, now).await
}

/// POSTs `body` to `url` with the hook's timeout, signed when the hook has a secret.
pub async fn post_to(
    client: &reqwest::Client,
    url: &str,
    hook: &WebhookNotifier,
    id: &str,
    body: &str,
    now: i64,
) -> Result<String, NotifyError> {
    let mut request = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .timeout(hook.timeout)
        .body(body.to_owned());
    if let Some(secret) = &hook.secret {
        request = request
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", sign(secret, id, now, body)?);
    }
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            NotifyError::Timeout
        } else {
            // Without the URL: Slack-style URLs carry a token.
            NotifyError::Transport(crate::providers::error_chain(&e.without_url()))
        }
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(format!("HTTP {}", status.as_u16()))
    } else {
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        Err(NotifyError::Rejected(format!(
            "HTTP {}: {}",
            status.as_u16(),
            text.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_reference() {
        // The example of the Standard Webhooks specification.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
