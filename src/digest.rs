//! Digests: a daily or weekly spend summary — the period's spend against the one before, the
//! top movers by key, month-to-date against each budget with its forecast, open alerts — sent
//! to notifiers once per period (queued in `digest_sends`, so restarts never send it twice),
//! with the period's report as a CSV attachment for email.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::json;

use crate::config::{Config, Digest, DigestSchedule, Notifier, WebhookFormat};
use crate::notify::{email, retry_delay, webhook, NotifyError};
use crate::report::{periods, rollup, to_csv, Dim, KeyFacts, PeriodKind, ReportPeriod};
use crate::store::{DigestSend, Store, StoreError};
use crate::text::usd;

/// The period the digest due at `now` covers, with the one before it: the latest scheduled
/// send time not after `now` (daily at `at`; weekly on Mondays at `at`) covers the day or week
/// that ended before it.
pub fn due_periods(d: &Digest, now: DateTime<Utc>) -> [ReportPeriod; 2] {
    let local = now.with_timezone(&d.timezone);
    let mut send_day: NaiveDate = local.date_naive();
    if local.time() < d.at {
        send_day -= Duration::days(1);
    }
    let kind = match d.schedule {
        DigestSchedule::Daily => PeriodKind::Day,
        DigestSchedule::Weekly => {
            send_day -= Duration::days(i64::from(send_day.weekday().num_days_from_monday()));
            PeriodKind::Week
        }
    };
    let covered_last_day = send_day - Duration::days(1);
    let list = periods(
        kind,
        d.timezone,
        covered_last_day - Duration::days(if kind == PeriodKind::Week { 7 } else { 1 }),
        covered_last_day,
    );
    let n = list.len();
    [list[n - 2].clone(), list[n - 1].clone()]
}

fn money(v: f64) -> String {
    format!("${v:.2}")
}

/// Builds the digest for its due period, unless it was queued already; returns the sends.
async fn build(
    store: &Store,
    config: &Config,
    d: &Digest,
    now: DateTime<Utc>,
) -> Result<Option<Vec<DigestSend>>, StoreError> {
    let [before, period] = due_periods(d, now);
    if store.digest_queued(&d.name, &period.label).await? {
        return Ok(None);
    }
    let spans = [(before.start, before.end), (period.start, period.end)];
    let usage = store
        .usage_by_period(config.poll.bucket_width.seconds(), d.timezone, &spans)
        .await?;
    let billed = store.billed_by_period(&spans).await?;
    let keys = store.all_keys().await?;
    let facts = |source: &str, key: &str| {
        let k = keys.iter().find(|k| k.source == source && k.key_id == key);
        KeyFacts {
            name: k.and_then(|k| k.name.clone()),
            workspace: k.and_then(|k| k.workspace_id.clone()),
        }
    };
    let list = [before.clone(), period.clone()];
    let rows = rollup(&list, &usage, &billed, &[Dim::Key], &facts);
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    let previous: f64 = usage
        .iter()
        .filter(|u| u.period == 0)
        .map(|u| u.cost_usd)
        .sum();
    let forecasts = crate::alerts::forecast::budget_forecasts(store, config, now).await?;
    let alerts = store.alerts(false).await?;

    let what = match d.schedule {
        DigestSchedule::Daily => "day",
        DigestSchedule::Weekly => "week",
    };
    let subject = format!(
        "[keywatch] {} digest {}: {} spent",
        d.name,
        period.label,
        money(total)
    );
    let every = match d.schedule {
        DigestSchedule::Daily => "daily",
        DigestSchedule::Weekly => "weekly",
    };
    let mut body = format!(
        "keywatch {every} digest {:?} for {} ({})\n\n",
        d.name, period.label, d.timezone
    );
    let change = if previous > 0.0 {
        format!("{:+.0}%", (total - previous) / previous * 100.0)
    } else {
        "new".to_owned()
    };
    let _ = writeln!(
        body,
        "Spend: {} (previous {what} {}: {}, {change})",
        money(total),
        before.label,
        money(previous)
    );
    let mut movers: Vec<_> = rows
        .iter()
        .filter(|r| r.change_usd.unwrap_or(r.cost_usd).abs() > 0.0)
        .collect();
    movers.sort_by(|a, b| {
        b.change_usd
            .unwrap_or(b.cost_usd)
            .abs()
            .total_cmp(&a.change_usd.unwrap_or(a.cost_usd).abs())
    });
    let _ = writeln!(body, "\nTop movers by key:");
    for r in movers.iter().take(5) {
        let name = r
            .group
            .iter()
            .find(|(k, v)| *k == "key_name" && !v.is_empty())
            .or_else(|| r.group.first())
            .map(|(_, v)| crate::text::clean(v))
            .unwrap_or("?".into());
        let delta = r.change_usd.map_or_else(
            || "new".to_owned(),
            |c| format!("{}{}", if c >= 0.0 { "+" } else { "-" }, money(c.abs())),
        );
        let _ = writeln!(body, "  {name:<30} {:>10}  ({delta})", money(r.cost_usd));
    }
    if !forecasts.is_empty() {
        let _ = writeln!(
            body,
            "\nMonth to date against budgets (forecast: median of the last 7 days to month end):"
        );
        for f in &forecasts {
            let _ = writeln!(
                body,
                "  {:<24} {} of {}, projected {}",
                f.budget,
                money(f.spent),
                money(f.limit),
                money(f.forecast.projected)
            );
        }
    }
    let _ = writeln!(body, "\nOpen alerts: {}", alerts.len());
    for a in alerts.iter().take(10) {
        let _ = writeln!(
            body,
            "  {} {}: {}",
            a.severity.as_str().to_uppercase(),
            a.rule.as_str(),
            crate::text::clean(&a.summary)
        );
    }
    body.push_str(
        "\nThe full report is attached as CSV (email) or available with `keywatch report`.\n",
    );
    let payload = json!({
        "type": "digest", "digest": d.name, "period": period.label, "timezone": d.timezone.name(),
        "spend_usd": usd(total), "previous_spend_usd": usd(previous),
        "top_movers": movers.iter().take(5).map(|r| json!({"group": r.group.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(), "cost_usd": usd(r.cost_usd), "change_usd": r.change_usd.map(usd)})).collect::<Vec<_>>(),
        "budgets": forecasts.iter().map(|f| json!({"budget": f.budget, "spent_usd": usd(f.spent), "limit_usd": usd(f.limit), "projected_usd": usd(f.forecast.projected)})).collect::<Vec<_>>(),
        "open_alerts": alerts.len(),
    })
    .to_string();
    let csv = to_csv(&rows, &[Dim::Key]);
    Ok(Some(
        d.notifiers
            .iter()
            .map(|n| DigestSend {
                digest: d.name.clone(),
                period: period.label.clone(),
                notifier: n.clone(),
                subject: subject.clone(),
                body: body.clone(),
                payload: payload.clone(),
                csv: csv.clone(),
                attempts: 0,
                created_at: now.timestamp(),
            })
            .collect(),
    ))
}

/// Queues every digest whose period came due and was not queued yet.
pub async fn queue_due(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for d in &config.digests {
        if let Some(sends) = build(store, config, d, now).await? {
            store.queue_digest(&sends, now.timestamp()).await?;
            tracing::info!(digest = %d.name, period = %sends[0].period, notifiers = sends.len(), "digest queued");
            queued += 1;
        }
    }
    Ok(queued)
}

async fn send(
    client: &reqwest::Client,
    notifier: &Notifier,
    s: &DigestSend,
    now: i64,
) -> Result<String, NotifyError> {
    match notifier {
        Notifier::Email(n) => {
            let name = format!("keywatch-{}-{}.csv", s.digest, s.period);
            email::send_text(n, &s.subject, s.body.clone(), Some((&name, &s.csv))).await
        }
        Notifier::Webhook(hook) => {
            let id = format!(
                "msg_digest_{:016x}",
                crate::alerts::stable_hash(&[&s.digest, &s.period, &s.notifier])
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
            };
            webhook::post(client, hook, &id, &body, now).await
        }
    }
}

/// Sends pending digests (all with `all`, else only due ones); returns how many remain pending.
pub async fn deliver(store: &Store, config: &Config, all: bool) -> Result<usize, StoreError> {
    let now = Utc::now().timestamp();
    let client = reqwest::Client::builder()
        .user_agent(concat!("keywatch/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let mut remaining = 0;
    for s in store.pending_digests(now, !all).await? {
        let expire_after = config.delivery.expire_after.0.as_secs() as i64;
        let Some(notifier) = config.notifiers.iter().find(|n| n.name() == s.notifier) else {
            store
                .mark_digest(
                    &s,
                    "expired",
                    now,
                    now,
                    "the notifier is no longer configured",
                )
                .await?;
            continue;
        };
        if now - s.created_at >= expire_after {
            tracing::error!(digest = %s.digest, period = %s.period, notifier = %s.notifier, "giving up on a digest not delivered within delivery.expire_after");
            store
                .mark_digest(&s, "expired", now, now, "expired")
                .await?;
            continue;
        }
        match send(&client, notifier, &s, now).await {
            Ok(answer) => {
                tracing::info!(digest = %s.digest, period = %s.period, notifier = %s.notifier, answer, "digest delivered");
                store
                    .mark_digest(&s, "delivered", now, now, &answer)
                    .await?;
            }
            Err(e) => {
                tracing::warn!(digest = %s.digest, notifier = %s.notifier, error = %e, "digest failed; will retry");
                let retry = now + retry_delay(s.attempts).as_secs() as i64;
                store
                    .mark_digest(&s, "pending", retry, now, &e.to_string())
                    .await?;
                remaining += 1;
            }
        }
    }
    Ok(remaining)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(schedule: DigestSchedule, at: &str) -> Digest {
        Digest {
            name: "d".into(),
            schedule,
            at: chrono::NaiveTime::parse_from_str(at, "%H:%M").unwrap(),
            timezone: "Europe/Berlin".parse().unwrap(),
            notifiers: vec!["n".into()],
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_daily_digest_covers_yesterday_once_its_hour_has_come() {
        let d = digest(DigestSchedule::Daily, "08:00");
        // 08:30 in Berlin on the 26th: the digest of the 25th is due.
        let [before, period] = due_periods(&d, utc("2026-11-26T07:30:00Z"));
        assert_eq!(
            (before.label.as_str(), period.label.as_str()),
            ("2026-11-24", "2026-11-25")
        );
        // 07:30 in Berlin: still the digest of the 24th.
        let [_, period] = due_periods(&d, utc("2026-11-26T06:30:00Z"));
        assert_eq!(period.label, "2026-11-24");
    }

    #[test]
    fn a_weekly_digest_covers_the_week_before_the_monday() {
        let d = digest(DigestSchedule::Weekly, "08:00");
        // Thursday 2026-11-26: the Monday send (23rd) covered week 47 (16th to 22nd).
        let [before, period] = due_periods(&d, utc("2026-11-26T12:00:00Z"));
        assert_eq!(
            (before.label.as_str(), period.label.as_str()),
            ("2026-W46", "2026-W47")
        );
    }
}
