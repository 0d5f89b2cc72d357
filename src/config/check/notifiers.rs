//! The `[[notifiers]]` (email and webhook) and `[[digests]]` checks of step two.

use std::collections::HashSet;
use std::path::Path;

use chrono_tz::Tz;
use secrecy::{ExposeSecret, SecretString};

use super::{check_name, plain_text, Result};
use crate::config::schema::{
    EmailSection, NotifierSection, TlsMode, WebhookFormat, WebhookSection,
};
use crate::config::secret::{pair, Env};
use crate::config::{ConfigError, EmailNotifier, Notifier, WebhookNotifier};

pub(super) fn build_notifiers(
    raw: &[NotifierSection],
    base_dir: &Path,
    env: &dyn Env,
    warnings: &mut Vec<String>,
) -> Result<Vec<Notifier>> {
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, n)| {
            let at = format!("notifiers[{i}]");
            check_name(&format!("{at}.name"), n.name(), &mut seen)?;
            Ok(match n {
                NotifierSection::Email(e) => {
                    Notifier::Email(build_email(e, &at, base_dir, env, warnings)?)
                }
                NotifierSection::Webhook(w) => {
                    Notifier::Webhook(build_webhook(w, &at, base_dir, env)?)
                }
            })
        })
        .collect()
}

/// An address as delivery will parse it (lettre's mailbox syntax, `Name <a@b.example>` too), with
/// a dot in the domain: anything accepted here is also accepted when a mail is built.
fn looks_like_address(a: &str) -> bool {
    a.parse::<lettre::message::Mailbox>()
        .is_ok_and(|m| m.email.domain().contains('.'))
}

fn build_email(
    e: &EmailSection,
    at: &str,
    base_dir: &Path,
    env: &dyn Env,
    warnings: &mut Vec<String>,
) -> Result<EmailNotifier> {
    if e.smtp_host.trim().is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.smtp_host"),
            "must not be empty",
        ));
    }
    if e.smtp_host.chars().any(char::is_whitespace) {
        return Err(ConfigError::invalid(
            format!("{at}.smtp_host"),
            format!(
                "{:?} contains whitespace or a line break; give a host name or address only",
                e.smtp_host
            ),
        ));
    }
    plain_text(&format!("{at}.from"), &e.from)?;
    for to in &e.to {
        plain_text(&format!("{at}.to"), to)?;
    }
    if !looks_like_address(&e.from) {
        return Err(ConfigError::invalid(
            format!("{at}.from"),
            format!("{:?} is not an email address", e.from),
        ));
    }
    if e.to.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.to"),
            "name at least one recipient",
        ));
    }
    if let Some(bad) = e.to.iter().find(|a| !looks_like_address(a)) {
        return Err(ConfigError::invalid(
            format!("{at}.to"),
            format!("{bad:?} is not an email address"),
        ));
    }
    let username = pair(e.username_env.clone(), e.username_file.clone()).resolve(
        &format!("{at}.username"),
        base_dir,
        env,
    )?;
    let password = pair(e.password_env.clone(), e.password_file.clone()).resolve(
        &format!("{at}.password"),
        base_dir,
        env,
    )?;
    if username.is_some() != password.is_some() {
        return Err(ConfigError::invalid(
            format!("{at}.password_env"),
            "SMTP authentication needs both username_env/_file and password_env/_file",
        ));
    }
    if e.tls == TlsMode::None && password.is_some() {
        warnings.push(format!(
            "{at} ({}) sends its SMTP password without TLS (tls = \"none\")",
            e.name
        ));
    }
    let smtp_port = e.smtp_port.unwrap_or(match e.tls {
        TlsMode::None => 25,
        TlsMode::Starttls => 587,
        TlsMode::Tls => 465,
    });
    if smtp_port == 0 {
        return Err(ConfigError::invalid(
            format!("{at}.smtp_port"),
            "must not be 0",
        ));
    }
    Ok(EmailNotifier {
        name: e.name.clone(),
        smtp_host: e.smtp_host.clone(),
        smtp_port,
        tls: e.tls,
        username,
        password,
        from: e.from.clone(),
        to: e.to.clone(),
        min_severity: e.min_severity,
        timeout: std::time::Duration::from_secs(20),
    })
}

fn build_webhook(
    w: &WebhookSection,
    at: &str,
    base_dir: &Path,
    env: &dyn Env,
) -> Result<WebhookNotifier> {
    let from_secret = pair(w.url_env.clone(), w.url_file.clone());
    let (url, url_display) = match (&w.url, from_secret.is_set()) {
        (None, false) if !w.urls.is_empty() => {
            let shown: Vec<String> = w.urls.iter().map(|u| without_credentials(u)).collect();
            let shown = shown.join(", ");
            (SecretString::from(w.urls[0].clone()), shown)
        }
        (Some(u), false) if w.urls.is_empty() => {
            (SecretString::from(u.clone()), without_credentials(u))
        }
        (None, true) if w.urls.is_empty() => (
            from_secret.resolve_required(&format!("{at}.url"), base_dir, env)?,
            format!("from {}", from_secret.describe()),
        ),
        _ => {
            return Err(ConfigError::invalid(
                format!("{at}.url"),
                "give exactly one of url, url_env, url_file or (alertmanager) urls",
            ))
        }
    };
    // A read-only command may not have loaded a secret URL: nothing to check then.
    let unloaded = env.secrets_optional();
    let parsed = reqwest::Url::parse(url.expose_secret()).ok();
    let skip = unloaded && from_secret.is_set();
    let is_http =
        parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !skip && !is_http {
        return Err(ConfigError::invalid(
            format!("{at}.url"),
            format!("{url_display:?} is not an http(s) URL"),
        ));
    }
    for extra in w.urls.iter().skip(1) {
        if !reqwest::Url::parse(extra)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            return Err(ConfigError::invalid(
                format!("{at}.urls"),
                format!("{extra:?} is not an http(s) URL"),
            ));
        }
    }
    let alertmanager = alertmanager_options(w, at, &url)?;
    let secret = pair(w.secret_env.clone(), w.secret_file.clone()).resolve(
        &format!("{at}.secret"),
        base_dir,
        env,
    )?;
    let routing_key = pair(w.routing_key_env.clone(), w.routing_key_file.clone()).resolve(
        &format!("{at}.routing_key"),
        base_dir,
        env,
    )?;
    match w.format {
        WebhookFormat::Json => match &secret {
            None => {
                return Err(ConfigError::invalid(
                    format!("{at}.secret_env"),
                    "json webhooks are signed (Standard Webhooks): set secret_env or secret_file \
                     to a \"whsec_…\" secret",
                ))
            }
            Some(s) if !unloaded && !s.expose_secret().starts_with("whsec_") => {
                return Err(ConfigError::invalid(
                    format!("{at}.secret_env"),
                    "the signing secret must be a Standard Webhooks secret starting with \"whsec_\"",
                ))
            }
            Some(s) if !unloaded && !valid_base64(s.expose_secret().trim_start_matches("whsec_")) => {
                return Err(ConfigError::invalid(
                    format!("{at}.secret_env"),
                    "the signing secret is not valid base64 after \"whsec_\": copy it whole from \
                     the receiver (every delivery would fail with it)",
                ))
            }
            Some(_) => {}
        },
        WebhookFormat::Pagerduty if routing_key.is_none() => {
            return Err(ConfigError::invalid(
                format!("{at}.routing_key_env"),
                "pagerduty webhooks need the integration's routing key: set routing_key_env or \
                 routing_key_file",
            ))
        }
        _ => {}
    }
    Ok(WebhookNotifier {
        name: w.name.clone(),
        url,
        url_display,
        format: w.format,
        secret,
        routing_key,
        min_severity: w.min_severity,
        timeout: std::time::Duration::from_secs(20),
        alertmanager,
    })
}

/// A URL as summaries print it: a user name and password in it replaced by `***`.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Default of `resend_every`.
const DEFAULT_RESEND_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The settings only `format = "alertmanager"` takes, refused on the other formats. The URLs
/// are base URLs: a trailing `/api/v2/alerts` is dropped, as keywatch adds it.
fn alertmanager_options(
    w: &WebhookSection,
    at: &str,
    first: &SecretString,
) -> Result<Option<crate::config::AlertmanagerOptions>> {
    if w.format != WebhookFormat::Alertmanager {
        for (key, set) in [
            ("urls", !w.urls.is_empty()),
            ("resend_every", w.resend_every.is_some()),
            ("runbook_url", w.runbook_url.is_some()),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    format!("{at}.{key}"),
                    "is only for format = \"alertmanager\": remove it or change the format",
                ));
            }
        }
        return Ok(None);
    }
    let base = |u: &str| {
        let u = u.trim_end_matches('/');
        SecretString::from(u.strip_suffix("/api/v2/alerts").unwrap_or(u).to_owned())
    };
    let urls = if w.urls.is_empty() {
        vec![base(first.expose_secret())]
    } else {
        w.urls.iter().map(|u| base(u)).collect()
    };
    let with_query = urls.iter().any(|u| {
        reqwest::Url::parse(u.expose_secret())
            .is_ok_and(|u| u.query().is_some() || u.fragment().is_some())
    });
    if with_query {
        return Err(ConfigError::invalid(
            format!("{at}.url"),
            "an Alertmanager URL is its base URL, such as \"http://alertmanager:9093\": no query \
             or fragment (keywatch adds /api/v2/alerts)",
        ));
    }
    let resend_every = w.resend_every.map_or(DEFAULT_RESEND_EVERY, |d| d.0);
    if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(600))
        .contains(&resend_every)
    {
        return Err(ConfigError::invalid(
            format!("{at}.resend_every"),
            format!(
                "must be between 1s and 10m (well inside Alertmanager's resolve_timeout), got {}",
                humantime::format_duration(resend_every)
            ),
        ));
    }
    if let Some(r) = &w.runbook_url {
        let filled = r.replace("{rule}", "spike");
        if !reqwest::Url::parse(&filled).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError::invalid(
                format!("{at}.runbook_url"),
                format!("{r:?} is not an http(s) URL"),
            ));
        }
    }
    Ok(Some(crate::config::AlertmanagerOptions {
        urls,
        resend_every,
        runbook_url: w.runbook_url.clone(),
    }))
}

pub(super) fn build_digests(
    raw: &[crate::config::schema::DigestSection],
    notifiers: &[Notifier],
) -> Result<Vec<crate::config::Digest>> {
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, d)| {
            let at_key = format!("digests[{i}]");
            check_name(&format!("{at_key}.name"), &d.name, &mut seen)?;
            let at = chrono::NaiveTime::parse_from_str(&d.at, "%H:%M").map_err(|_| {
                ConfigError::invalid(
                    format!("{at_key}.at"),
                    format!("{:?} is not a time of day such as \"08:00\"", d.at),
                )
            })?;
            let timezone: Tz = d.timezone.parse().map_err(|_| {
                ConfigError::invalid(
                    format!("{at_key}.timezone"),
                    format!(
                        "unknown time zone {:?}: use an IANA name such as \"Europe/Berlin\"",
                        d.timezone
                    ),
                )
            })?;
            if d.notifiers.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at_key}.notifiers"),
                    "name at least one [[notifiers]] entry",
                ));
            }
            if let Some(unknown) = d
                .notifiers
                .iter()
                .find(|n| !notifiers.iter().any(|x| x.name() == n.as_str()))
            {
                return Err(ConfigError::invalid(
                    format!("{at_key}.notifiers"),
                    format!("no notifier named {unknown:?}"),
                ));
            }
            if let Some(am) = d.notifiers.iter().find(|n| {
                notifiers.iter().any(|x| {
                    x.name() == n.as_str()
                        && matches!(x, Notifier::Webhook(w) if w.format == WebhookFormat::Alertmanager)
                })
            }) {
                return Err(ConfigError::invalid(
                    format!("{at_key}.notifiers"),
                    format!("{am:?} is an Alertmanager, which takes alerts, not digests: name an email, json or slack notifier"),
                ));
            }
            Ok(crate::config::Digest {
                name: d.name.clone(),
                schedule: d.schedule,
                at,
                timezone,
                notifiers: d.notifiers.clone(),
            })
        })
        .collect()
}

/// Whether a `whsec_` secret's body decodes, as signing will need.
fn valid_base64(encoded: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .is_ok_and(|k| !k.is_empty())
}
