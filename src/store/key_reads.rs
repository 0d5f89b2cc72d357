//! Bounded reads for the HTTP API and the dashboard: one key's usage a page at a time, and one
//! key's per-bucket series packed into a single row (as `samples.rs` does for detection), so
//! a year of 1-minute buckets costs one string, not half a million rows through sqlx.

use super::db::on;
use super::usage::{history_select, HistoryRow};
use super::{tokens, Store, StoreError};

/// Where a page of `/api/v1/usage` ends: the ordering columns of its last row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCursor {
    pub bucket_start: i64,
    pub bucket_width: i64,
    pub source: String,
    pub model: String,
}

/// One bucket of a key, summed over models (and over sources when none is named).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyBucket {
    pub start: i64,
    /// USD; unpriced rows count 0.
    pub cost_usd: f64,
    pub tokens: f64,
    /// Some usage in this bucket is on a model without a price.
    pub unpriced: bool,
}

/// What one page of a key's usage may ask for.
#[derive(Debug, Clone, Copy)]
pub struct UsagePage<'a> {
    pub key_id: &'a str,
    pub source: Option<&'a str>,
    pub width: Option<i64>,
    pub since: i64,
    pub until: i64,
    pub after: Option<&'a UsageCursor>,
    pub limit: u32,
}

impl Store {
    /// At most `limit` of a key's buckets in `[since, until)` after `after`, in the order of
    /// [`Store::history`].
    pub async fn usage_page(&self, q: UsagePage<'_>) -> Result<Vec<HistoryRow>, StoreError> {
        let after = q.after;
        let sql = format!(
            "{}
             WHERE key_id = $1 AND ($2 IS NULL OR source = $3) AND ($4 IS NULL OR bucket_width = $5)
               AND bucket_start >= $6 AND bucket_start < $7
               AND ($8 IS NULL OR (bucket_start, bucket_width, source, model) > ($9, $10, $11, $12))
             ORDER BY bucket_start, bucket_width, source, model
             LIMIT $13",
            history_select()
        );
        Ok(on!(self.db, |e| sqlx::query_as(&sql)
            .bind(q.key_id)
            .bind(q.source)
            .bind(q.source)
            .bind(q.width)
            .bind(q.width)
            .bind(q.since)
            .bind(q.until)
            .bind(after.map(|a| a.bucket_start))
            .bind(after.map(|a| a.bucket_start))
            .bind(after.map(|a| a.bucket_width))
            .bind(after.map(|a| a.source.as_str()))
            .bind(after.map(|a| a.model.as_str()))
            .bind(i64::from(q.limit))
            .fetch_all(e)
            .await)?)
    }

    /// Whether any usage of the key is stored (of `source`, when named).
    pub async fn key_has_usage(
        &self,
        key_id: &str,
        source: Option<&str>,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = on!(self.db, |e| {
            sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM usage_buckets WHERE key_id = $1 AND ($2 IS NULL OR source = $3) LIMIT 1",
        )
        .bind(key_id)
        .bind(source)
        .bind(source)
        .fetch_optional(e)
        .await
        })?;
        Ok(found.is_some())
    }

    /// The key's buckets of `width_secs` starting in `[from, to)`, oldest first.
    pub async fn key_buckets(
        &self,
        key_id: &str,
        source: Option<&str>,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<KeyBucket>, StoreError> {
        let backend = self.db.backend();
        let row = format!(
            "bucket_start || ',' || {} || ',' || {} || ',' || CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END",
            backend.round_int("COALESCE(cost_usd, 0.0) * 1e9"),
            tokens::total("")
        );
        let sql = format!(
            "SELECT {}
             FROM usage_buckets
             WHERE key_id = $1 AND ($2 IS NULL OR source = $3) AND bucket_width = $4
               AND bucket_start >= $5 AND bucket_start < $6",
            backend.string_agg(&row, ";")
        );
        let packed: Option<String> = on!(self.db, |e| sqlx::query_scalar(&sql)
            .bind(key_id)
            .bind(source)
            .bind(source)
            .bind(width_secs)
            .bind(from)
            .bind(to)
            .fetch_one(e)
            .await)?;
        Ok(unpack(packed.as_deref().unwrap_or_default()))
    }
}

/// `start,nano-USD,tokens,unpriced;…` into buckets, sorted, models of one bucket added up.
fn unpack(packed: &str) -> Vec<KeyBucket> {
    let mut out: Vec<KeyBucket> = packed
        .split(';')
        .filter_map(|p| {
            let mut f = p.split(',');
            let start = f.next()?.parse().ok()?;
            let nano: i64 = f.next()?.parse().ok()?;
            let tokens: f64 = f.next()?.parse().ok()?;
            let unpriced = f.next()? == "1";
            Some(KeyBucket {
                start,
                cost_usd: nano as f64 * 1e-9,
                tokens,
                unpriced,
            })
        })
        .collect();
    out.sort_by_key(|b| b.start);
    out.dedup_by(|later, first| {
        if later.start != first.start {
            return false;
        }
        first.cost_usd += later.cost_usd;
        first.tokens += later.tokens;
        first.unpriced |= later.unpriced;
        true
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_adds_models_of_one_bucket() {
        let b = unpack("120,2000000000,10,0;60,500000000,5,0;120,0,7,1;bad");
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].start, b[0].cost_usd, b[0].tokens), (60, 0.5, 5.0));
        assert_eq!((b[1].start, b[1].tokens, b[1].unpriced), (120, 17.0, true));
        assert!((b[1].cost_usd - 2.0).abs() < 1e-12);
        assert!(unpack("").is_empty());
    }
}
