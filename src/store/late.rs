//! Usage that arrived late (#17): a re-read's change in buckets the cursor had passed, per
//! source and UTC day, kept for `report --reconcile`.

use super::db::{on, on_tx};
use super::{tokens, Store, StoreError};

/// A source's estimated USD and tokens in one UTC day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayUsage {
    pub day: i64,
    pub usd: f64,
    pub tokens: i64,
}

impl Store {
    /// Estimated USD and tokens per UTC day of `source`'s buckets of `width_secs` starting in
    /// `[from, to)`.
    pub async fn usage_by_day(
        &self,
        source: &str,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayUsage>, StoreError> {
        let backend = self.db.backend();
        let sql = format!(
            "SELECT bucket_start / 86400 * 86400 AS day, {}, {}
             FROM usage_buckets
             WHERE source = $1 AND bucket_width = $2 AND bucket_start >= $3 AND bucket_start < $4
             GROUP BY day ORDER BY day",
            backend.total("cost_usd"),
            backend.total(&tokens::total(""))
        );
        let rows: Vec<(i64, f64, f64)> = on!(self.db, |e| sqlx::query_as(&sql)
            .bind(source)
            .bind(width_secs)
            .bind(from)
            .bind(to)
            .fetch_all(e)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(day, usd, tokens)| DayUsage {
                day,
                usd,
                // `as` saturates for floats beyond i64.
                tokens: tokens as i64,
            })
            .collect())
    }

    /// Adds what arrived late to `source`'s days.
    pub async fn add_late_usage(
        &self,
        source: &str,
        days: &[DayUsage],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for d in days {
            on_tx!(&mut tx, |e| sqlx::query(
                "INSERT INTO late_usage (source, day_start, usd, tokens, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (source, day_start) DO UPDATE SET
                    usd = late_usage.usd + excluded.usd,
                    tokens = late_usage.tokens + excluded.tokens,
                    updated_at = excluded.updated_at",
            )
            .bind(source)
            .bind(d.day)
            .bind(d.usd)
            .bind(d.tokens)
            .bind(now)
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What arrived late per (source, UTC day) for days starting in `[from, to)`.
    pub async fn late_usage(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, DayUsage)>, StoreError> {
        let rows: Vec<(String, i64, f64, i64)> = on!(self.db, |e| sqlx::query_as(
            "SELECT source, day_start, usd, tokens FROM late_usage
             WHERE day_start >= $1 AND day_start < $2 ORDER BY source, day_start",
        )
        .bind(from)
        .bind(to)
        .fetch_all(e)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(s, day, usd, tokens)| (s, DayUsage { day, usd, tokens }))
            .collect())
    }
}

/// Per day, `after` less `before` (days in either), keeping the days whose tokens changed: a
/// day whose dollars alone changed was priced again (new prices), not added to.
pub fn changed_days(before: &[DayUsage], after: &[DayUsage]) -> Vec<DayUsage> {
    let mut days: std::collections::BTreeMap<i64, DayUsage> = std::collections::BTreeMap::new();
    for a in after {
        days.insert(a.day, *a);
    }
    for b in before {
        let d = days.entry(b.day).or_insert(DayUsage {
            day: b.day,
            usd: 0.0,
            tokens: 0,
        });
        d.usd -= b.usd;
        d.tokens = d.tokens.saturating_sub(b.tokens);
    }
    days.into_values().filter(|d| d.tokens != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_days_that_changed_are_kept() {
        let d = |day, usd, tokens| DayUsage { day, usd, tokens };
        let before = [d(0, 1.0, 10), d(86_400, 2.0, 20)];
        let after = [d(0, 1.5, 10), d(86_400, 2.5, 25), d(172_800, 0.5, 5)];
        assert_eq!(
            changed_days(&before, &after),
            [d(86_400, 0.5, 5), d(172_800, 0.5, 5)],
            "day 0 was priced again, not added to"
        );
    }
}
