//! The HTTP endpoint's store keeps spend per key and local day in memory (#16): what it answers
//! for the overview's chart and the budgets' sums equals, to the bit, what the rollup queries
//! answer, before and after re-polls of today, late writes into past days and retention.

use chrono::NaiveDate;
use chrono_tz::Tz;
use keywatch::prices::TokenCounts;
use keywatch::report::{periods, PeriodKind};
use keywatch::store::{Store, UsageRecord};

const H: i64 = 3_600;
/// 2026-03-27 00:00 UTC: the days around Europe's change to summer time (2026-03-29).
const START: i64 = 1_774_569_600;

fn record(key: usize, model: &str, hour: i64, cost: Option<f64>) -> UsageRecord {
    UsageRecord {
        key_id: format!("apikey_{key:02}"),
        model: model.to_owned(),
        bucket_start: START + hour * H,
        tokens: TokenCounts {
            uncached_input: 100 + hour,
            output: 10,
            ..TokenCounts::default()
        },
        web_search_requests: 0,
        requests: cost.map(|_| 1),
        cost_usd: cost,
    }
}

/// Eight local days from 2026-03-26, as UTC spans.
fn spans_of(zone: Tz) -> Vec<(i64, i64)> {
    periods(
        PeriodKind::Day,
        zone,
        NaiveDate::from_ymd_opt(2026, 3, 26).unwrap(),
        NaiveDate::from_ymd_opt(2026, 4, 2).unwrap(),
    )
    .iter()
    .map(|p| p.span())
    .collect()
}

/// The cached store's answers equal the plain store's, for the chart and for budget spans.
async fn assert_same(store: &Store, cached: &Store, zone: Tz, when: &str) {
    let spans = spans_of(zone);
    let (from, to) = (spans[0].0, spans[spans.len() - 1].1);
    for n in [0, 3, 8, 40] {
        let expected = store.top_daily_spend(zone, H, from, to, n).await.unwrap();
        assert!(expected.is_some(), "{zone} is rolled up");
        let got = cached.top_daily_spend(zone, H, from, to, n).await.unwrap();
        // Bit for bit, not within a tolerance.
        let bits = |t: &Option<keywatch::store::TopSpend>| {
            t.as_ref().map(|t| {
                let days: Vec<Vec<u64>> = t
                    .days
                    .iter()
                    .chain(&t.other)
                    .map(|d| d.iter().map(|v| v.to_bits()).collect())
                    .collect();
                (t.keys.clone(), t.other.is_some(), days)
            })
        };
        assert_eq!(bits(&got), bits(&expected), "{zone}, top {n}, {when}");
    }
    for (a, b) in [(from, to), spans[2], (spans[1].0, spans[4].1), spans[7]] {
        let expected = store.rolled_key_spend(zone, H, a, b).await.unwrap();
        let got = cached.rolled_key_spend(zone, H, a, b).await.unwrap();
        let bits = |v: Option<Vec<(String, String, f64)>>| {
            v.map(|v| {
                v.into_iter()
                    .map(|(s, k, usd)| (s, k, usd.to_bits()))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(bits(got), bits(expected), "{zone}, {a}..{b}, {when}");
    }
    // Not whole local days: neither store has a rolled-up answer.
    assert_eq!(
        cached
            .top_daily_spend(zone, H, from + H, to, 8)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn cached_day_spend_equals_the_rollup_queries_through_late_writes_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::backend::open_store(dir.path(), "keywatch").await;
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let zones = [Tz::UTC, berlin];
    store.ensure_rollup_zones(&zones, true).await.unwrap();
    let cached = store.with_day_cache();

    // Thirty keys, up to five models a key and hour with many-digit costs (the order SQLite
    // adds a key's rows in shows in the last bits), some unpriced; seven days of hours.
    let mut rng = fastrand::Rng::with_seed(16);
    let mut rows = Vec::new();
    for key in 0..30 {
        for hour in 0..(7 * 24) {
            for model in ["m1", "m2", "m3", "m4", "m5"] {
                match rng.u8(..10) {
                    0..=4 => {}
                    5 => rows.push(record(key, model, hour, None)),
                    _ => rows.push(record(
                        key,
                        model,
                        hour,
                        Some(rng.f64() * 10f64.powi(rng.i32(-3..3))),
                    )),
                }
            }
        }
    }
    for chunk in rows.chunks(500) {
        store.store_usage("s", H, chunk, None, 1).await.unwrap();
    }
    // Two keys that spend exactly alike: ranked by key id.
    let twins: Vec<_> = (0..(7 * 24))
        .flat_map(|h| {
            [
                record(40, "m1", h, Some(0.75)),
                record(41, "m1", h, Some(0.75)),
            ]
        })
        .collect();
    store.store_usage("t", H, &twins, None, 1).await.unwrap();
    for zone in zones {
        assert_same(&store, &cached, zone, "first read").await;
        // Nothing written since: answered from memory, still the same.
        assert_same(&store, &cached, zone, "unchanged").await;
    }

    // A poll of the last day, then a late write three days back (a changed bucket and a new
    // key), each followed by the same comparison.
    let today: Vec<_> = (0..30)
        .map(|k| record(k, "m1", 7 * 24 - 2, Some(rng.f64())))
        .collect();
    store.store_usage("s", H, &today, None, 2).await.unwrap();
    for zone in zones {
        assert_same(&store, &cached, zone, "after a poll of today").await;
    }
    let late = [
        record(3, "m2", 4 * 24 + 5, Some(123.456_789)),
        record(77, "m9", 4 * 24 + 6, Some(1e6)),
    ];
    store.store_usage("s", H, &late, None, 3).await.unwrap();
    for zone in zones {
        assert_same(&store, &cached, zone, "after a late write").await;
    }
    // The late key spent most: it leads the chart.
    let spans = spans_of(Tz::UTC);
    let top = cached
        .top_daily_spend(Tz::UTC, H, spans[0].0, spans[7].1, 8)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(top.keys[0], ("s".to_owned(), "apikey_77".to_owned()));

    // Retention removes the first day and a half.
    while store.prune_usage_batch(H, START + 36 * H).await.unwrap() > 0 {}
    for zone in zones {
        assert_same(&store, &cached, zone, "after retention").await;
    }
}
