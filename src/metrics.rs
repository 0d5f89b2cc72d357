//! Prometheus metrics: one process-wide recorder (metrics + metrics-exporter-prometheus), the
//! names keywatch exports, and the gauges refreshed from the store at scrape time.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::store::{Store, StoreError};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder on first use; `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3_600.0,
                ])
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
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

/// A delivery given up after `delivery.expire_after`.
pub fn delivery_expired(notifier: &str) {
    metrics::counter!("keywatch_deliveries_expired_total", "notifier" => notifier.to_owned())
        .increment(1);
}

/// Sets the gauges that describe the store's current state (alerts firing by rule and
/// severity, deliveries pending by notifier), then renders every metric.
pub async fn render(store: &Store) -> Result<String, StoreError> {
    let Some(handle) = handle() else {
        return Ok(String::new());
    };
    for ((rule, severity), n) in store.firing_counts().await? {
        metrics::gauge!("keywatch_alerts_firing", "rule" => rule, "severity" => severity)
            .set(n as f64);
    }
    for (notifier, n) in store.pending_by_notifier().await? {
        metrics::gauge!("keywatch_deliveries_pending", "notifier" => notifier).set(n as f64);
    }
    Ok(handle.render())
}
