//! The outbox: one pass delivers everything queued for the notifiers — alert state changes
//! (`deliveries`) and digests (`digest_sends`) — with one retry policy, one expiry, one answer
//! to "the notifier is no longer configured" and one HTTP client. What to do with a message is
//! decided by pure functions ([`triage`], [`verdict`]); [`Recorder`] writes the decision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::message::AlertView;
use super::{batch, digest, webhook, NotifyError};
use crate::config::{Config, Notifier, WebhookFormat};
use crate::store::{Delivery, DeliveryState, DigestSend, Store, StoreError};

/// Whether a pass delivers only what is due (the daemon) or everything pending (`run --once`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Due,
    All,
}

/// What one outbox pass did (alert notifications and digests together).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutboxReport {
    pub delivered: usize,
    pub failed: usize,
    pub expired: usize,
}

/// The delay before attempt `attempts + 1`: 1 minute doubling to 1 hour, with jitter.
pub fn retry_delay(attempts: i64) -> Duration {
    let secs = (60u64 << attempts.clamp(0, 6)).min(3_600);
    Duration::from_secs(secs).mul_f64(0.75 + 0.5 * fastrand::f64())
}

/// One queued message, whichever table holds it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry<'a> {
    Alert(&'a Delivery),
    Digest(&'a DigestSend),
}

impl<'a> From<&'a Delivery> for Entry<'a> {
    fn from(d: &'a Delivery) -> Self {
        Self::Alert(d)
    }
}

impl<'a> From<&&'a Delivery> for Entry<'a> {
    fn from(d: &&'a Delivery) -> Self {
        Self::Alert(d)
    }
}

impl Entry<'_> {
    fn notifier(&self) -> &str {
        match self {
            Self::Alert(d) => &d.notifier,
            Self::Digest(s) => &s.notifier,
        }
    }

    fn created_at(&self) -> i64 {
        match self {
            Self::Alert(d) => d.created_at,
            Self::Digest(s) => s.created_at,
        }
    }

    /// Seconds from queueing to `now_ms` (wall-clock milliseconds): to the millisecond where
    /// the queueing time was recorded so, else to the second.
    fn latency(&self, now_ms: i64) -> f64 {
        let queued_ms = match self {
            Self::Alert(d) => d.queued_at_ms,
            Self::Digest(_) => None,
        }
        .unwrap_or(self.created_at() * 1_000);
        (now_ms - queued_ms).max(0) as f64 / 1_000.0
    }

    fn attempts(&self) -> i64 {
        match self {
            Self::Alert(d) => d.attempts,
            Self::Digest(s) => s.attempts,
        }
    }

    fn due(&self, now: i64) -> bool {
        match self {
            Self::Alert(d) => d.next_attempt_at <= now,
            Self::Digest(s) => s.next_attempt_at <= now,
        }
    }

    /// How the log names it: the delivery id, or the digest and its period.
    fn label(&self) -> String {
        match self {
            Self::Alert(d) => format!("{} (alert {})", d.id, d.alert_id),
            Self::Digest(s) => format!("digest {} {}", s.digest, s.period),
        }
    }

    /// Writes `outcome` to the entry's table.
    async fn mark(&self, store: &Store, outcome: &Outcome, now: i64) -> Result<(), StoreError> {
        match (self, outcome) {
            (Self::Alert(d), Outcome::Delivered(answer)) => {
                store.mark_delivered(&d.id, now, answer).await
            }
            (Self::Alert(d), Outcome::Retry { at, error }) => {
                store.mark_failed(&d.id, *at, error).await
            }
            (Self::Alert(d), Outcome::GiveUp(why)) => store.mark_expired(&d.id, why).await,
            (Self::Digest(s), Outcome::Delivered(answer)) => {
                store
                    .mark_digest(s, DeliveryState::Delivered, now, now, answer)
                    .await
            }
            (Self::Digest(s), Outcome::Retry { at, error }) => {
                store
                    .mark_digest(s, DeliveryState::Pending, *at, now, error)
                    .await
            }
            (Self::Digest(s), Outcome::GiveUp(why)) => {
                store
                    .mark_digest(s, DeliveryState::Expired, now, now, why)
                    .await
            }
        }
    }
}

/// What happens to a message after an attempt, or instead of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered(String),
    Retry { at: i64, error: String },
    GiveUp(String),
}

/// Whether a queued message is given up before any attempt: too old, or its notifier was
/// removed from the configuration. Expiry is checked on every pass, not only when the next
/// retry is due, so a long back-off does not keep a notification past its age.
pub(crate) fn triage(
    created_at: i64,
    now: i64,
    expire_after: i64,
    configured: bool,
) -> Option<&'static str> {
    if now - created_at >= expire_after {
        Some("expired: not delivered within delivery.expire_after")
    } else if !configured {
        Some("the notifier is no longer configured")
    } else {
        None
    }
}

/// What an attempt's result means: delivered, retried after [`retry_delay`], or (for a
/// misconfigured notifier, which fails the same way until its config changes) given up at once.
pub(crate) fn verdict(result: Result<String, NotifyError>, attempts: i64, now: i64) -> Outcome {
    let redact = |s: &str| crate::config::secret::redact(s).into_owned();
    match result {
        Ok(answer) => Outcome::Delivered(redact(&answer)),
        Err(e) if !e.retryable() => Outcome::GiveUp(format!(
            "the notifier is misconfigured ({}): fix it in [[notifiers]]",
            redact(&e.to_string())
        )),
        Err(e) => Outcome::Retry {
            at: now + retry_delay(attempts).as_secs() as i64,
            error: redact(&e.to_string()),
        },
    }
}

/// Delivers from the outbox to the configured notifiers.
pub struct Outbox {
    pub(super) config: Arc<Config>,
    pub(super) client: reqwest::Client,
    /// When each `alertmanager` notifier last had its firing alerts posted again.
    pub(super) resent: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
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
        Self {
            config,
            client,
            resent: std::sync::Mutex::default(),
        }
    }

    /// One pass over the pending deliveries and digests.
    pub async fn deliver(&self, store: &Store, mode: Mode) -> Result<OutboxReport, StoreError> {
        self.deliver_at(store, mode, Utc::now().timestamp()).await
    }

    /// One pass as if the time were `now` (Unix seconds): which messages are due, which have
    /// expired and when the next retry is. Tests advance `now` instead of sleeping; signatures
    /// always carry the real time, as receivers check it against their clock.
    pub async fn deliver_at(
        &self,
        store: &Store,
        mode: Mode,
        now: i64,
    ) -> Result<OutboxReport, StoreError> {
        let delivered = self.deliver_queued(store, mode, now).await;
        // Whatever became of the queue: Alertmanager ends firing alerts not posted again.
        let resent = self.resend_due(store, now).await;
        let report = delivered?;
        resent?;
        Ok(report)
    }

    /// One pass over the queued deliveries and digests.
    async fn deliver_queued(
        &self,
        store: &Store,
        mode: Mode,
        now: i64,
    ) -> Result<OutboxReport, StoreError> {
        let mut report = OutboxReport::default();
        let alerts = store.pending_deliveries().await?;
        let digests = store.pending_digests().await?;
        let entries = alerts
            .iter()
            .map(Entry::Alert)
            .chain(digests.iter().map(Entry::Digest));
        let mut by_notifier: BTreeMap<String, Vec<Entry<'_>>> = BTreeMap::new();
        let expire_after = self.config.delivery.expire_after.0.as_secs() as i64;
        for entry in entries {
            let configured = self.notifier(entry.notifier()).is_some();
            let mut out = self.recorder(store, entry.notifier(), now, &mut report);
            if let Some(why) = triage(entry.created_at(), now, expire_after, configured) {
                out.give_up(entry, why).await?;
            } else if mode == Mode::All || entry.due(now) {
                let name = entry.notifier().to_owned();
                by_notifier.entry(name).or_default().push(entry);
            }
        }
        for (name, live) in &by_notifier {
            let Some(notifier) = self.notifier(name) else {
                continue;
            };
            // Only what this leader claimed (on PostgreSQL: stamped with its lease epoch, rows
            // another transaction holds skipped); a replica that lost the lease claims nothing.
            let alert_ids: Vec<&str> = live
                .iter()
                .filter_map(|e| match e {
                    Entry::Alert(d) => Some(d.id.as_str()),
                    Entry::Digest(_) => None,
                })
                .collect();
            let claimed = store.claim_deliveries(&alert_ids).await?;
            let digest_sends: Vec<&DigestSend> = live
                .iter()
                .filter_map(|e| match e {
                    Entry::Digest(s) => Some(*s),
                    Entry::Alert(_) => None,
                })
                .collect();
            let claimed_digests = store.claim_digests(&digest_sends).await?;
            let mut out = self.recorder(store, name, now, &mut report);
            let (mails, digests): (Vec<_>, Vec<_>) = live
                .iter()
                .copied()
                .filter(|e| match e {
                    Entry::Alert(d) => claimed.contains(&d.id),
                    Entry::Digest(s) => claimed_digests.contains(&(
                        s.digest.clone(),
                        s.period.clone(),
                        s.notifier.clone(),
                    )),
                })
                .partition(|e| matches!(e, Entry::Alert(_)));
            match notifier {
                Notifier::Email(mail) => {
                    let alerts: Vec<&Delivery> = mails
                        .iter()
                        .filter_map(|e| match e {
                            Entry::Alert(d) => Some(*d),
                            Entry::Digest(_) => None,
                        })
                        .collect();
                    // Deliveries following an earlier firing of their alert to this notifier
                    // (an escalation): their email answers the first.
                    let mut announced = std::collections::HashSet::new();
                    for d in &alerts {
                        if store.fired_before(d).await? {
                            announced.insert(d.id.clone());
                        }
                    }
                    let base = self.config.external_url();
                    batch::deliver(mail, &alerts, base, &announced, &mut out).await?;
                }
                Notifier::Webhook(hook) => {
                    for entry in &mails {
                        if let Entry::Alert(d) = entry {
                            if hook.format == WebhookFormat::Alertmanager
                                && store.superseded(d).await?
                            {
                                let done = Ok(crate::store::SUPERSEDED.to_owned());
                                out.record(*entry, done).await?;
                                continue;
                            }
                            let sent = Utc::now().timestamp();
                            let base = self.config.external_url();
                            let earlier = if hook.format == WebhookFormat::Alertmanager {
                                store
                                    .sent_payloads(&d.alert_id, &hook.name)
                                    .await?
                                    .iter()
                                    .filter_map(|p| AlertView::parse(p))
                                    .collect()
                            } else {
                                Vec::new()
                            };
                            let result =
                                webhook::send(&self.client, hook, d, base, &earlier, sent).await;
                            out.record(*entry, result).await?;
                        }
                    }
                }
            }
            for entry in digests {
                if let Entry::Digest(s) = entry {
                    let result = digest::send(&self.client, notifier, s).await;
                    out.record(entry, result).await?;
                }
            }
        }
        crate::metrics::deliveries_pending(&store.pending_by_notifier().await?);
        Ok(report)
    }

    fn notifier(&self, name: &str) -> Option<&Notifier> {
        self.config.notifiers.iter().find(|n| n.name() == name)
    }

    fn recorder<'a>(
        &self,
        store: &'a Store,
        name: &'a str,
        now: i64,
        report: &'a mut OutboxReport,
    ) -> Recorder<'a> {
        Recorder {
            store,
            name,
            now,
            report,
        }
    }

    /// The shared HTTP client (connect timeout, no redirects), for the test alert.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
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
    pub(crate) async fn record(
        &mut self,
        entry: impl Into<Entry<'_>>,
        result: Result<String, NotifyError>,
    ) -> Result<(), StoreError> {
        let entry = entry.into();
        let (name, now) = (self.name, self.now);
        match verdict(result, entry.attempts(), now) {
            Outcome::GiveUp(why) => {
                crate::metrics::delivery_attempted(name, None);
                self.report.failed += 1;
                return self.give_up(entry, &why).await;
            }
            outcome @ Outcome::Delivered(_) => {
                entry.mark(self.store, &outcome, now).await?;
                let latency = entry.latency(Utc::now().timestamp_millis());
                crate::metrics::delivery_attempted(name, Some(latency));
                if let Outcome::Delivered(answer) = &outcome {
                    tracing::info!(message = %entry.label(), notifier = name, answer = %answer, "notification delivered");
                }
                self.report.delivered += 1;
            }
            outcome @ Outcome::Retry { .. } => {
                entry.mark(self.store, &outcome, now).await?;
                if let Outcome::Retry { error, .. } = &outcome {
                    tracing::warn!(message = %entry.label(), notifier = name, error = %error,
                        attempts = entry.attempts() + 1, "notification failed; will retry");
                }
                crate::metrics::delivery_attempted(name, None);
                self.report.failed += 1;
            }
        }
        Ok(())
    }

    /// A message that will never be sent: expired, its notifier gone or misconfigured, or its
    /// stored payload unreadable.
    pub(crate) async fn give_up(
        &mut self,
        entry: impl Into<Entry<'_>>,
        why: &str,
    ) -> Result<(), StoreError> {
        let entry = entry.into();
        tracing::error!(message = %entry.label(), notifier = self.name, attempts = entry.attempts(), why, "giving up on a notification");
        entry
            .mark(self.store, &Outcome::GiveUp(why.to_owned()), self.now)
            .await?;
        crate::metrics::delivery_expired(self.name);
        self.report.expired += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_given_up_when_too_old_or_its_notifier_is_gone() {
        assert_eq!(triage(0, 99, 100, true), None);
        assert_eq!(
            triage(0, 100, 100, true),
            Some("expired: not delivered within delivery.expire_after")
        );
        assert_eq!(
            triage(0, 5, 100, false),
            Some("the notifier is no longer configured")
        );
    }

    #[test]
    fn only_a_misconfigured_notifier_is_given_up_after_an_attempt() {
        assert_eq!(
            verdict(Ok("HTTP 200".into()), 0, 1_000),
            Outcome::Delivered("HTTP 200".into())
        );
        match verdict(Err(NotifyError::Rejected("HTTP 503".into())), 2, 1_000) {
            Outcome::Retry { at, error } => {
                // Third attempt: 4 minutes ±25 %.
                assert!((1_180..=1_300).contains(&at), "{at}");
                assert_eq!(error, "HTTP 503");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verdict(Err(NotifyError::Config("bad address".into())), 0, 1_000),
            Outcome::GiveUp(why) if why.contains("bad address") && why.contains("[[notifiers]]")
        ));
    }
}
