//! Digests: a daily or weekly spend summary — the period's spend against the one before, the
//! top movers by key, month-to-date against each budget with its forecast, open alerts — sent
//! to notifiers once per period (queued in `digest_sends`, so restarts never send it twice),
//! with the period's report as a CSV attachment for email. This module composes and queues;
//! the outbox ([`crate::notify::Outbox`]) sends, retries and expires digests as it does alerts.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use crate::config::{Config, Digest, DigestSchedule};
use crate::report::{rollup, sum_usd, to_csv, Dim, KeyFacts, Period, PeriodKind};
use crate::store::{DigestSend, Store, StoreError};
use crate::text::usd;

/// The period the digest due at `now` covers, with the one before it: the latest scheduled
/// send time not after `now` (daily at `at`; weekly on Mondays at `at`) covers the day or week
/// that ended before it.
pub fn due_periods(d: &Digest, now: DateTime<Utc>) -> Option<[Period; 2]> {
    let local = now.with_timezone(&d.timezone);
    let mut send_day: NaiveDate = local.date_naive();
    if local.time() < d.at {
        send_day = send_day.pred_opt()?;
    }
    let sending = Period::starting(kind_of(d), d.timezone, send_day);
    let covered = sending.previous()?;
    Some([covered.previous()?, covered])
}

fn kind_of(d: &Digest) -> PeriodKind {
    match d.schedule {
        DigestSchedule::Daily => PeriodKind::Day,
        DigestSchedule::Weekly => PeriodKind::Week,
    }
}

/// The digest to queue at `now`, if any: the due period, unless the digest was never sent and
/// that period is not the latest closed one (a first start before today's send time sends
/// nothing for the day before yesterday; it waits for the send time of yesterday's).
fn first_or_due(d: &Digest, now: DateTime<Utc>, ever_queued: bool) -> Option<[Period; 2]> {
    let due = due_periods(d, now)?;
    let latest_closed = Period::containing(kind_of(d), d.timezone, now).previous()?;
    (ever_queued || due[1] == latest_closed).then_some(due)
}

/// `$12.34`; an amount that rounds to zero is `$0.00`, never `$-0.00`.
fn money(v: f64) -> String {
    let v = if v.abs() < 0.005 { 0.0 } else { v };
    format!("${v:.2}")
}

/// Builds the digest for its due period, unless it was queued already; returns the sends.
async fn build(
    store: &Store,
    config: &Config,
    d: &Digest,
    now: DateTime<Utc>,
) -> Result<Option<Vec<DigestSend>>, StoreError> {
    let ever_queued = store.digest_ever_queued(&d.name).await?;
    let Some([before, period]) = first_or_due(d, now, ever_queued) else {
        return Ok(None);
    };
    if store.digest_queued(&d.name, &period.label).await? {
        return Ok(None);
    }
    let spans = [before.span(), period.span()];
    let figures = crate::report::read(
        store,
        config.poll.bucket_width.seconds(),
        d.timezone,
        &spans,
        &[Dim::Key],
        now,
    )
    .await?;
    let keys = store.all_keys().await?;
    let facts = |source: &str, key: &str| {
        let k = keys.iter().find(|k| k.source == source && k.key_id == key);
        KeyFacts {
            name: k.and_then(|k| k.name.clone()),
            workspace: k.and_then(|k| k.workspace_id.clone()),
        }
    };
    let list = [before.clone(), period.clone()];
    let rows = rollup(&list, &figures, &[Dim::Key], &facts, None);
    let total = sum_usd(rows.iter().map(|r| r.spend_usd));
    let previous = sum_usd(
        figures
            .spend
            .iter()
            .flatten()
            .filter(|(p, ..)| *p == 0)
            .map(|(.., v)| v.usd),
    );
    let forecasts = crate::budget::forecasts(store, config, now).await?;
    let alerts = store.alerts(false).await?;

    let (what, adjective) = (period.kind.noun(), period.kind.as_str());
    let subject = format!(
        "[keywatch] {} digest {}: {} spent",
        d.name,
        period.label,
        money(total)
    );
    let mut body = format!(
        "keywatch {adjective} digest {:?} for {} ({})\n\n",
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
        .filter(|r| r.change_usd.unwrap_or(r.spend_usd).abs() > 0.0)
        .collect();
    movers.sort_by(|a, b| {
        b.change_usd
            .unwrap_or(b.spend_usd)
            .abs()
            .total_cmp(&a.change_usd.unwrap_or(a.spend_usd).abs())
    });
    if movers.is_empty() {
        let _ = writeln!(body, "\nTop movers by key: no change");
    } else {
        let _ = writeln!(body, "\nTop movers by key:");
    }
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
        let _ = writeln!(body, "  {name:<30} {:>10}  ({delta})", money(r.spend_usd));
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
        "top_movers": movers.iter().take(5).map(|r| json!({"group": r.group.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(), "cost_usd": usd(r.spend_usd), "cost_basis": r.basis.as_str(), "change_usd": r.change_usd.map(usd)})).collect::<Vec<_>>(),
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
                next_attempt_at: now.timestamp(),
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
        let [before, period] = due_periods(&d, utc("2026-11-26T07:30:00Z")).unwrap();
        assert_eq!(
            (before.label.as_str(), period.label.as_str()),
            ("2026-11-24", "2026-11-25")
        );
        // 07:30 in Berlin: still the digest of the 24th.
        let [_, period] = due_periods(&d, utc("2026-11-26T06:30:00Z")).unwrap();
        assert_eq!(period.label, "2026-11-24");
    }

    #[test]
    fn a_weekly_digest_covers_the_week_before_the_monday() {
        let d = digest(DigestSchedule::Weekly, "08:00");
        // Thursday 2026-11-26: the Monday send (23rd) covered week 47 (16th to 22nd).
        let [before, period] = due_periods(&d, utc("2026-11-26T12:00:00Z")).unwrap();
        assert_eq!(
            (before.label.as_str(), period.label.as_str()),
            ("2026-W46", "2026-W47")
        );
    }

    #[test]
    fn a_first_digest_is_only_the_latest_closed_period() {
        let d = digest(DigestSchedule::Daily, "08:00");
        // 07:30 in Berlin on the 26th, never sent: nothing (the 24th is not the latest closed
        // day); once sent before, the 24th is still owed.
        assert_eq!(first_or_due(&d, utc("2026-11-26T06:30:00Z"), false), None);
        let [_, owed] = first_or_due(&d, utc("2026-11-26T06:30:00Z"), true).unwrap();
        assert_eq!(owed.label, "2026-11-24");
        // 08:30: the 25th, the latest closed day, is due either way.
        let [_, due] = first_or_due(&d, utc("2026-11-26T07:30:00Z"), false).unwrap();
        assert_eq!(due.label, "2026-11-25");
        let w = digest(DigestSchedule::Weekly, "08:00");
        // Monday 07:00 in Berlin: last week's digest is not due yet.
        assert_eq!(first_or_due(&w, utc("2026-11-30T06:00:00Z"), false), None);
        let [_, week] = first_or_due(&w, utc("2026-11-30T08:00:00Z"), false).unwrap();
        assert_eq!(week.label, "2026-W48");
    }
}
