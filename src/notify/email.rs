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

/// Sends one email listing `alerts`; returns the server's reply.
pub async fn send(n: &EmailNotifier, alerts: &[AlertView]) -> Result<String, NotifyError> {
    let (subject, body) = email(alerts);
    send_text(n, &subject, body, None).await
}

/// Sends a plain-text email, with an optional attachment (file name, CSV text).
pub async fn send_text(
    n: &EmailNotifier,
    subject: &str,
    body: String,
    attachment: Option<(&str, &str)>,
) -> Result<String, NotifyError> {
    let mut builder = Message::builder()
        .from(mailbox("from", &n.from)?)
        .subject(subject);
    for to in &n.to {
        builder = builder.to(mailbox("to", to)?);
    }
    let built = match attachment {
        None => builder.header(ContentType::TEXT_PLAIN).body(body),
        Some((name, csv)) => {
            let csv_type =
                ContentType::parse("text/csv").map_err(|e| NotifyError::Config(e.to_string()))?;
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(Attachment::new(name.to_owned()).body(csv.to_owned(), csv_type)),
            )
        }
    };
    let message =
        built.map_err(|e| NotifyError::Config(format!("cannot build the message: {e}")))?;
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
