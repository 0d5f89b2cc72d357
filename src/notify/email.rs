//! Email delivery over SMTP (lettre, tokio, rustls).

use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::message::{email, AlertView};
use super::NotifyError;
use crate::config::{EmailNotifier, TlsMode};

fn transport(n: &EmailNotifier) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
    let tls = |e: lettre::transport::smtp::Error| {
        NotifyError::Config(format!("TLS setup for {}: {e}", n.smtp_host))
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&n.smtp_host)
        .port(n.smtp_port)
        .timeout(Some(n.timeout));
    builder = match n.tls {
        TlsMode::None => builder.tls(Tls::None),
        TlsMode::Starttls => builder.tls(Tls::Required(
            TlsParameters::new(n.smtp_host.clone()).map_err(tls)?,
        )),
        TlsMode::Tls => builder.tls(Tls::Wrapper(
            TlsParameters::new(n.smtp_host.clone()).map_err(tls)?,
        )),
    };
    if let (Some(user), Some(password)) = (&n.username, &n.password) {
        builder = builder.credentials(Credentials::new(
            user.expose_secret().to_owned(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

fn mailbox(field: &str, address: &str) -> Result<Mailbox, NotifyError> {
    address.parse().map_err(|e| {
        NotifyError::Config(format!("{field} {address:?} is not a valid address: {e}"))
    })
}

/// What to check, by TLS mode, when the SMTP conversation fails.
fn hint(n: &EmailNotifier) -> &'static str {
    match (n.tls, n.smtp_port) {
        (TlsMode::Tls, 587) => " (port 587 usually speaks STARTTLS: try tls = \"starttls\")",
        (TlsMode::Starttls, 465) => " (port 465 usually speaks implicit TLS: try tls = \"tls\")",
        _ => " (check smtp_host, smtp_port, tls and the login)",
    }
}

/// The domain of the `from` address, for Message-IDs.
fn id_domain(n: &EmailNotifier) -> String {
    n.from
        .parse::<Mailbox>()
        .map(|m| m.email.domain().to_owned())
        .unwrap_or_else(|_| "keywatch.invalid".to_owned())
}

/// An alert id as the left part of a Message-ID (dot-atom text only).
fn id_part(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect()
}

/// The Message-ID of the email that announces `alert_id` in `status` (`firing`, `resolved`):
/// derived from the alert id alone, so a retry carries the same id and a resolve can name
/// the firing email it answers.
pub fn message_id(alert_id: &str, status: &str, domain: &str) -> String {
    format!("<{}.{status}@{domain}>", id_part(alert_id))
}

/// Message-ID, In-Reply-To and References of an email about `alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Threading {
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
}

/// One alert's email is `<id.firing@domain>` or `<id.resolved@domain>`, a resolve answering its
/// firing email; an email listing several has an id derived from them and references the
/// firing emails of those it resolves.
pub fn threading(alerts: &[AlertView], domain: &str) -> Threading {
    // A follow-up (an escalation) is a firing of its own, answering the first one.
    let status = |a: &AlertView| match (a.resolved(), a.follow_up) {
        (true, _) => "resolved".to_owned(),
        (false, None) => "firing".to_owned(),
        (false, Some(seq)) => format!("firing.{seq}"),
    };
    let firing_of_resolved: Vec<String> = alerts
        .iter()
        .filter(|a| a.resolved() || a.follow_up.is_some())
        .map(|a| message_id(a.id(), "firing", domain))
        .collect();
    match alerts {
        [one] => Threading {
            message_id: Some(message_id(one.id(), &status(one), domain)),
            in_reply_to: firing_of_resolved.first().cloned(),
            references: firing_of_resolved,
        },
        _ => {
            let parts: Vec<String> = alerts
                .iter()
                .map(|a| format!("{}.{}", a.id(), status(a)))
                .collect();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let hash = crate::alerts::stable_hash(&refs);
            Threading {
                message_id: Some(format!("<kw_batch_{hash:016x}@{domain}>")),
                in_reply_to: None,
                references: firing_of_resolved,
            }
        }
    }
}

/// Sends one email listing `alerts` (text and HTML); returns the server's reply.
pub async fn send(n: &EmailNotifier, alerts: &[AlertView]) -> Result<String, NotifyError> {
    let (subject, body) = email(alerts);
    let ids = threading(alerts, &id_domain(n));
    let html = super::html::email_html(&subject, alerts);
    compose_and_send(n, &subject, Body::Alerts { text: body, html }, &ids).await
}

/// What an email carries.
pub enum Body<'a> {
    /// Alerts: a text part and an HTML part with the same content.
    Alerts { text: String, html: String },
    /// A digest: text with, optionally, a CSV attachment (file name, content).
    Text {
        text: String,
        attachment: Option<(&'a str, &'a str)>,
    },
}

/// Sends a plain-text email, with an optional attachment (file name, CSV text).
pub async fn send_text(
    n: &EmailNotifier,
    subject: &str,
    body: String,
    attachment: Option<(&str, &str)>,
) -> Result<String, NotifyError> {
    let body = Body::Text {
        text: body,
        attachment,
    };
    compose_and_send(n, subject, body, &Threading::default()).await
}

/// The message: `MIME-Version` and a `Message-ID` always (one made up when `ids` has none);
/// subject and body with control characters escaped.
pub fn compose(
    n: &EmailNotifier,
    subject: &str,
    body: Body<'_>,
    ids: &Threading,
) -> Result<Message, NotifyError> {
    let mut builder = Message::builder()
        .from(mailbox("from", &n.from)?)
        .subject(crate::text::clean(subject))
        .message_id(ids.message_id.clone());
    if let Some(parent) = &ids.in_reply_to {
        builder = builder.in_reply_to(parent.clone());
    }
    if !ids.references.is_empty() {
        builder = builder.references(ids.references.join(" "));
    }
    for to in &n.to {
        builder = builder.to(mailbox("to", to)?);
    }
    let built = match body {
        Body::Alerts { text, html } => builder.multipart(MultiPart::alternative_plain_html(
            crate::text::clean_multiline(&text).into_owned(),
            html,
        )),
        Body::Text {
            text,
            attachment: None,
        } => builder.singlepart(SinglePart::plain(
            crate::text::clean_multiline(&text).into_owned(),
        )),
        Body::Text {
            text,
            attachment: Some((name, csv)),
        } => {
            let body = crate::text::clean_multiline(&text).into_owned();
            let csv_type =
                ContentType::parse("text/csv").map_err(|e| NotifyError::Config(e.to_string()))?;
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(Attachment::new(name.to_owned()).body(csv.to_owned(), csv_type)),
            )
        }
    };
    built.map_err(|e| NotifyError::Config(format!("cannot build the message: {e}")))
}

async fn compose_and_send(
    n: &EmailNotifier,
    subject: &str,
    body: Body<'_>,
    ids: &Threading,
) -> Result<String, NotifyError> {
    let message = compose(n, subject, body, ids)?;
    // lettre's timeout covers only the connect: a server that stops answering after EHLO
    // would hold the delivery loop forever. Bound the whole session.
    let transport = transport(n)?;
    let sent = tokio::time::timeout(n.timeout, transport.send(message))
        .await
        .map_err(|_| {
            NotifyError::Transport(format!(
                "SMTP {}:{}: no answer within {}s (delivery.timeout){}",
                n.smtp_host,
                n.smtp_port,
                n.timeout.as_secs(),
                hint(n)
            ))
        })?;
    let response = sent.map_err(|e| {
        let chain = crate::providers::error_chain(&e);
        if e.is_permanent() {
            NotifyError::Rejected(format!(
                "SMTP {}:{}: {chain}{}",
                n.smtp_host,
                n.smtp_port,
                hint(n)
            ))
        } else {
            NotifyError::Transport(format!(
                "SMTP {}:{}: {chain}{}",
                n.smtp_host,
                n.smtp_port,
                hint(n)
            ))
        }
    })?;
    Ok(format!(
        "SMTP {} {}",
        response.code(),
        response.message().collect::<Vec<_>>().join(" ")
    ))
}
