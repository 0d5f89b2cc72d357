//! Billed cost per key and day, as the provider reports it.

use super::db::{on, on_tx, Builder};
use std::collections::{HashMap, HashSet};

use super::{Store, StoreError, COSTS_STREAM};
use crate::providers::{CostLine, UNATTRIBUTED_KEY_ID};

/// One day of a provider's cost report.
#[derive(Debug, Clone, PartialEq)]
pub struct CostDay {
    /// UTC midnight.
    pub day: i64,
    /// USD per key, where the provider reported it; `None` keeps what is stored for the day.
    pub per_key: Option<Vec<(String, f64)>>,
    pub lines: Vec<CostLine>,
}

/// USD of one key on one UTC day (or summed over a span), by source.
#[derive(sqlx::FromRow)]
struct KeyDay {
    source: String,
    key_id: String,
    day_start: i64,
    usd: f64,
}

/// A key's spend over a span, and how much of it is the provider's bill.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spend {
    /// Best known USD: billed for closed, billed UTC days, estimated for the rest.
    pub usd: f64,
    /// The part of `usd` taken from the bill, `None` when no billed day counted.
    pub billed: Option<f64>,
}

impl Spend {
    fn estimated(usd: f64) -> Self {
        Self { usd, billed: None }
    }

    /// The part of `usd` that is keywatch's estimate.
    pub fn estimated_part(&self) -> f64 {
        self.usd - self.billed.unwrap_or(0.0)
    }
}

/// USD of one key over a span.
#[derive(sqlx::FromRow)]
struct KeySpend {
    source: String,
    key_id: String,
    usd: f64,
}

impl Store {
    /// Stores whole days of the provider's cost report (replacing what was stored for those
    /// days) and moves the source's cost cursor, in one transaction.
    pub async fn store_billed(
        &self,
        source: &str,
        days: &[CostDay],
        cursor: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for CostDay {
            day,
            per_key: rows,
            lines,
        } in days
        {
            // A day re-read in full replaces the stored one, so a key whose cost moved to
            // another key (or vanished) does not linger. Without a per-key split in this read,
            // the stored one stays.
            let mut tables = vec!["provider_costs"];
            if rows.is_some() {
                tables.push("billed_costs");
            }
            for table in tables {
                on_tx!(&mut tx, |e| sqlx::query(&format!(
                    "DELETE FROM {table} WHERE source = $1 AND day_start = $2"
                ))
                .bind(source)
                .bind(day)
                .execute(e)
                .await
                .map(|r| r.rows_affected()))?;
            }
            // Lines of one (workspace, cost type, model) summed in the order served: one row
            // each, as PostgreSQL's upsert must not meet a row twice in one statement.
            let mut summed: Vec<(String, &str, String, f64)> = Vec::new();
            let mut at: HashMap<(String, &str, String), usize> = HashMap::new();
            for l in lines {
                let id = (
                    l.workspace_id.clone().unwrap_or_default(),
                    l.cost_type.as_str(),
                    l.model.clone().unwrap_or_default(),
                );
                match at.get(&id) {
                    Some(&i) => summed[i].3 += l.usd,
                    None => {
                        at.insert(id.clone(), summed.len());
                        summed.push((id.0, id.1, id.2, l.usd));
                    }
                }
            }
            for chunk in summed.chunks(100) {
                let mut qb: Builder = Builder::new(
                    "INSERT INTO provider_costs (source, day_start, workspace_id, cost_type, model,
                        amount_usd, updated_at) ",
                );
                qb.push_values(chunk, |mut b, (workspace, cost_type, model, usd)| {
                    b.push_bind(source)
                        .push_bind(day)
                        .push_bind(workspace.as_str())
                        .push_bind(*cost_type)
                        .push_bind(model.as_str())
                        .push_bind(*usd)
                        .push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (source, day_start, workspace_id, cost_type, model) DO UPDATE \
                     SET amount_usd = provider_costs.amount_usd + excluded.amount_usd",
                );
                qb.execute(&mut tx).await?;
            }
            for chunk in rows.iter().flatten().collect::<Vec<_>>().chunks(100) {
                let mut qb: Builder = Builder::new(
                    "INSERT INTO billed_costs (source, day_start, key_id, amount_usd, updated_at) ",
                );
                qb.push_values(chunk, |mut b, &(key, usd)| {
                    b.push_bind(source)
                        .push_bind(day)
                        .push_bind(key)
                        .push_bind(usd)
                        .push_bind(now);
                });
                qb.execute(&mut tx).await?;
            }
        }
        super::poll_state::set_cursor(&mut tx, source, COSTS_STREAM, cursor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Where the next cost poll re-reads from.
    pub async fn billed_cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT cursor FROM poll_state WHERE source = $1 AND stream = $2"
        )
        .bind(source)
        .bind(COSTS_STREAM)
        .fetch_optional(e)
        .await)?
        .flatten())
    }

    /// Billed USD of one key per UTC day in `[from, to)`: (day start, amount).
    pub async fn billed_by_day(
        &self,
        source: Option<&str>,
        key_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, i64, f64)>, StoreError> {
        let rows: Vec<KeyDay> = on!(self.db, |e| {
            sqlx::query_as(
            "SELECT source, key_id, day_start, amount_usd AS usd FROM billed_costs
             WHERE key_id = $1 AND ($2 IS NULL OR source = $3) AND day_start + 86400 > $4 AND day_start < $5
             ORDER BY day_start, source",
        )
        .bind(key_id)
        .bind(source)
        .bind(source)
        .bind(from)
        .bind(to)
        .fetch_all(e)
        .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| (r.source, r.day_start, r.usd))
            .collect())
    }

    /// Spend per (source, key) in `[from, to)`: billed cost for whole UTC days inside the period
    /// that the provider has closed (ended before `today`, the current UTC midnight) and
    /// reported, estimated cost for everything else (the current day, the period's partial
    /// edges, providers without per-key billing).
    ///
    /// Periods of whole local days in `zone` are read from the daily rollup when they hold no
    /// billed figures.
    pub async fn spend_by_key(
        &self,
        width_secs: i64,
        zone: chrono_tz::Tz,
        from: i64,
        to: i64,
        today: i64,
    ) -> Result<Vec<(String, String, f64)>, StoreError> {
        Ok(self
            .spend_and_basis_by_key(width_secs, zone, from, to, today)
            .await?
            .into_iter()
            .map(|(s, k, spend)| (s, k, spend.usd))
            .collect())
    }

    /// [`Store::spend_by_key`] with the billed part of each key's spend: what reports show as
    /// the best known cost and its basis.
    pub async fn spend_and_basis_by_key(
        &self,
        width_secs: i64,
        zone: chrono_tz::Tz,
        from: i64,
        to: i64,
        today: i64,
    ) -> Result<Vec<(String, String, Spend)>, StoreError> {
        // The bill's rows for closed UTC days wholly inside the span.
        let billed: Vec<KeyDay> = on!(self.db, |e| sqlx::query_as(
            "SELECT source, key_id, day_start, amount_usd AS usd FROM billed_costs
             WHERE day_start >= $1 AND day_start + 86400 <= $2 AND day_start + 86400 <= $3",
        )
        .bind(from)
        .bind(to)
        .bind(today)
        .fetch_all(e)
        .await)?;
        // The span's estimate per key: from the rollup where the span is whole local days of a
        // rolled-up zone, else from the buckets.
        let whole = match self.rolled_key_spend(zone, width_secs, from, to).await? {
            Some(sums) => sums,
            None => {
                let rows: Vec<KeySpend> = on!(self.db, |e| {
                    sqlx::query_as(&self.db.backend().real_sums("SELECT source, key_id, SUM_REAL(COALESCE(cost_usd, 0.0)) AS usd FROM usage_buckets
                     WHERE bucket_width = $1 AND bucket_start >= $2 AND bucket_start < $3
                     GROUP BY source, key_id"))
                .bind(width_secs)
                .bind(from)
                .bind(to)
                .fetch_all(e)
                .await
                })?;
                rows.into_iter()
                    .map(|r| (r.source, r.key_id, r.usd))
                    .collect()
            }
        };
        // Without billed figures (no per-key billing, or none closed yet) the estimate is the
        // whole answer.
        if billed.is_empty() {
            return Ok(whole
                .into_iter()
                .map(|(s, k, usd)| (s, k, Spend::estimated(usd)))
                .collect());
        }
        // Each key's estimate on the billed days (from the UTC rollup: UTC is always rolled
        // up), and the rest of its span's estimate as one more, unbilled, part. On a billed day,
        // the day's estimate stands for each key the bill has no row of its own for (its cost
        // went to `unattributed`, or was left out), so a key's spend never drops below its
        // estimate for lack of attribution.
        let days: HashSet<(&str, i64)> = billed
            .iter()
            .map(|r| (r.source.as_str(), r.day_start))
            .collect();
        let first = days.iter().map(|d| d.1).min().unwrap_or(from);
        let last = days.iter().map(|d| d.1).max().unwrap_or(from);
        let on_days: Vec<KeyDay> = on!(self.db, |e| {
            sqlx::query_as(&self.db.backend().real_sums("SELECT source, key_id, day * 86400 AS day_start, SUM_REAL(cost_usd) AS usd FROM usage_daily
             WHERE zone = 'UTC' AND bucket_width = $1 AND day >= $2 AND day <= $3 AND buckets > 0
             GROUP BY source, key_id, day"))
        .bind(width_secs)
        .bind(first.div_euclid(86_400))
        .bind(last.div_euclid(86_400))
        .fetch_all(e)
        .await
        })?;
        let mut rest: HashMap<(String, String), f64> =
            whole.into_iter().map(|(s, k, usd)| ((s, k), usd)).collect();
        let mut estimated: Vec<((String, String, i64), f64, bool)> = Vec::new();
        for r in on_days {
            if !days.contains(&(r.source.as_str(), r.day_start)) {
                continue;
            }
            if let Some(usd) = rest.get_mut(&(r.source.clone(), r.key_id.clone())) {
                *usd -= r.usd;
            }
            estimated.push(((r.source, r.key_id, r.day_start), r.usd, true));
        }
        // The unbilled rest as a day that is never billed.
        estimated.extend(
            rest.into_iter()
                .map(|((s, k), usd)| ((s, k, i64::MIN), usd.max(0.0), false)),
        );
        let billed: HashMap<(String, String, i64), f64> = billed
            .into_iter()
            .map(|r| ((r.source, r.key_id, r.day_start), r.usd))
            .collect();
        Ok(attribute(estimated.into_iter(), billed))
    }
}

/// Spend per (source, key) from estimates per (source, key, UTC day) — each with whether the
/// provider billed that source's day — and the bill's rows per (source, key, day).
///
/// A billed row replaces the key's estimate for its day. A key the bill has no row for on a
/// billed day keeps its estimate, and the source's `unattributed` row for that day shrinks by
/// as much (not below 0): that cost is already in it, and the organisation's total stays the
/// bill's.
fn attribute(
    estimated: impl Iterator<Item = ((String, String, i64), f64, bool)>,
    billed: HashMap<(String, String, i64), f64>,
) -> Vec<(String, String, Spend)> {
    let mut sums: HashMap<(String, String), Spend> = HashMap::new();
    // Estimates moved back to their keys, per (source, day).
    let mut moved: HashMap<(String, i64), f64> = HashMap::new();
    for ((source, key, day), usd, billed_day) in estimated {
        if billed_day && billed.contains_key(&(source.clone(), key.clone(), day)) {
            continue;
        }
        if billed_day && key != UNATTRIBUTED_KEY_ID {
            *moved.entry((source.clone(), day)).or_default() += usd;
        }
        sums.entry((source, key)).or_default().usd += usd;
    }
    for ((source, key, day), usd) in billed {
        let usd = if key == UNATTRIBUTED_KEY_ID {
            let taken = moved.get(&(source.clone(), day)).copied().unwrap_or(0.0);
            (usd - taken).max(0.0)
        } else {
            usd
        };
        let spend = sums.entry((source, key)).or_default();
        spend.usd += usd;
        spend.billed = Some(spend.billed.unwrap_or(0.0) + usd);
    }
    sums.into_iter()
        .map(|((s, k), spend)| (s, k, spend))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_without_a_billed_row_keeps_its_estimate_and_unattributed_shrinks() {
        let day = 86_400;
        let k = |key: &str, d: i64| ("openai".to_owned(), key.to_owned(), d);
        let estimated = vec![
            (k("key_a", day), 4.0, true),
            (k("key_b", day), 3.0, true),
            (k("key_b", 2 * day), 1.0, false),
        ];
        let billed = HashMap::from([(k("key_a", day), 5.0), (k(UNATTRIBUTED_KEY_ID, day), 3.2)]);
        let mut got = attribute(estimated.into_iter(), billed);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        let usd: Vec<(&str, f64)> = got.iter().map(|(_, k, u)| (k.as_str(), u.usd)).collect();
        assert_eq!(usd.len(), 3);
        assert_eq!(
            usd[0],
            ("key_a", 5.0),
            "the billed row replaces the estimate"
        );
        assert_eq!(usd[1], ("key_b", 4.0), "its estimate on both days");
        assert_eq!(usd[2].0, UNATTRIBUTED_KEY_ID);
        assert!((usd[2].1 - 0.2).abs() < 1e-9, "3.2 less the 3.0 moved back");
        assert_eq!(got[0].2.billed, Some(5.0));
        assert_eq!(got[0].2.estimated_part(), 0.0);
        assert_eq!(got[1].2.billed, None, "key_b is all estimate");
    }
}
