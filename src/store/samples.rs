//! The reads detection needs: per-key bucket series and per-key spend over a period.

use futures_util::TryStreamExt;

use super::decode::Count;
use super::{tokens, Store, StoreError};
use crate::detect::SpikeMetric;

/// One key's buckets, oldest first: (bucket start, value of the metric). Unpriced rows count
/// 0 USD for the cost metric.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySeries {
    pub source: String,
    pub key_id: String,
    pub points: Vec<(i64, f64)>,
}

/// One key's buckets packed as `start,value;…` (see [`Store::usage_series`]).
#[derive(sqlx::FromRow)]
struct PackedSeries {
    source: String,
    key_id: String,
    packed: String,
}

/// One deactivated key's usage in a bucket (see [`Store::deactivated_key_usage`]).
#[derive(sqlx::FromRow)]
struct KeyUsage {
    source: String,
    key_id: String,
    cost_usd: f64,
    #[sqlx(try_from = "Count")]
    tokens: i64,
}

impl Store {
    /// Every key's buckets of `width_secs` starting in `[from, to]`, summed over models.
    ///
    /// One scan in primary-key order, grouped by key without a sort, returning one row per key
    /// with its buckets packed as text (`start,cost,tokens;…`): moving 1.7 million rows one by
    /// one through sqlx's worker thread costs several seconds, one row per key a few
    /// milliseconds. Rows of several models in one bucket are added up while unpacking.
    ///
    /// Cost travels as whole nano-dollars: integers print and parse faster than floats.
    pub async fn usage_series(
        &self,
        width_secs: i64,
        from: i64,
        to: i64,
        metric: SpikeMetric,
    ) -> Result<Vec<KeySeries>, StoreError> {
        let value = match metric {
            SpikeMetric::Cost => "CAST(ROUND(COALESCE(cost_usd, 0.0) * 1e9) AS INTEGER)".to_owned(),
            SpikeMetric::Tokens => tokens::total(""),
        };
        let scale = match metric {
            SpikeMetric::Cost => 1e-9,
            SpikeMetric::Tokens => 1.0,
        };
        let sql = format!(
            "SELECT source, key_id, group_concat(bucket_start || ',' || ({value}), ';') AS packed
             FROM usage_buckets
             WHERE bucket_width = ? AND bucket_start >= ? AND bucket_start <= ?
             GROUP BY source, key_id
             ORDER BY source, key_id"
        );
        let mut rows = sqlx::query_as::<_, PackedSeries>(&sql)
            .bind(width_secs)
            .bind(from)
            .bind(to)
            .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(r) = rows.try_next().await? {
            out.push(KeySeries {
                points: unpack(&r.packed, scale),
                source: r.source,
                key_id: r.key_id,
            });
        }
        Ok(out)
    }

    /// Usage in the bucket at `start` of keys whose status is deactivated:
    /// (source, key id, cost in USD, tokens).
    pub async fn deactivated_key_usage(
        &self,
        width_secs: i64,
        start: i64,
    ) -> Result<Vec<(String, String, f64, i64)>, StoreError> {
        let sql = format!(
            "SELECT u.source AS source, u.key_id AS key_id,
                    SUM(COALESCE(u.cost_usd, 0.0)) AS cost_usd, SUM({}) AS tokens
             FROM usage_buckets u JOIN api_keys k ON k.source = u.source AND k.key_id = u.key_id
             WHERE k.status IN ('inactive', 'archived', 'expired', 'deleted')
               AND u.bucket_width = ? AND u.bucket_start = ?
             GROUP BY u.source, u.key_id",
            tokens::total("u.")
        );
        let rows: Vec<KeyUsage> = sqlx::query_as(&sql)
            .bind(width_secs)
            .bind(start)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.source, r.key_id, r.cost_usd, r.tokens))
            .collect())
    }
}

/// Parses `start,value;…` into points sorted by start (values times `scale`), adding up rows
/// of one bucket (several models).
fn unpack(packed: &str, scale: f64) -> Vec<(i64, f64)> {
    let mut points: Vec<(i64, f64)> = packed
        .split(';')
        .filter_map(|p| {
            let (start, value) = p.split_once(',')?;
            Some((
                start.parse().ok()?,
                value.parse::<i64>().ok()? as f64 * scale,
            ))
        })
        .collect();
    points.sort_by_key(|p| p.0);
    points.dedup_by(|later, first| {
        if later.0 != first.0 {
            return false;
        }
        first.1 += later.1;
        true
    });
    points
}

#[cfg(test)]
mod tests {
    use super::unpack;

    #[test]
    fn unpack_sorts_and_adds_models_of_one_bucket() {
        assert_eq!(
            unpack("7200,10;3600,5;7200,30", 0.5),
            [(3600, 2.5), (7200, 20.0)]
        );
    }
}
