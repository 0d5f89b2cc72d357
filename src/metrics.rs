//! Prometheus metrics: one process-wide recorder (metrics + metrics-exporter-prometheus), the
//! names keywatch exports, and the gauges refreshed from the store at scrape time.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::store::{Store, StoreError};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder on first use, with every family's HELP text and
/// `keywatch_build_info`; `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3_600.0,
                ])
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// The HELP text of every family keywatch exports (`promtool check metrics` wants one), and
/// `keywatch_build_info{version} 1`.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "keywatch_leader",
        "1 while this replica leads (polls, detects, contains and delivers), else 0, by instance."
    );
    describe_counter!(
        "keywatch_polls_total",
        "Polls of a source, by outcome (ok, failed)."
    );
    describe_counter!(
        "keywatch_usage_rows_stored_total",
        "Usage rows a source's polls stored new or changed."
    );
    describe_histogram!(
        "keywatch_poll_duration_seconds",
        Unit::Seconds,
        "How long one poll of a source took."
    );
    describe_gauge!(
        "keywatch_last_successful_poll_timestamp_seconds",
        Unit::Seconds,
        "Unix time of a source's last successful poll."
    );
    describe_counter!(
        "keywatch_deliveries_total",
        "Notification delivery attempts, by notifier and outcome (delivered, failed)."
    );
    describe_histogram!(
        "keywatch_delivery_latency_seconds",
        Unit::Seconds,
        "Seconds from an alert's state change to its delivery."
    );
    describe_counter!(
        "keywatch_deliveries_expired_total",
        "Notifications given up after delivery.expire_after, by notifier."
    );
    describe_gauge!(
        "keywatch_deliveries_pending",
        "Notifications waiting in the outbox, by notifier."
    );
    describe_gauge!(
        "keywatch_alerts_firing",
        "Open alerts, by rule and severity."
    );
    describe_counter!(
        "keywatch_containment_actions_total",
        "Changes made to keys at their providers, by policy (manual by hand) and outcome (done, failed, dry-run)."
    );
    describe_counter!(
        "keywatch_alertmanager_resends_total",
        "Repeated posts of the firing alerts to an alertmanager notifier, by outcome (ok, failed)."
    );
    describe_gauge!(
        "keywatch_source_spend_usd",
        "Spend of a source in the current UTC day or month (period), in USD: the best known figure (bills where billed, else estimates)."
    );
    describe_gauge!(
        "keywatch_budget_spend_usd",
        "Spend counted against a budget in its current day or month (period, in the budget's time zone), in USD."
    );
    describe_gauge!(
        "keywatch_budget_limit_usd",
        "A budget's limit for its day or month (period), in USD."
    );
    describe_gauge!(
        "keywatch_last_detection_timestamp_seconds",
        Unit::Seconds,
        "Unix time of the end of the last detection pass (0 = none yet)."
    );
    describe_gauge!(
        "keywatch_build_info",
        "Always 1; the version and commit labels say which keywatch is running."
    );
    metrics::gauge!("keywatch_build_info", "version" => env!("CARGO_PKG_VERSION"), "commit" => env!("KEYWATCH_COMMIT")).set(1.0);
}

/// Registers every series the configuration implies at 0 — each source's poll counters, each
/// notifier's delivery counters, each policy's action counters — so alert rules on them work
/// before the first event; and each source's last successful poll from the store (0 when it
/// never succeeded, so "time since the last poll" is huge rather than missing).
pub async fn preset(store: &Store, config: &crate::config::Config) {
    let stream = crate::store::usage_stream(config.poll.bucket_width.seconds());
    for s in &config.sources {
        let source = s.name.clone();
        for outcome in ["ok", "failed"] {
            metrics::counter!("keywatch_polls_total", "source" => source.clone(), "outcome" => outcome)
                .increment(0);
        }
        metrics::counter!("keywatch_usage_rows_stored_total", "source" => source.clone())
            .increment(0);
        let last = match store.poll_state(&s.name, &stream).await {
            Ok(state) => state.last_success_at.unwrap_or(0),
            Err(e) => {
                tracing::warn!(source = %s.name, error = %e, "cannot read the last poll for /metrics");
                0
            }
        };
        metrics::gauge!("keywatch_last_successful_poll_timestamp_seconds", "source" => source)
            .set(last as f64);
    }
    for n in &config.notifiers {
        let notifier = n.name().to_owned();
        for outcome in ["delivered", "failed"] {
            metrics::counter!("keywatch_deliveries_total", "notifier" => notifier.clone(), "outcome" => outcome)
                .increment(0);
        }
        metrics::counter!("keywatch_deliveries_expired_total", "notifier" => notifier).increment(0);
    }
    for p in &config.containment {
        for outcome in ["done", "failed", "dry-run"] {
            metrics::counter!("keywatch_containment_actions_total", "policy" => p.name.clone(), "outcome" => outcome)
                .increment(0);
        }
    }
    for n in &config.notifiers {
        if let crate::config::Notifier::Webhook(w) = n {
            if w.alertmanager.is_some() {
                for outcome in ["ok", "failed"] {
                    metrics::counter!("keywatch_alertmanager_resends_total", "notifier" => w.name.clone(), "outcome" => outcome)
                        .increment(0);
                }
            }
        }
    }
    for rule in crate::model::Rule::ALL {
        for severity in ["info", "warning", "critical"] {
            metrics::gauge!("keywatch_alerts_firing", "rule" => rule.as_str(), "severity" => severity)
                .set(0.0);
        }
    }
    metrics::gauge!("keywatch_last_detection_timestamp_seconds").set(0.0);
    // Until the first detection pass measures them.
    let unmeasured = config
        .sources
        .iter()
        .flat_map(|s| {
            ["day", "month"].map(|period| SpendGauge {
                kind: "source",
                name: s.name.clone(),
                period,
                spent_usd: 0.0,
                limit_usd: None,
            })
        })
        .chain(config.budgets.iter().flat_map(|b| {
            [("day", b.daily_usd), ("month", b.monthly_usd)]
                .into_iter()
                .filter_map(|(period, limit)| {
                    limit.map(|l| SpendGauge {
                        kind: "budget",
                        name: b.name.clone(),
                        period,
                        spent_usd: 0.0,
                        limit_usd: Some(l),
                    })
                })
        }))
        .collect::<Vec<_>>();
    spend(&unmeasured);
}

/// Whether this replica (`instance`) leads.
pub fn leader(instance: &str, leading: bool) {
    metrics::gauge!("keywatch_leader", "instance" => instance.to_owned()).set(if leading {
        1.0
    } else {
        0.0
    });
}

/// One finished poll of `source`.
pub fn poll_finished(source: &str, ok: bool, seconds: f64, rows_changed: u64, now: i64) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!("keywatch_polls_total", "source" => source.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("keywatch_poll_duration_seconds", "source" => source.to_owned())
        .record(seconds);
    metrics::counter!("keywatch_usage_rows_stored_total", "source" => source.to_owned())
        .increment(rows_changed);
    if ok {
        metrics::gauge!("keywatch_last_successful_poll_timestamp_seconds", "source" => source.to_owned())
            .set(now as f64);
    }
}

/// One delivery attempt to `notifier`; `latency` (seconds since the state change) on success.
pub fn delivery_attempted(notifier: &str, latency: Option<f64>) {
    match latency {
        Some(seconds) => {
            metrics::counter!("keywatch_deliveries_total", "notifier" => notifier.to_owned(), "outcome" => "delivered")
                .increment(1);
            metrics::histogram!("keywatch_delivery_latency_seconds", "notifier" => notifier.to_owned())
                .record(seconds);
        }
        None => metrics::counter!("keywatch_deliveries_total", "notifier" => notifier.to_owned(), "outcome" => "failed")
            .increment(1),
    }
}

/// One change to a key by `policy` (`manual` by hand): `outcome` `done`, `failed` or `dry-run`.
pub fn containment_action(policy: &str, outcome: &'static str) {
    metrics::counter!("keywatch_containment_actions_total", "policy" => policy.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// One spend figure for the gauges: per source or per budget, never per key.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendGauge {
    /// `source` or `budget`.
    pub kind: &'static str,
    pub name: String,
    /// `day` or `month`.
    pub period: &'static str,
    pub spent_usd: f64,
    /// The budget's limit for the period; `None` for a source.
    pub limit_usd: Option<f64>,
}

/// The spend gauges of a detection pass.
pub fn spend(gauges: &[SpendGauge]) {
    for g in gauges {
        let (spend, limit) = match g.kind {
            "source" => ("keywatch_source_spend_usd", None),
            _ => (
                "keywatch_budget_spend_usd",
                Some("keywatch_budget_limit_usd"),
            ),
        };
        metrics::gauge!(spend, g.kind => g.name.clone(), "period" => g.period).set(g.spent_usd);
        if let (Some(name), Some(v)) = (limit, g.limit_usd) {
            metrics::gauge!(name, g.kind => g.name.clone(), "period" => g.period).set(v);
        }
    }
}

/// The end of a detection pass at `now` (Unix seconds).
pub fn detection_finished(now: i64) {
    metrics::gauge!("keywatch_last_detection_timestamp_seconds").set(now as f64);
}

/// One repeated post of the firing alerts to an `alertmanager` notifier.
pub fn resent(notifier: &str, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!("keywatch_alertmanager_resends_total", "notifier" => notifier.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// A delivery given up after `delivery.expire_after`.
pub fn delivery_expired(notifier: &str) {
    metrics::counter!("keywatch_deliveries_expired_total", "notifier" => notifier.to_owned())
        .increment(1);
}

/// Notifiers the pending gauge reports, 0 included: every one any configuration named.
static NOTIFIERS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Registers the configured notifiers, so `keywatch_deliveries_pending` reports each of them,
/// at 0 when nothing is pending.
pub fn notifiers_configured<'a>(names: impl IntoIterator<Item = &'a str>) {
    let mut known = NOTIFIERS.lock().unwrap_or_else(|e| e.into_inner());
    known.extend(names.into_iter().map(str::to_owned));
}

/// Sets `keywatch_deliveries_pending` for every known notifier from `pending` (the store's
/// counts per notifier): a notifier missing from it has nothing pending.
pub fn deliveries_pending(pending: &[(String, i64)]) {
    let mut known = NOTIFIERS.lock().unwrap_or_else(|e| e.into_inner());
    known.extend(pending.iter().map(|(n, _)| n.clone()));
    for notifier in known.iter() {
        let n = pending
            .iter()
            .find(|(name, _)| name == notifier)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("keywatch_deliveries_pending", "notifier" => notifier.clone())
            .set(n as f64);
    }
}

/// Sets the gauges that describe the store's current state (alerts firing by rule and
/// severity, deliveries pending by notifier; 0 where nothing is), then renders every metric.
pub async fn render(store: &Store) -> Result<String, StoreError> {
    let Some(handle) = handle() else {
        return Ok(String::new());
    };
    for ((rule, severity), n) in store.firing_counts().await? {
        metrics::gauge!("keywatch_alerts_firing", "rule" => rule, "severity" => severity)
            .set(n as f64);
    }
    deliveries_pending(&store.pending_by_notifier().await?);
    Ok(handle.render())
}
