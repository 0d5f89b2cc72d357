//! Alerts, their state changes, and silences.

use super::db::{on, on_tx, Tx};
use super::decode::Known;
use super::deliveries::{enqueue, Route};
use super::{Store, StoreError};
use crate::model::{Alert, AlertStatus, Rule, Severity};

/// What detection decided about one alert.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    /// The condition holds: open the alert if it is new, else refresh its numbers.
    Fire(Box<Alert>),
    /// The condition no longer holds: resolve the open alert `id` at `at`.
    Resolve { id: String, at: i64 },
}

/// A state change that was recorded (and will be notified unless silenced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub alert_id: String,
    pub status: AlertStatus,
    pub silenced: bool,
}

/// An operator silence.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Silence {
    pub id: String,
    pub key_id: Option<String>,
    pub rule: Option<String>,
    pub reason: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub removed_at: Option<i64>,
}

pub(super) const ALERT_COLUMNS: &str =
    "id, scope, rule, severity, status, source, key_id, key_name, budget,
    summary, observed, baseline, threshold, unit, period_start, period_end, starts_at, ends_at";

/// A row of [`ALERT_COLUMNS`]: an [`Alert`] once its names are known.
#[derive(sqlx::FromRow)]
pub(super) struct AlertRow {
    id: String,
    scope: String,
    rule: Known<Rule>,
    severity: Known<Severity>,
    status: Known<AlertStatus>,
    source: Option<String>,
    key_id: Option<String>,
    key_name: Option<String>,
    budget: Option<String>,
    summary: String,
    observed: Option<f64>,
    baseline: Option<f64>,
    threshold: Option<f64>,
    unit: String,
    period_start: Option<i64>,
    period_end: Option<i64>,
    starts_at: i64,
    ends_at: Option<i64>,
}

impl TryFrom<AlertRow> for Alert {
    type Error = StoreError;

    /// A stored name this keywatch does not know (written by a newer version, or edited by
    /// hand) is an error naming the alert and the value: it is never re-read as something else.
    fn try_from(r: AlertRow) -> Result<Self, StoreError> {
        let row = || format!("alert {}", r.id);
        Ok(Alert {
            rule: r.rule.get(row, "rule")?,
            severity: r.severity.get(row, "severity")?,
            status: r.status.get(row, "status")?,
            id: r.id,
            scope: r.scope,
            source: r.source,
            key_id: r.key_id,
            key_name: r.key_name,
            budget: r.budget,
            summary: r.summary,
            observed: r.observed,
            baseline: r.baseline,
            threshold: r.threshold,
            unit: r.unit,
            period: r.period_start.zip(r.period_end),
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            actions: Vec::new(),
        })
    }
}

/// A row of `alert_events`.
#[derive(sqlx::FromRow)]
struct EventRow {
    alert_id: String,
    status: Known<AlertStatus>,
    silenced: bool,
}

/// Firing alerts of one rule and severity.
#[derive(sqlx::FromRow)]
struct FiringCount {
    rule: String,
    severity: String,
    firing: i64,
}

impl Store {
    /// Firing alerts, or every alert with `all`: firing first, then by severity, newest first.
    pub async fn alerts(&self, all: bool) -> Result<Vec<Alert>, StoreError> {
        let filter = if all { "" } else { "WHERE status = 'firing'" };
        self.select_alerts(filter, None).await
    }

    /// Every alert about `key_id` (any source), in the order of [`Store::alerts`].
    pub async fn key_alerts(&self, key_id: &str) -> Result<Vec<Alert>, StoreError> {
        self.select_alerts("WHERE key_id = $1", Some(key_id)).await
    }

    async fn select_alerts(
        &self,
        filter: &str,
        key: Option<&str>,
    ) -> Result<Vec<Alert>, StoreError> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {filter}
             ORDER BY status = 'firing' DESC,
                      CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                      starts_at DESC, id"
        );
        let rows: Vec<AlertRow> = on!(self.db, |e| {
            let mut q = sqlx::query_as(&sql);
            if let Some(k) = key {
                q = q.bind(k);
            }
            q.fetch_all(e).await
        })?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut actions = self.alert_actions(&ids).await?;
        rows.into_iter()
            .map(|r| {
                let mut a = Alert::try_from(r)?;
                if let Some(done) = actions.remove(&a.id) {
                    a.actions = done.iter().map(crate::model::ActionObject::from).collect();
                }
                Ok(a)
            })
            .collect()
    }

    /// The scopes of `rule`'s alerts resolved at or after `since`, each with its latest end:
    /// a rule judging settled data that an episode already covered does not page for it again.
    pub async fn resolved_since(
        &self,
        rule: Rule,
        since: i64,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = on!(self.db, |e| sqlx::query_as(
            "SELECT scope, MAX(ends_at) FROM alerts
             WHERE rule = $1 AND status = 'resolved' AND ends_at >= $2 GROUP BY scope",
        )
        .bind(rule.as_str())
        .bind(since)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().collect())
    }

    /// Applies detection's decisions in one transaction and returns the state changes made.
    ///
    /// Each state change that is not silenced is queued in the outbox for every route whose
    /// minimum severity it meets, in the same transaction.
    pub async fn apply_alert_changes(
        &self,
        changes: &[AlertChange],
        routes: &[Route],
        now: i64,
    ) -> Result<Vec<StateChange>, StoreError> {
        let mut tx = self.begin().await?;
        let mut made = Vec::new();
        for change in changes {
            match change {
                AlertChange::Fire(a) => {
                    if insert_alert(&mut tx, a, now).await? {
                        let silenced = silenced(&mut tx, a, now).await?;
                        let seq = record_event(&mut tx, &a.id, AlertStatus::Firing, now, silenced)
                            .await?;
                        if !silenced {
                            let mut firing = (**a).clone();
                            firing.status = AlertStatus::Firing;
                            enqueue(&mut tx, seq, &firing, routes, now).await?;
                        }
                        made.push(StateChange {
                            alert_id: a.id.clone(),
                            status: AlertStatus::Firing,
                            silenced,
                        });
                    } else if let Some(escalated) = escalate(&mut tx, a, now).await? {
                        let silenced = silenced(&mut tx, &escalated, now).await?;
                        let seq = record_event(&mut tx, &a.id, AlertStatus::Firing, now, silenced)
                            .await?;
                        if !silenced {
                            enqueue(&mut tx, seq, &escalated, routes, now).await?;
                        }
                        made.push(StateChange {
                            alert_id: a.id.clone(),
                            status: AlertStatus::Firing,
                            silenced,
                        });
                    } else {
                        // A budget whose spend fell under the stage it reached (a bill replacing
                        // an estimate, a raised limit) keeps that stage's wording.
                        on_tx!(&mut tx, |e| sqlx::query(
                            "UPDATE alerts SET observed = $1,
                                    summary = CASE WHEN rule = 'budget' AND threshold > $2
                                                   THEN summary ELSE $3 END,
                                    last_evaluated_at = $4
                             WHERE id = $5 AND status = 'firing'",
                        )
                        .bind(a.observed)
                        .bind(a.threshold)
                        .bind(crate::config::secret::redact(&a.summary))
                        .bind(now)
                        .bind(&a.id)
                        .execute(e)
                        .await
                        .map(|r| r.rows_affected()))?;
                    }
                }
                AlertChange::Resolve { id, at } => {
                    let done = on_tx!(&mut tx, |e| {
                        sqlx::query(
                        "UPDATE alerts SET status = 'resolved', ends_at = $1, last_evaluated_at = $2
                         WHERE id = $3 AND status = 'firing'",
                    )
                    .bind(at)
                    .bind(now)
                    .bind(id)
                    .execute(e)
                    .await
.map(|r| r.rows_affected())
                    })?;
                    if done > 0 {
                        let row: AlertRow = on_tx!(&mut tx, |e| sqlx::query_as(&format!(
                            "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"
                        ))
                        .bind(id)
                        .fetch_one(e)
                        .await)?;
                        let mut resolved = Alert::try_from(row)?;
                        resolved.actions = super::actions::for_alert(&mut tx, id)
                            .await?
                            .iter()
                            .map(crate::model::ActionObject::from)
                            .collect();
                        let silenced = silenced(&mut tx, &resolved, now).await?;
                        let seq =
                            record_event(&mut tx, id, AlertStatus::Resolved, now, silenced).await?;
                        if !silenced {
                            enqueue(&mut tx, seq, &resolved, routes, now).await?;
                        }
                        made.push(StateChange {
                            alert_id: id.clone(),
                            status: AlertStatus::Resolved,
                            silenced,
                        });
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(made)
    }

    /// Adds a silence by key id and/or rule until `expires_at`.
    pub async fn add_silence(&self, s: &Silence) -> Result<(), StoreError> {
        on!(self.db, |e| sqlx::query(
            "INSERT INTO silences (id, key_id, rule, reason, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.key_id)
        .bind(&s.rule)
        .bind(&s.reason)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Every silence ever added, newest first.
    /// Whether an active silence covers `a` at `now` (its notifications are held back).
    pub async fn is_silenced(&self, a: &Alert, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let hit = silenced(&mut tx, a, now).await?;
        tx.rollback().await?;
        Ok(hit)
    }

    pub async fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_as(
            "SELECT id, key_id, rule, reason, created_at, expires_at, removed_at
             FROM silences ORDER BY created_at DESC, id",
        )
        .fetch_all(e)
        .await)?)
    }

    /// Ends a silence now; false when no active silence has this id.
    pub async fn remove_silence(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let n = on!(self.db, |e| {
            sqlx::query(
            "UPDATE silences SET removed_at = $1 WHERE id = $2 AND removed_at IS NULL AND expires_at > $3",
        )
        .bind(now)
        .bind(id)
        .bind(now)
        .execute(e)
        .await
.map(|r| r.rows_affected())
        })?;
        Ok(n > 0)
    }

    /// The alert state changes recorded so far, oldest first (what notifications are made of).
    pub async fn alert_events(&self) -> Result<Vec<StateChange>, StoreError> {
        let rows: Vec<EventRow> = on!(self.db, |e| sqlx::query_as(
            "SELECT alert_id, status, silenced FROM alert_events ORDER BY seq"
        )
        .fetch_all(e)
        .await)?;
        rows.into_iter()
            .map(|r| {
                Ok(StateChange {
                    status: r.status.get(|| format!("alert {}", r.alert_id), "status")?,
                    alert_id: r.alert_id,
                    silenced: r.silenced,
                })
            })
            .collect()
    }
}

/// Inserts a new alert; false when one with this id exists already.
async fn insert_alert(tx: &mut Tx, a: &Alert, now: i64) -> Result<bool, StoreError> {
    let n = on_tx!(tx, |e| {
        sqlx::query(
        "INSERT INTO alerts (id, scope, rule, severity, status, source, key_id, key_name, budget,
            summary, observed, baseline, threshold, unit, period_start, period_end, starts_at,
            ends_at, first_evaluated_at, last_evaluated_at)
         VALUES ($1, $2, $3, $4, 'firing', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, NULL, $17, $18)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&a.id)
    .bind(&a.scope)
    .bind(a.rule)
    .bind(a.severity)
    .bind(&a.source)
    .bind(&a.key_id)
    .bind(&a.key_name)
    .bind(&a.budget)
    .bind(crate::config::secret::redact(&a.summary))
    .bind(a.observed)
    .bind(a.baseline)
    .bind(a.threshold)
    .bind(&a.unit)
    .bind(a.period.map(|p| p.0))
    .bind(a.period.map(|p| p.1))
    .bind(a.starts_at)
    .bind(now)
    .bind(now)
    .execute(e)
    .await
.map(|r| r.rows_affected())
    })?;
    Ok(n > 0)
}

/// Whether the firing alert `a.id` escalates to `a`: a higher severity, or (a budget's stages
/// share one alert per period) a higher threshold crossed. If so the stored alert takes `a`'s
/// severity, numbers and summary and is returned as it now reads (with its actions), to be
/// notified again under the same id.
async fn escalate(tx: &mut Tx, a: &Alert, now: i64) -> Result<Option<Alert>, StoreError> {
    let row: Option<AlertRow> = on_tx!(tx, |e| sqlx::query_as(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND status = 'firing'"
    ))
    .bind(&a.id)
    .fetch_optional(e)
    .await)?;
    let Some(mut stored) = row.map(Alert::try_from).transpose()? else {
        return Ok(None);
    };
    let higher_stage = a.rule == Rule::Budget && a.threshold > stored.threshold;
    if a.severity <= stored.severity && !higher_stage {
        return Ok(None);
    }
    let summary = crate::config::secret::redact(&a.summary).into_owned();
    if higher_stage {
        stored.threshold = a.threshold;
    }
    stored.severity = a.severity.max(stored.severity);
    on_tx!(tx, |e| {
        sqlx::query(
        "UPDATE alerts SET severity = $1, threshold = $2, observed = $3, baseline = $4, summary = $5,
                last_evaluated_at = $6
         WHERE id = $7",
    )
    .bind(stored.severity)
    .bind(stored.threshold)
    .bind(a.observed)
    .bind(a.baseline)
    .bind(&summary)
    .bind(now)
    .bind(&a.id)
    .execute(e)
    .await
.map(|r| r.rows_affected())
    })?;
    stored.observed = a.observed;
    stored.baseline = a.baseline;
    stored.summary = summary;
    stored.actions = super::actions::for_alert(tx, &a.id)
        .await?
        .iter()
        .map(crate::model::ActionObject::from)
        .collect();
    Ok(Some(stored))
}

pub(super) async fn silenced(tx: &mut Tx, a: &Alert, now: i64) -> Result<bool, StoreError> {
    let hit: Option<i64> = on_tx!(tx, |e| sqlx::query_scalar(
        "SELECT CAST(1 AS BIGINT) FROM silences
         WHERE removed_at IS NULL AND expires_at > $1
           AND (key_id IS NULL OR key_id = $2) AND (rule IS NULL OR rule = $3)
         LIMIT 1",
    )
    .bind(now)
    .bind(&a.key_id)
    .bind(a.rule)
    .fetch_optional(e)
    .await)?;
    Ok(hit.is_some())
}

/// Records a state change; returns its sequence number.
pub(super) async fn record_event(
    tx: &mut Tx,
    alert_id: &str,
    status: AlertStatus,
    at: i64,
    silenced: bool,
) -> Result<i64, StoreError> {
    let seq = on_tx!(tx, |e| sqlx::query_scalar(
        "INSERT INTO alert_events (alert_id, status, at, silenced) VALUES ($1, $2, $3, $4)
         RETURNING seq",
    )
    .bind(alert_id)
    .bind(status)
    .bind(at)
    .bind(silenced)
    .fetch_one(e)
    .await)?;
    Ok(seq)
}

impl Store {
    /// Firing alerts per (rule, severity) (for the metrics gauge; zero rows included for every
    /// pair seen before, so a gauge falls back to 0).
    pub async fn firing_counts(&self) -> Result<Vec<((String, String), i64)>, StoreError> {
        let rows: Vec<FiringCount> = on!(self.db, |e| {
            sqlx::query_as(
            "SELECT rule, severity, COUNT(*) FILTER (WHERE status = 'firing') AS firing FROM alerts
             GROUP BY rule, severity",
        )
        .fetch_all(e)
        .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.rule, r.severity), r.firing))
            .collect())
    }
}
