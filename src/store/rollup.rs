//! Daily spend per key in the configured time zones (`usage_daily`), kept by triggers on
//! `usage_buckets` (see the migration). Readers ask for whole local days; a zone that is not
//! rolled up, or a span that does not start and end at local midnights, answers `None` and the
//! caller reads the buckets instead.

use super::db::{fenced, on, on_tx, Builder};
use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::packed::{packed, real, unpack, Real};
use super::{tokens, Store, StoreError};

const DAY: i64 = 86_400;

/// Transitions are computed from 1970 to 2200; the offset in force at 1970 applies before.
const FIRST: i64 = 0;
const LAST: i64 = 7_258_118_400;

fn offset_at(zone: Tz, ts: i64) -> i64 {
    let utc = DateTime::<Utc>::from_timestamp(ts, 0).unwrap_or_default();
    i64::from(
        zone.offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// `(from_ts, offset)` rows for `zone`: the first at `i64::MIN`, then one per offset change,
/// each found to the second by bisection between daily samples.
pub fn zone_offsets(zone: Tz) -> Vec<(i64, i64)> {
    let mut out = vec![(i64::MIN, offset_at(zone, FIRST))];
    let mut t = FIRST;
    let mut current = out[0].1;
    while t < LAST {
        let next = t + DAY;
        let off = offset_at(zone, next);
        if off != current {
            // The change happens in (t, next]: find the first second with the new offset.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(zone, mid) == current {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push((hi, off));
            current = off;
        }
        t = next;
    }
    out
}

/// The local day number (days since 1970-01-01 in `zone`) that `ts` falls in, as the rollup's
/// triggers count it.
pub(super) fn local_day(zone: Tz, ts: i64) -> i64 {
    ts.saturating_add(offset_at(zone, ts)).div_euclid(DAY)
}

/// The local day number (days since 1970-01-01 in `zone`) that starts exactly at `ts`, or
/// `None` when `ts` is not a local midnight.
pub fn local_midnight_day(zone: Tz, ts: i64) -> Option<i64> {
    let local = ts + offset_at(zone, ts);
    (local.rem_euclid(DAY) == 0).then(|| local.div_euclid(DAY))
}

/// Spend of one key on one local day.
#[derive(Debug, Clone, PartialEq)]
pub struct DaySpend {
    /// Days after the first day asked for.
    pub day: usize,
    pub source: String,
    pub key_id: String,
    pub cost_usd: f64,
}

/// Spend per local day of the `n` keys that spent most over a span, and of all the others
/// together: what the dashboard's stacked chart draws.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopSpend {
    /// `(source, key_id)`, most spent first.
    pub keys: Vec<(String, String)>,
    /// Per key in `keys`, spend per day.
    pub days: Vec<Vec<f64>>,
    /// The other keys together per day; `None` when there are no others.
    pub other: Option<Vec<f64>>,
}

impl TopSpend {
    /// From every key's per-day rows (the path without a rollup).
    pub fn from_rows(rows: &[DaySpend], n_days: usize, n: usize) -> Self {
        let mut totals: std::collections::HashMap<(&str, &str), f64> = Default::default();
        for r in rows {
            *totals.entry((&r.source, &r.key_id)).or_default() += r.cost_usd;
        }
        let mut ranked: Vec<_> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let keys: Vec<(String, String)> = ranked
            .iter()
            .take(n)
            .map(|((s, k), _)| ((*s).to_owned(), (*k).to_owned()))
            .collect();
        let mut days = vec![vec![0.0; n_days]; keys.len()];
        let mut other = (ranked.len() > n).then(|| vec![0.0; n_days]);
        for r in rows.iter().filter(|r| r.day < n_days) {
            match keys
                .iter()
                .position(|(s, k)| *s == r.source && *k == r.key_id)
            {
                Some(i) => days[i][r.day] += r.cost_usd,
                None => {
                    if let Some(o) = other.as_mut() {
                        o[r.day] += r.cost_usd;
                    }
                }
            }
        }
        Self { keys, days, other }
    }
}

/// Spend of one key on one local day, as the rollup queries return it.
#[derive(sqlx::FromRow)]
struct DayRow {
    /// Days since 1970-01-01 in the zone.
    day: i64,
    source: String,
    key_id: String,
    usd: f64,
}

/// A key of the top spenders.
#[derive(sqlx::FromRow)]
struct KeyRow {
    source: String,
    key_id: String,
}

/// Spend of all keys on one local day.
#[derive(sqlx::FromRow)]
struct DayTotal {
    day: i64,
    usd: f64,
}

/// Spend of one key per local day over `[first, end)` (local day numbers).
const DAY_SPEND: &str = "SELECT day, source, key_id, SUM_REAL(cost_usd) AS usd FROM usage_daily
     WHERE zone = $1 AND bucket_width = $2 AND day >= $3 AND day < $4 AND buckets > 0";

/// Spend per key over `[?3, $4)` (local day numbers). SQLite sorts the span's rows by key
/// (460 ms for 30 days at 10,000 keys): an index by key would avoid that, but at 10,000 keys
/// keeping it up doubled the backfill (every hour-wide page rewrote its pages in every key's
/// place), so multi-day spans pay at read time instead.
const KEY_SPEND: &str = "SELECT source, key_id, SUM_REAL(cost_usd) AS usd FROM usage_daily
     WHERE zone = $1 AND bucket_width = $2 AND day >= $3 AND day < $4 AND buckets > 0
     GROUP BY source, key_id";

/// [`KEY_SPEND`] for one day, `?3`: with `day` fixed, the primary key is already in key order,
/// so nothing is sorted (12 ms at 10,000 keys instead of 46 ms). `?4` (`?3 + 1`) is only
/// compared with `?3`, so both queries take the same binds; a `day < $4` would let SQLite
/// plan a range and sort again.
const ONE_DAY_KEY_SPEND: &str = "SELECT source, key_id, SUM_REAL(cost_usd) AS usd FROM usage_daily
     WHERE zone = $1 AND bucket_width = $2 AND day = $3 AND $4 > $3 AND buckets > 0
     GROUP BY source, key_id";

impl Store {
    /// [`TopSpend`] over `[from, to)`, local midnights in `zone`, read from the rollup in three
    /// small queries (totals per key, the top keys per day, all keys per day); `None` when the
    /// zone is not rolled up or the span is not whole local days. A store
    /// [with a day cache](Store::with_day_cache) sums the same rows in memory instead.
    pub async fn top_daily_spend(
        &self,
        zone: Tz,
        width_secs: i64,
        from: i64,
        to: i64,
        n: usize,
    ) -> Result<Option<TopSpend>, StoreError> {
        let Some((first, end)) = self.rolled_days(zone, from, to).await? else {
            return Ok(None);
        };
        if let Some(days) = self.day_cache(first, end) {
            return Ok(Some(
                days.top_daily_spend(self, zone, width_secs, (first, end), n)
                    .await?,
            ));
        }
        let n_days = (end - first).max(0) as usize;
        let ranked: Vec<KeyRow> = on!(self.db, |e| sqlx::query_as(&self.db.backend().real_sums(
            &format!(
                "SELECT source, key_id, usd AS spent FROM ({KEY_SPEND}) AS spend
             ORDER BY spent DESC, source, key_id LIMIT $5"
            )
        ))
        .bind(zone.name())
        .bind(width_secs)
        .bind(first)
        .bind(end)
        .bind(n as i64 + 1)
        .fetch_all(e)
        .await)?;
        let more = ranked.len() > n;
        let keys: Vec<(String, String)> = ranked
            .into_iter()
            .take(n)
            .map(|r| (r.source, r.key_id))
            .collect();
        let list = serde_json::to_string(&keys).unwrap_or_else(|_| "[]".to_owned());
        let per_key: Vec<DayRow> = on!(self.db, |e| sqlx::query_as(&self.db.backend().real_sums(
            &format!(
                "{DAY_SPEND}
               AND (source, key_id) IN (SELECT value ->> 0, value ->> 1 FROM {})
             GROUP BY day, source, key_id",
                self.db.backend().json_values(5, "j")
            )
        ))
        .bind(zone.name())
        .bind(width_secs)
        .bind(first)
        .bind(end)
        .bind(list)
        .fetch_all(e)
        .await)?;
        let mut days = vec![vec![0.0; n_days]; keys.len()];
        let mut top_per_day = vec![0.0; n_days];
        for r in per_key {
            let day = (r.day - first) as usize;
            if let (Some(i), true) = (
                keys.iter()
                    .position(|(s, k)| *s == r.source && *k == r.key_id),
                day < n_days,
            ) {
                days[i][day] += r.usd;
                top_per_day[day] += r.usd;
            }
        }
        let mut other = None;
        if more {
            let totals: Vec<DayTotal> =
                on!(self.db, |e| sqlx::query_as(&self.db.backend().real_sums(
                    "SELECT day, SUM_REAL(cost_usd) AS usd FROM usage_daily
                 WHERE zone = $1 AND bucket_width = $2 AND day >= $3 AND day < $4 AND buckets > 0
                 GROUP BY day"
                ))
                .bind(zone.name())
                .bind(width_secs)
                .bind(first)
                .bind(end)
                .fetch_all(e)
                .await)?;
            let mut o = vec![0.0; n_days];
            for r in totals {
                let day = (r.day - first) as usize;
                if day < n_days {
                    o[day] = (r.usd - top_per_day[day]).max(0.0);
                }
            }
            other = Some(o);
        }
        Ok(Some(TopSpend { keys, days, other }))
    }

    /// Rolls up `zones` (adding missing ones and backfilling them from the stored buckets, in
    /// one transaction each); with `prune`, drops zones not listed. Returns the zones added.
    pub async fn ensure_rollup_zones(
        &self,
        zones: &[Tz],
        prune: bool,
    ) -> Result<Vec<Tz>, StoreError> {
        let mut added = Vec::new();
        // Read first: a start with nothing to change takes no write lock.
        let present: Vec<String> = on!(self.db, |e| sqlx::query_scalar(
            "SELECT zone FROM rollup_zones"
        )
        .fetch_all(e)
        .await)?;
        let unchanged = zones.iter().all(|z| present.iter().any(|p| p == z.name()))
            && (!prune || present.iter().all(|p| zones.iter().any(|z| z.name() == p)));
        if unchanged {
            return Ok(added);
        }
        for &zone in zones {
            let mut tx = self.begin().await?;
            let fresh = on_tx!(&mut tx, |e| sqlx::query(
                "INSERT INTO rollup_zones (zone) VALUES ($1) ON CONFLICT DO NOTHING"
            )
            .bind(zone.name())
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?
                == 1;
            if !fresh {
                continue;
            }
            for table in ["zone_offsets", "usage_daily"] {
                on_tx!(&mut tx, |e| sqlx::query(&format!(
                    "DELETE FROM {table} WHERE zone = $1"
                ))
                .bind(zone.name())
                .execute(e)
                .await
                .map(|r| r.rows_affected()))?;
            }
            let started = std::time::Instant::now();
            tracing::info!(zone = zone.name(), "building the daily usage rollup for a new zone from the stored buckets (once per zone)");
            let offsets = zone_offsets(zone);
            for chunk in offsets.chunks(1_000) {
                let mut qb = Builder::new("INSERT INTO zone_offsets (zone, from_ts, offset_secs) ");
                qb.push_values(chunk, |mut b, (from, off)| {
                    b.push_bind(zone.name()).push_bind(from).push_bind(off);
                });
                qb.execute(&mut tx).await?;
            }
            on_tx!(&mut tx, |e| {
                sqlx::query(&self.db.backend().real_sums(&format!(
                "INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model,
                        {}, requests, requests_buckets, cost_usd, unpriced_tokens, buckets)
                 SELECT $1, bucket_width, t / 86400 - CASE WHEN t % 86400 < 0 THEN 1 ELSE 0 END AS d, source, key_id, model,
                        {}, COALESCE(SUM(requests), 0), COUNT(requests),
                        SUM_REAL(COALESCE(cost_usd, 0.0)),
                        SUM(CASE WHEN cost_usd IS NULL THEN {} ELSE 0 END),
                        COUNT(*)
                 FROM (SELECT u.*, u.bucket_start + (SELECT o.offset_secs FROM zone_offsets o
                                   WHERE o.zone = $1 AND o.from_ts <= u.bucket_start
                                   ORDER BY o.from_ts DESC LIMIT 1) AS t
                       FROM usage_buckets u) AS b
                 GROUP BY bucket_width, d, source, key_id, model",
                tokens::list(),
                tokens::each(|c| format!("SUM({c})"), ", "),
                tokens::total("")
            )))
            .bind(zone.name())
            .execute(e)
            .await
            .map(|r| r.rows_affected())
            })?;
            tx.commit().await?;
            tracing::info!(
                zone = zone.name(),
                took_ms = started.elapsed().as_millis() as u64,
                "daily usage rollup built"
            );
            added.push(zone);
        }
        if prune {
            let keep = serde_json::Value::from(
                zones
                    .iter()
                    .map(|z| z.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .to_string();
            let mut tx = self.begin().await?;
            for table in ["rollup_zones", "zone_offsets", "usage_daily"] {
                on_tx!(&mut tx, |e| sqlx::query(&format!(
                    "DELETE FROM {table} WHERE zone NOT IN {}",
                    self.db.backend().json_text_list(1)
                ))
                .bind(&keep)
                .execute(e)
                .await
                .map(|r| r.rows_affected()))?;
            }
            tx.commit().await?;
        }
        Ok(added)
    }

    /// Estimated spend per local day and key for `[from, to)`, both local midnights in `zone`;
    /// `None` when the zone is not rolled up or the span is not whole local days.
    pub async fn daily_spend(
        &self,
        zone: Tz,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<DaySpend>>, StoreError> {
        let Some((first, end)) = self.rolled_days(zone, from, to).await? else {
            return Ok(None);
        };
        let rows: Vec<DayRow> =
            on!(self.db, |e| sqlx::query_as(&self.db.backend().real_sums(
                &format!("{DAY_SPEND} GROUP BY day, source, key_id")
            ))
            .bind(zone.name())
            .bind(width_secs)
            .bind(first)
            .bind(end)
            .fetch_all(e)
            .await)?;
        Ok(Some(
            rows.into_iter()
                .map(|r| DaySpend {
                    day: (r.day - first) as usize,
                    source: r.source,
                    key_id: r.key_id,
                    cost_usd: r.usd,
                })
                .collect(),
        ))
    }

    /// Estimated spend per key over `[from, to)`, both local midnights in `zone`, summed in
    /// SQLite (one row per key, whatever the number of days); `None` when the zone is not
    /// rolled up or the span is not whole local days. A store
    /// [with a day cache](Store::with_day_cache) sums the same rows in memory instead.
    pub async fn rolled_key_spend(
        &self,
        zone: Tz,
        width_secs: i64,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<(String, String, f64)>>, StoreError> {
        let Some((first, end)) = self.rolled_days(zone, from, to).await? else {
            return Ok(None);
        };
        if let Some(days) = self.day_cache(first, end) {
            return Ok(Some(
                days.key_spend(self, zone, width_secs, (first, end)).await?,
            ));
        }
        // A row per key: read packed (see `packed`).
        let query = if end - first == 1 {
            ONE_DAY_KEY_SPEND
        } else {
            KEY_SPEND
        };
        let backend = self.db.backend();
        let sql = packed(
            backend,
            &format!("source, key_id, {}", real(backend, "usd")),
            &backend.real_sums(query),
        );
        let text: String = on!(self.db, |e| sqlx::query_scalar(&sql)
            .bind(zone.name())
            .bind(width_secs)
            .bind(first)
            .bind(end)
            .fetch_one(e)
            .await)?;
        let rows: Vec<(String, String, Real)> = unpack(&text)?;
        Ok(Some(
            rows.into_iter().map(|(s, k, usd)| (s, k, usd.0)).collect(),
        ))
    }

    /// `[from, to)` as local day numbers when both are local midnights of a rolled-up `zone`.
    pub(super) async fn rolled_days(
        &self,
        zone: Tz,
        from: i64,
        to: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        match (local_midnight_day(zone, from), local_midnight_day(zone, to)) {
            (Some(first), Some(end)) if self.rolled_up(zone).await? => Ok(Some((first, end))),
            _ => Ok(None),
        }
    }

    /// Whether `zone` is rolled up.
    pub(super) async fn rolled_up(&self, zone: Tz) -> Result<bool, StoreError> {
        Ok(on!(self.db, |e| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rollup_zones WHERE zone = $1)"
        )
        .bind(zone.name())
        .fetch_one(e)
        .await)?)
    }

    /// Removes rollup rows whose buckets retention has deleted.
    pub async fn prune_empty_rollup(&self) -> Result<u64, StoreError> {
        Ok(fenced!(self, |e| sqlx::query(
            "DELETE FROM usage_daily WHERE buckets <= 0"
        )
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let rows = zone_offsets(berlin);
        // 2026-03-29 01:00 UTC: CET (+1h) to CEST (+2h).
        assert!(rows.contains(&(1_774_746_000, 7_200)));
        assert_eq!(zone_offsets(Tz::UTC), vec![(i64::MIN, 0)]);
    }

    #[test]
    fn midnights() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29 00:00 CET = 2026-03-28 23:00 UTC.
        assert_eq!(local_midnight_day(berlin, 1_774_738_800), Some(20_541));
        assert_eq!(local_midnight_day(berlin, 1_774_742_400), None);
        assert_eq!(local_midnight_day(Tz::UTC, 20_541 * DAY), Some(20_541));
    }
}
