//! The reads behind `keywatch report`: usage summed per period, key and model in SQLite.

use sqlx::Row;

use super::{Store, StoreError};
use crate::prices::TokenCounts;

/// Usage of one key and model in one period.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodUsage {
    /// Index into the periods passed to [`Store::usage_by_period`].
    pub period: usize,
    pub source: String,
    pub key_id: String,
    pub model: String,
    pub tokens: TokenCounts,
    /// `None` when the provider reports no request counts.
    pub requests: Option<i64>,
    /// Estimated USD of priced rows.
    pub cost_usd: f64,
    /// Tokens of rows without a price.
    pub unpriced_tokens: i64,
}

/// A row of the period queries: period, source, key, model, the five token classes, requests,
/// estimated USD, unpriced tokens.
pub(super) fn period_usage(r: &sqlx::sqlite::SqliteRow) -> PeriodUsage {
    PeriodUsage {
        period: r.get::<i64, _>(0) as usize,
        source: r.get(1),
        key_id: r.get(2),
        model: r.get(3),
        tokens: super::token_columns(r, 4),
        requests: super::count_or_none(r, 9),
        cost_usd: r.get(10),
        unpriced_tokens: super::count(r, 11),
    }
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
            let rows = sqlx::query(
                "SELECT (bucket_start - ?1) / ?2 + ?3 AS p, source, key_id, model,
                        SUM(uncached_input_tokens), SUM(cache_read_input_tokens),
                        SUM(cache_write_5m_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens),
                        SUM(requests), SUM(COALESCE(cost_usd, 0.0)),
                        SUM(CASE WHEN cost_usd IS NULL THEN uncached_input_tokens + cache_read_input_tokens
                            + cache_write_5m_tokens + cache_write_1h_tokens + output_tokens ELSE 0 END)
                 FROM usage_buckets
                 WHERE bucket_width = ?4 AND bucket_start >= ?1 AND bucket_start < ?5
                 GROUP BY p, source, key_id, model
                 ORDER BY p, source, key_id, model",
            )
            .bind(start)
            .bind(len)
            .bind(i as i64)
            .bind(width_secs)
            .bind(periods[j - 1].1)
            .fetch_all(&self.pool)
            .await?;
            out.extend(rows.iter().map(period_usage));
            i = j;
        }
        Ok(out)
    }

    /// Billed USD per period, source and key, for UTC days starting inside each period.
    pub async fn billed_by_period(
        &self,
        periods: &[(i64, i64)],
    ) -> Result<Vec<(usize, String, String, f64)>, StoreError> {
        let spans = serde_json::to_string(periods).unwrap_or_else(|_| "[]".to_owned());
        let rows = sqlx::query(
            "SELECT p.key, b.source, b.key_id, SUM(b.amount_usd)
             FROM json_each(?) p
             JOIN billed_costs b ON b.day_start >= p.value ->> 0 AND b.day_start < p.value ->> 1
             GROUP BY p.key, b.source, b.key_id",
        )
        .bind(spans)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get::<i64, _>(0) as usize, r.get(1), r.get(2), r.get(3)))
            .collect())
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
    /// Billed cost types other than tokens (e.g. `web_search`, `code_execution`) with USD.
    pub other_cost_types: Vec<(String, f64)>,
}

impl Store {
    /// Estimate against billed cost per source and UTC day, for days starting in `[from, to)`.
    pub async fn reconcile(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<ReconcileDay>, StoreError> {
        let estimated = sqlx::query(
            "SELECT source, (bucket_start / 86400) * 86400 AS day, SUM(COALESCE(cost_usd, 0.0)),
                    group_concat(DISTINCT CASE WHEN cost_usd IS NULL THEN model END)
             FROM usage_buckets WHERE bucket_width = ? AND bucket_start >= ? AND bucket_start < ?
             GROUP BY source, day",
        )
        .bind(width_secs)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let billed = sqlx::query(
            "SELECT source, day_start, cost_type, SUM(amount_usd) FROM provider_costs
             WHERE day_start >= ? AND day_start < ? GROUP BY source, day_start, cost_type",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut days: std::collections::BTreeMap<(String, i64), ReconcileDay> = Default::default();
        for r in estimated {
            let (source, day): (String, i64) = (r.get(0), r.get(1));
            let unpriced: Option<String> = r.get(3);
            days.insert(
                (source.clone(), day),
                ReconcileDay {
                    source,
                    day,
                    estimated_usd: r.get(2),
                    billed_usd: None,
                    unpriced_models: unpriced
                        .map(|m| m.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    other_cost_types: Vec::new(),
                },
            );
        }
        for r in billed {
            let (source, day, cost_type, usd): (String, i64, String, f64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let d = days
                .entry((source.clone(), day))
                .or_insert_with(|| ReconcileDay {
                    source,
                    day,
                    estimated_usd: 0.0,
                    billed_usd: None,
                    unpriced_models: Vec::new(),
                    other_cost_types: Vec::new(),
                });
            d.billed_usd = Some(d.billed_usd.unwrap_or(0.0) + usd);
            if !matches!(cost_type.as_str(), "tokens" | "billed") && usd > 0.0 {
                d.other_cost_types.push((cost_type, usd));
            }
        }
        Ok(days.into_values().collect())
    }
}
