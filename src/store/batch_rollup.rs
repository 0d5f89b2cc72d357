//! The daily rollup kept per batch instead of per row (#16). The row triggers of `usage_daily`
//! cost about three times the insert they follow; a large write instead adds up its rows per
//! zone, local day, key and model in memory and writes the sums once, with the triggers paused
//! (`rollup_paused`, inside the writer's transaction, so no other connection sees the pause).
//! Used by staged catch-ups ([`super::staging`]) and by large pages stored at once
//! ([`Store::store_usage`]).

use super::db::{on_tx, Builder, Tx};
use std::collections::HashMap;

use super::usage::ROWS_PER_STATEMENT;
use super::{tokens, StoreError, UsageRecord};

/// A rollup row's place: zone (index into the zones), local day, key and model (interned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DayKey {
    zone: u16,
    day: i64,
    key: u32,
    model: u32,
}

/// The counters of one `usage_daily` row, as the row triggers add them.
#[derive(Debug, Clone, Copy, Default)]
struct DaySums {
    tokens: [i64; 5],
    requests: i64,
    requests_buckets: i64,
    cost_usd: f64,
    unpriced_tokens: i64,
    buckets: i64,
}

impl DaySums {
    fn add(&mut self, r: &UsageRecord) {
        let counts = tokens::column_values(&r.tokens);
        for (sum, n) in self.tokens.iter_mut().zip(counts) {
            *sum = sum.saturating_add(n);
        }
        if let Some(n) = r.requests {
            self.requests = self.requests.saturating_add(n);
            self.requests_buckets += 1;
        }
        match r.cost_usd {
            Some(usd) => self.cost_usd += usd,
            None => {
                let total = counts.iter().fold(0_i64, |a, n| a.saturating_add(*n));
                self.unpriced_tokens = self.unpriced_tokens.saturating_add(total);
            }
        }
        self.buckets += 1;
    }
}

/// Strings to small numbers and back.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }
}

/// The sums of rows of one source and bucket width not yet in `usage_daily`.
#[derive(Debug)]
pub(super) struct BatchRollup {
    source: String,
    width_secs: i64,
    /// The rolled-up zones with their offset rows `(from_ts, offset)`, as `zone_offsets`.
    zones: Vec<(String, Vec<(i64, i64)>)>,
    keys: Interner,
    models: Interner,
    sums: HashMap<DayKey, DaySums>,
    /// The first and last bucket added since the last write.
    span: Option<(i64, i64)>,
}

impl BatchRollup {
    /// Sums for `source` and `width_secs` in the zones rolled up now, of buckets in `span`
    /// (first and last start; `None`: any). Only the offset rows that apply in the span are
    /// read: a zone with summer time has about 460 rows (1970–2200), and reading them all for
    /// every 1,000-row page cost about 2 µs a row.
    pub(super) async fn new(
        tx: &mut Tx,
        source: &str,
        width_secs: i64,
        span: Option<(i64, i64)>,
    ) -> Result<Self, StoreError> {
        let (first, last) = span.unwrap_or((i64::MIN, i64::MAX));
        let rows: Vec<(String, i64, i64)> = on_tx!(tx, |e| sqlx::query_as(
            "SELECT o.zone, o.from_ts, o.offset_secs FROM rollup_zones z
             JOIN zone_offsets o ON o.zone = z.zone
             WHERE o.from_ts <= $2
               AND o.from_ts >= COALESCE((SELECT MAX(p.from_ts) FROM zone_offsets p
                                          WHERE p.zone = z.zone AND p.from_ts <= $1),
                                         -9223372036854775808)
             ORDER BY o.zone, o.from_ts",
        )
        .bind(first)
        .bind(last)
        .fetch_all(e)
        .await)?;
        let mut zones: Vec<(String, Vec<(i64, i64)>)> = Vec::new();
        for (zone, from, offset) in rows {
            match zones.last_mut() {
                Some((z, offsets)) if *z == zone => offsets.push((from, offset)),
                _ => zones.push((zone, vec![(from, offset)])),
            }
        }
        Ok(Self {
            source: source.to_owned(),
            width_secs,
            zones,
            keys: Interner::default(),
            models: Interner::default(),
            sums: HashMap::new(),
            span: None,
        })
    }

    /// Whether a key was added since this rollup began (written or not).
    pub(super) fn knows_key(&self, key_id: &str) -> bool {
        self.keys.ids.contains_key(key_id)
    }

    /// The first and last bucket added since the last write.
    pub(super) fn span(&self) -> Option<(i64, i64)> {
        self.span
    }

    /// Adds `rows` (one row per natural key: see [`last_of_each`]) to the sums.
    pub(super) fn add(&mut self, rows: &[&UsageRecord]) {
        let mut days: HashMap<(usize, i64), i64> = HashMap::new();
        for r in rows {
            let key = self.keys.id(&r.key_id);
            let model = self.models.id(&r.model);
            for (z, (_, offsets)) in self.zones.iter().enumerate() {
                let day = *days
                    .entry((z, r.bucket_start))
                    .or_insert_with(|| local_day(offsets, r.bucket_start));
                let at = DayKey {
                    zone: u16::try_from(z).unwrap_or(u16::MAX),
                    day,
                    key,
                    model,
                };
                self.sums.entry(at).or_default().add(r);
            }
            self.span = Some(match self.span {
                Some((lo, hi)) => (lo.min(r.bucket_start), hi.max(r.bucket_start)),
                None => (r.bucket_start, r.bucket_start),
            });
        }
    }

    /// Whether any stored bucket of a key added lies in the span added, so that writing the
    /// rows overwrites values that must leave the rollup. A seek per key: a first backfill
    /// overwrites nothing, and looking up each staged row to find that out took 0.5–0.8 s of
    /// every 400,000-row move at 10,000 keys.
    pub(super) async fn overwrites(&self, tx: &mut Tx) -> Result<bool, StoreError> {
        let Some((first, last)) = self.span else {
            return Ok(false);
        };
        let keys = serde_json::to_string(&self.keys.names).unwrap_or_default();
        let backend = tx.backend();
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} {} usage_buckets u
                 ON u.source = $1 AND u.key_id = k.value AND u.bucket_width = $2
                AND u.bucket_start >= $4 AND u.bucket_start <= $5)",
            backend.json_texts(3, "k"),
            backend.driving_join()
        );
        Ok(on_tx!(tx, |e| sqlx::query_scalar(&sql)
            .bind(&self.source)
            .bind(self.width_secs)
            .bind(keys)
            .bind(first)
            .bind(last)
            .fetch_one(e)
            .await)?)
    }

    /// Adds the sums to `usage_daily` and starts again from none.
    pub(super) async fn write(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let sums: Vec<(&DayKey, &DaySums)> = self.sums.iter().collect();
        for chunk in sums.chunks(ROWS_PER_STATEMENT) {
            let mut qb: Builder = Builder::new(format!(
                "INSERT INTO usage_daily (zone, bucket_width, day, source, key_id, model, {}) ",
                rollup_counters().collect::<Vec<_>>().join(", ")
            ));
            qb.push_values(chunk, |mut b, (at, s)| {
                b.push_bind(&self.zones[usize::from(at.zone)].0)
                    .push_bind(self.width_secs)
                    .push_bind(at.day)
                    .push_bind(&self.source)
                    .push_bind(&self.keys.names[at.key as usize])
                    .push_bind(&self.models.names[at.model as usize]);
                for n in s.tokens {
                    b.push_bind(n);
                }
                b.push_bind(s.requests)
                    .push_bind(s.requests_buckets)
                    .push_bind(s.cost_usd)
                    .push_bind(s.unpriced_tokens)
                    .push_bind(s.buckets);
            });
            qb.push(format!(
                " ON CONFLICT (zone, bucket_width, day, source, key_id, model) DO UPDATE SET {}",
                add_excluded()
            ));
            qb.execute(tx).await?;
        }
        self.sums.clear();
        self.sums.shrink_to_fit();
        self.span = None;
        Ok(())
    }
}

/// The counter columns of `usage_daily` after the token columns (`tokens::TOKEN_COLUMNS`), in
/// the order [`BatchRollup::write`] binds them.
const OTHER_COUNTERS: [&str; 5] = [
    "requests",
    "requests_buckets",
    "cost_usd",
    "unpriced_tokens",
    "buckets",
];

/// Every counter column of `usage_daily`: the token columns, then [`OTHER_COUNTERS`].
pub(super) fn rollup_counters() -> impl Iterator<Item = &'static str> {
    tokens::TOKEN_COLUMNS.into_iter().chain(OTHER_COUNTERS)
}

pub(super) fn add_excluded() -> String {
    rollup_counters()
        // The old row qualified: PostgreSQL would find a bare name ambiguous.
        .map(|c| format!("{c} = usage_daily.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` without repeats of a natural key (the later of two kept), in key order.
pub(super) fn last_of_each(rows: &[UsageRecord]) -> Vec<&UsageRecord> {
    let mut sorted: Vec<&UsageRecord> = rows.iter().collect();
    let same = |a: &UsageRecord, b: &UsageRecord| {
        a.bucket_start == b.bucket_start && a.key_id == b.key_id && a.model == b.model
    };
    sorted.sort_by(|a, b| {
        (&a.key_id, a.bucket_start, &a.model).cmp(&(&b.key_id, b.bucket_start, &b.model))
    });
    let mut out: Vec<&UsageRecord> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if same(last, r) => *last = r,
            _ => out.push(r),
        }
    }
    out
}

/// The local day of `ts` by a zone's `zone_offsets` rows (the lookup the row triggers make).
fn local_day(offsets: &[(i64, i64)], ts: i64) -> i64 {
    let i = offsets.partition_point(|(from, _)| *from <= ts);
    let offset = i.checked_sub(1).map_or(0, |i| offsets[i].1);
    (ts + offset).div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_day_follows_the_offset_rows_as_the_triggers_do() {
        let offsets = [(i64::MIN, 3_600), (1_000_000, 7_200)];
        assert_eq!(local_day(&offsets, 86_400 - 3_600), 1);
        assert_eq!(local_day(&offsets, 86_400 - 3_601), 0);
        assert_eq!(local_day(&offsets, 1_000_000), (1_000_000 + 7_200) / 86_400);
        assert_eq!(local_day(&offsets, -3_601), -1);
        assert_eq!(local_day(&[], 86_399), 0);
    }
}
