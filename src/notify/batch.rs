//! Email batching: the due notifications of one email notifier go out as a few messages, each
//! listing at most [`MAX_ALERTS_PER_EMAIL`] alerts and about [`MAX_EMAIL_BYTES`] of text,
//! oldest first. One message the server refuses never holds back the others: a refused message
//! listing several alerts is sent again alert by alert, so only an alert the server refuses on
//! its own stays pending (retried with backoff until `delivery.expire_after`).

use crate::config::EmailNotifier;
use crate::store::{Delivery, StoreError};

use super::message::AlertView;
use super::outbox::Recorder;
use super::{email, NotifyError};

/// The most alerts one email lists.
pub const MAX_ALERTS_PER_EMAIL: usize = 50;

/// The most text (bytes, before transfer encoding) one email carries, unless one alert alone is
/// longer. Far below the 10 MB most mail servers accept.
pub const MAX_EMAIL_BYTES: usize = 256 * 1024;

/// When the first few alerts sent on their own are all refused, the server refuses everything
/// (a rejected recipient, a revoked login): the rest is not tried in this pass.
const REFUSED_ALONE_BEFORE_STOPPING: usize = 3;

type Item<'a> = (&'a Delivery, AlertView);

/// What one email about `a` adds to a message listing several.
fn weight(a: &AlertView) -> usize {
    // The listing line, the section and the separator between sections.
    a.title().len() * 2 + a.text().len() + 80
}

/// Splits `items` (oldest first) into messages within the caps.
fn group(items: Vec<Item<'_>>) -> Vec<Vec<Item<'_>>> {
    let mut groups: Vec<Vec<Item<'_>>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let w = weight(&item.1);
        match groups.last_mut() {
            Some(g) if g.len() < MAX_ALERTS_PER_EMAIL && bytes + w <= MAX_EMAIL_BYTES => {
                bytes += w;
                g.push(item);
            }
            _ => {
                bytes = w;
                groups.push(vec![item]);
            }
        }
    }
    groups
}

/// Whether the server refused this message for good (a 5xx), as opposed to a transient fault
/// or a misconfiguration that no other message could get past.
fn refused(e: &NotifyError) -> bool {
    matches!(e, NotifyError::Rejected(_))
}

/// Sends the due deliveries `live` of the email notifier `mail` and records each outcome.
pub(crate) async fn deliver(
    mail: &EmailNotifier,
    live: &[&Delivery],
    base: Option<&str>,
    announced: &std::collections::HashSet<String>,
    out: &mut Recorder<'_>,
) -> Result<(), StoreError> {
    let mut items = Vec::with_capacity(live.len());
    for d in live {
        match AlertView::parse(&d.payload) {
            Some(view) => {
                let mut view = view.linked(base);
                view.follow_up =
                    (!view.resolved() && announced.contains(&d.id)).then_some(d.event_seq);
                items.push((*d, view));
            }
            None => {
                out.give_up(d, "the stored payload is not an alert object")
                    .await?
            }
        }
    }
    // Set once the server cannot take anything now: what is left fails with it, unsent.
    let mut stop: Option<String> = None;
    for batch in group(items) {
        if let Some(why) = &stop {
            for (d, _) in &batch {
                let e = NotifyError::Transport(format!("not sent after an earlier failure: {why}"));
                out.record(d, Err(e)).await?;
            }
            continue;
        }
        let views: Vec<AlertView> = batch.iter().map(|(_, v)| v.clone()).collect();
        let error = match email::send(mail, &views).await {
            Ok(answer) => {
                for (d, _) in &batch {
                    out.record(d, Ok(answer.clone())).await?;
                }
                continue;
            }
            Err(e) => e,
        };
        if batch.len() == 1 || !refused(&error) {
            if !refused(&error) {
                stop = Some(error.to_string());
            }
            let shared = error.to_string();
            for (d, _) in &batch {
                out.record(d, Err(NotifyError::Rejected(shared.clone())))
                    .await?;
            }
            continue;
        }
        tracing::warn!(notifier = %mail.name, alerts = batch.len(), error = %error,
            "the mail server refused an email listing several alerts; sending them one by one");
        stop = one_by_one(mail, &batch, out).await?;
    }
    Ok(())
}

/// Sends each alert of a refused message on its own. Returns why to stop trying this notifier
/// in this pass, if the server turned out to refuse everything.
async fn one_by_one(
    mail: &EmailNotifier,
    batch: &[Item<'_>],
    out: &mut Recorder<'_>,
) -> Result<Option<String>, StoreError> {
    let (mut sent, mut refused_alone) = (0, 0);
    let mut stop: Option<String> = None;
    for (d, view) in batch {
        if let Some(why) = &stop {
            let e = NotifyError::Transport(format!("not sent after an earlier failure: {why}"));
            out.record(d, Err(e)).await?;
            continue;
        }
        let result = email::send(mail, std::slice::from_ref(view)).await;
        match &result {
            Ok(_) => sent += 1,
            Err(e) if refused(e) => {
                refused_alone += 1;
                if sent == 0 && refused_alone >= REFUSED_ALONE_BEFORE_STOPPING {
                    stop = Some(e.to_string());
                }
            }
            Err(e) => stop = Some(e.to_string()),
        }
        out.record(d, result).await?;
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(i: usize, summary_len: usize) -> Delivery {
        let payload = serde_json::json!({"id": format!("kw_{i}"), "status": "firing", "rule": "key_age",
            "severity": "warning", "key_name": format!("key-{i}"), "summary": "x".repeat(summary_len)})
        .to_string();
        Delivery {
            id: format!("msg_{i}"),
            alert_id: format!("kw_{i}"),
            notifier: "mail".to_owned(),
            payload,
            attempts: 0,
            created_at: 0,
            next_attempt_at: 0,
            queued_at_ms: None,
            event_seq: i as i64,
        }
    }

    fn sizes(ds: &[Delivery]) -> Vec<usize> {
        let items = ds
            .iter()
            .map(|d| (d, AlertView::parse(&d.payload).unwrap()))
            .collect();
        group(items).iter().map(Vec::len).collect()
    }

    #[test]
    fn groups_are_capped_by_count_and_bytes() {
        let small: Vec<Delivery> = (0..120).map(|i| delivery(i, 100)).collect();
        assert_eq!(sizes(&small), [50, 50, 20]);
        let big: Vec<Delivery> = (0..5).map(|i| delivery(i, 100_000)).collect();
        assert_eq!(sizes(&big), [2, 2, 1]);
        let huge = [delivery(0, 400_000), delivery(1, 10)];
        assert_eq!(sizes(&huge), [1, 1], "an alert over the cap goes alone");
    }
}
