//! The reads behind `keywatch report`: usage summed per period, key and model in SQLite.

use super::db::on;
use chrono_tz::Tz;

use super::decode::{Count, JsonCount};
use super::packed::{packed_in_order, real, unpack, Real};
use super::rollup::local_midnight_day;
use super::{tokens, Store, StoreError};
use crate::prices::TokenCounts;

/// Usage of one key and model in one period: a row of the period queries.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PeriodUsage {
    /// Index into the periods passed to [`Store::usage_by_period`].
    #[sqlx(try_from = "i64")]
    pub period: usize,
    pub source: String,
    pub key_id: String,
    pub model: String,
    #[sqlx(flatten)]
    pub tokens: TokenCounts,
    /// `None` when the provider reports no request counts.
    #[sqlx(try_from = "Count")]
    pub requests: Option<i64>,
    /// Estimated USD of priced rows.
    pub cost_usd: f64,
    /// Tokens of rows without a price.
    #[sqlx(try_from = "Count")]
    pub unpriced_tokens: i64,
}

/// A [`PeriodUsage`] as a packed row: period, source, key, model, the token columns (in
/// `tokens::TOKEN_COLUMNS` order), requests, USD, unpriced tokens.
type PackedPeriodUsage = (
    usize,
    String,
    String,
    String,
    JsonCount,
    JsonCount,
    JsonCount,
    JsonCount,
    JsonCount,
    JsonCount,
    Real,
    JsonCount,
);

impl From<PackedPeriodUsage> for PeriodUsage {
    fn from(r: PackedPeriodUsage) -> Self {
        let (period, source, key_id, model, t0, t1, t2, t3, t4, requests, cost_usd, unpriced) = r;
        let [uncached_input, cache_read, cache_write_5m, cache_write_1h, output] =
            [t0, t1, t2, t3, t4].map(|c| c.0.unwrap_or(0));
        PeriodUsage {
            period,
            source,
            key_id,
            model,
            tokens: TokenCounts {
                uncached_input,
                cache_read,
                cache_write_5m,
                cache_write_1h,
                output,
            },
            requests: requests.0,
            cost_usd: cost_usd.0,
            unpriced_tokens: unpriced.0.unwrap_or(0),
        }
    }
}

/// keywatch's estimate of one source and UTC day (see [`Store::reconcile`]).
#[derive(sqlx::FromRow)]
struct DayEstimate {
    source: String,
    day: i64,
    estimated_usd: f64,
    /// Comma-separated, `None` when every model had a price.
    unpriced_models: Option<String>,
}

/// One cost type of a provider's report for one source and UTC day.
#[derive(sqlx::FromRow)]
struct DayBilled {
    source: String,
    day_start: i64,
    cost_type: String,
    usd: f64,
}

impl Store {
    /// Usage of `width_secs` buckets summed per period (`[start, end)` pairs, in order, local
    /// days, weeks or months of `zone`), source, key and model: from the daily rollup when the
    /// zone is rolled up, else from the buckets.
    pub async fn usage_by_period(
        &self,
        width_secs: i64,
        zone: chrono_tz::Tz,
        periods: &[(i64, i64)],
    ) -> Result<Vec<PeriodUsage>, StoreError> {
        if let Some(rows) = self.usage_by_days(width_secs, zone, periods).await? {
            return Ok(rows);
        }
        self.usage_by_period_from_buckets(width_secs, periods).await
    }

    /// Usage summed per period, source, key and model from the rollup, when every period is
    /// whole local days in a rolled-up `zone` (days, weeks and months of a report); else `None`.
    pub async fn usage_by_days(
        &self,
        width_secs: i64,
        zone: Tz,
        periods: &[(i64, i64)],
    ) -> Result<Option<Vec<PeriodUsage>>, StoreError> {
        let mut days = Vec::with_capacity(periods.len());
        for &(start, end) in periods {
            match (
                local_midnight_day(zone, start),
                local_midnight_day(zone, end),
            ) {
                (Some(a), Some(b)) => days.push((a, b)),
                _ => return Ok(None),
            }
        }
        if periods.is_empty() || !self.rolled_up(zone).await? {
            return Ok(None);
        }
        let spans = serde_json::to_string(&days).unwrap_or_else(|_| "[]".to_owned());
        let backend = self.db.backend();
        // The spans, numbered from 0 in the order given.
        let spans_table = backend.json_spans(1, "p");
        let query = format!(
            "SELECT p.key AS period, u.source AS source, u.key_id AS key_id, u.model AS model,
                    {},
                    CASE WHEN SUM(u.requests_buckets) > 0 THEN SUM(u.requests) END AS requests,
                    {} AS cost_usd, SUM(u.unpriced_tokens) AS unpriced_tokens
             FROM {spans_table}
             JOIN usage_daily u ON u.zone = $2 AND u.bucket_width = $3
                  AND u.day >= CAST(p.value ->> 0 AS BIGINT) AND u.day < CAST(p.value ->> 1 AS BIGINT)
                  AND u.buckets > 0
             GROUP BY p.key, u.source, u.key_id, u.model",
            tokens::sums("u."),
            backend.sum_real("u.cost_usd")
        );
        // One packed row (see `packed`): 30 days by key at 10,000 keys is 310,000 rows, which
        // sqlx handed over one by one in 1.5–2.2 s.
        let sql = packed_in_order(
            backend,
            &format!(
                "period, source, key_id, model, {}, requests, {}, unpriced_tokens",
                tokens::list(),
                real(backend, "cost_usd")
            ),
            &query,
            "period, source, key_id, model",
        );
        let text: String = on!(self.db, |e| sqlx::query_scalar(&sql)
            .bind(spans)
            .bind(zone.name())
            .bind(width_secs)
            .fetch_one(e)
            .await)?;
        let rows: Vec<PackedPeriodUsage> = unpack(&text)?;
        Ok(Some(rows.into_iter().map(PeriodUsage::from).collect()))
    }

    /// [`Store::usage_by_period`] summed from the buckets, for any periods.
    ///
    /// Runs of contiguous periods of equal length (days without a DST change, weeks) are read
    /// with one scan each, the period index computed from `bucket_start`; a DST day or a month
    /// starts a new run. One scan per run instead of one per period.
    pub async fn usage_by_period_from_buckets(
        &self,
        width_secs: i64,
        periods: &[(i64, i64)],
    ) -> Result<Vec<PeriodUsage>, StoreError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < periods.len() {
            let (start, len) = (periods[i].0, (periods[i].1 - periods[i].0).max(1));
            let mut j = i + 1;
            while j < periods.len()
                && periods[j].0 == periods[j - 1].1
                && periods[j].1 - periods[j].0 == len
            {
                j += 1;
            }
            let sql = self.db.backend().real_sums(&format!(
                "SELECT (bucket_start - $1) / $2 + $3 AS period, source, key_id, model,
                        {}, SUM(requests) AS requests, SUM_REAL(COALESCE(cost_usd, 0.0)) AS cost_usd,
                        SUM(CASE WHEN cost_usd IS NULL THEN {} ELSE 0 END) AS unpriced_tokens
                 FROM usage_buckets
                 WHERE bucket_width = $4 AND bucket_start >= $1 AND bucket_start < $5
                 GROUP BY period, source, key_id, model
                 ORDER BY period, source, key_id, model",
                tokens::sums(""),
                tokens::total("")
            )).into_owned();
            let rows: Vec<PeriodUsage> = on!(self.db, |e| sqlx::query_as(&sql)
                .bind(start)
                .bind(len)
                .bind(i as i64)
                .bind(width_secs)
                .bind(periods[j - 1].1)
                .fetch_all(e)
                .await)?;
            out.extend(rows);
            i = j;
        }
        Ok(out)
    }
}

/// One source and UTC day: keywatch's estimate against the provider's own cost report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileDay {
    pub source: String,
    pub day: i64,
    pub estimated_usd: f64,
    /// `None` when the provider has reported nothing for the day (yet).
    pub billed_usd: Option<f64>,
    /// Models used that day without a price.
    pub unpriced_models: Vec<String>,
    /// Billed cost types the estimate does not cover (e.g. `code_execution`) with USD.
    pub other_cost_types: Vec<(String, f64)>,
    /// Estimated USD that re-reads found after the cursor had passed the buckets (arrived
    /// late), when any did.
    pub late_usd: Option<f64>,
}

impl Store {
    /// Estimate against billed cost per source and UTC day, for days starting in `[from, to)`.
    pub async fn reconcile(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<ReconcileDay>, StoreError> {
        let backend = self.db.backend();
        let sql = format!(
            "SELECT source, (bucket_start / 86400) * 86400 AS day,
                    {} AS estimated_usd, {} AS unpriced_models
             FROM usage_buckets WHERE bucket_width = $1 AND bucket_start >= $2 AND bucket_start < $3
             GROUP BY source, day",
            backend.sum_real("COALESCE(cost_usd, 0.0)"),
            backend.string_agg_distinct("CASE WHEN cost_usd IS NULL THEN model END")
        );
        let estimated: Vec<DayEstimate> = on!(self.db, |e| sqlx::query_as(&sql)
            .bind(width_secs)
            .bind(from)
            .bind(to)
            .fetch_all(e)
            .await)?;
        let billed: Vec<DayBilled> = on!(self.db, |e| {
            sqlx::query_as(&self.db.backend().real_sums("SELECT source, day_start, cost_type, SUM_REAL(amount_usd) AS usd FROM provider_costs
             WHERE day_start >= $1 AND day_start < $2 GROUP BY source, day_start, cost_type"))
        .bind(from)
        .bind(to)
        .fetch_all(e)
        .await
        })?;
        let mut days: std::collections::BTreeMap<(String, i64), ReconcileDay> = Default::default();
        for r in estimated {
            days.insert(
                (r.source.clone(), r.day),
                ReconcileDay {
                    source: r.source,
                    day: r.day,
                    estimated_usd: r.estimated_usd,
                    billed_usd: None,
                    unpriced_models: r
                        .unpriced_models
                        .map(|m| m.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    other_cost_types: Vec::new(),
                    late_usd: None,
                },
            );
        }
        for DayBilled {
            source,
            day_start: day,
            cost_type,
            usd,
        } in billed
        {
            let d = days
                .entry((source.clone(), day))
                .or_insert_with(|| ReconcileDay {
                    source,
                    day,
                    estimated_usd: 0.0,
                    billed_usd: None,
                    unpriced_models: Vec::new(),
                    other_cost_types: Vec::new(),
                    late_usd: None,
                });
            d.billed_usd = Some(d.billed_usd.unwrap_or(0.0) + usd);
            // Web search is in the estimate (priced per search since #17).
            if !matches!(cost_type.as_str(), "tokens" | "billed" | "web_search") && usd > 0.0 {
                d.other_cost_types.push((cost_type, usd));
            }
        }
        for (source, late) in self.late_usage(from, to).await? {
            if let Some(d) = days.get_mut(&(source, late.day)) {
                d.late_usd = Some(late.usd);
            }
        }
        Ok(days.into_values().collect())
    }
}
