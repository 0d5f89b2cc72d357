//! The daily spend rollup behind the dashboard and budget checks always equals the buckets it
//! sums: after polls, re-polls that change values, retention deletes, across DST changes, and
//! for a zone added after data was stored.

use std::collections::{BTreeMap, HashMap};

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
        key_id: format!("apikey_{key}"),
        model: model.to_owned(),
        bucket_start: START + hour * H,
        tokens: TokenCounts {
            uncached_input: 100 + hour,
            output: 10,
            ..TokenCounts::default()
        },
        web_search_requests: 0,
        // Unpriced rows come without request counts: NULL must stay NULL in the sums.
        requests: cost.map(|_| 1 + hour % 3),
        cost_usd: cost,
    }
}

type Sums = BTreeMap<(usize, String, String), f64>;

/// The seven local days around the data, as UTC spans.
fn spans_of(zone: Tz) -> Vec<(i64, i64)> {
    periods(
        PeriodKind::Day,
        zone,
        NaiveDate::from_ymd_opt(2026, 3, 26).unwrap(),
        NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
    )
    .iter()
    .map(|p| p.span())
    .collect()
}

/// Spend per local day and key in `zone`, from the rollup and summed from the buckets.
async fn both(store: &Store, zone: Tz) -> (Option<Sums>, Sums) {
    let spans = spans_of(zone);
    let rolled = store
        .daily_spend(zone, H, spans[0].0, spans[spans.len() - 1].1)
        .await
        .unwrap()
        .map(|rows| {
            let mut sums = Sums::new();
            for r in rows {
                *sums.entry((r.day, r.source, r.key_id)).or_default() += r.cost_usd;
            }
            sums
        });
    let mut raw = Sums::new();
    for u in store.usage_by_period_from_buckets(H, &spans).await.unwrap() {
        if u.cost_usd != 0.0 || u.unpriced_tokens == 0 {
            *raw.entry((u.period, u.source, u.key_id)).or_default() += u.cost_usd;
        }
    }
    (rolled, raw)
}

/// Reports by day, week and month read from the rollup equal those summed from the buckets.
async fn assert_reports_match(store: &Store, zone: Tz) {
    for kind in [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month] {
        let list = periods(
            kind,
            zone,
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 4, 2).unwrap(),
        );
        let spans: Vec<(i64, i64)> = list.iter().map(|p| p.span()).collect();
        let rolled = store
            .usage_by_days(H, zone, &spans)
            .await
            .unwrap()
            .expect("whole local days of a rolled-up zone are read from the rollup");
        let raw = store.usage_by_period_from_buckets(H, &spans).await.unwrap();
        assert_eq!(rolled.len(), raw.len(), "{zone} {kind:?}");
        assert!(!raw.is_empty());
        for (a, b) in rolled.iter().zip(&raw) {
            assert_eq!(
                (
                    a.period,
                    &a.source,
                    &a.key_id,
                    &a.model,
                    a.tokens,
                    a.requests,
                    a.unpriced_tokens
                ),
                (
                    b.period,
                    &b.source,
                    &b.key_id,
                    &b.model,
                    b.tokens,
                    b.requests,
                    b.unpriced_tokens
                ),
                "{zone} {kind:?}"
            );
            assert!((a.cost_usd - b.cost_usd).abs() < 1e-9, "{zone} {kind:?}");
        }
    }
}

fn assert_same(zone: Tz, rolled: &Sums, raw: &Sums) {
    let keys = |s: &Sums| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(rolled), keys(raw), "days and keys in {zone}");
    for (k, v) in raw {
        assert!(
            (rolled[k] - v).abs() < 1e-9,
            "{zone} {k:?}: rollup {} vs buckets {v}",
            rolled[k]
        );
    }
}

#[tokio::test]
async fn rollup_equals_the_buckets_through_updates_retention_and_new_zones() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::backend::open_store(dir.path(), "keywatch").await;
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let st_johns: Tz = "America/St_Johns".parse().unwrap(); // UTC-2:30 / -3:30
    store
        .ensure_rollup_zones(&[Tz::UTC, berlin], true)
        .await
        .unwrap();

    // Three keys, two models (one unpriced), four days of hours.
    let mut rows = Vec::new();
    for key in 0..3 {
        for hour in 0..96 {
            rows.push(record(key, "priced", hour, Some(0.01 * (key + 1) as f64)));
            if hour % 5 == 0 {
                rows.push(record(key, "unpriced", hour, None));
            }
        }
    }
    for chunk in rows.chunks(100) {
        store.store_usage("s", H, chunk, None, 1).await.unwrap();
    }
    // A re-poll that changes some buckets and repeats others unchanged.
    let repoll: Vec<_> = (0..96)
        .map(|h| record(1, "priced", h, Some(if h % 3 == 0 { 0.5 } else { 0.02 })))
        .collect();
    store.store_usage("s", H, &repoll, None, 2).await.unwrap();
    // Retention removes the first day and a half.
    while store.prune_usage_batch(H, START + 36 * H).await.unwrap() > 0 {}
    store.prune_empty_rollup().await.unwrap();
    // A zone configured later is backfilled from what is stored.
    let added = store
        .ensure_rollup_zones(&[Tz::UTC, berlin, st_johns], true)
        .await
        .unwrap();
    assert_eq!(added, vec![st_johns]);

    for zone in [Tz::UTC, berlin, st_johns] {
        let (rolled, raw) = both(&store, zone).await;
        let rolled = rolled.unwrap_or_else(|| panic!("{zone} is rolled up"));
        assert!(raw.len() > 6, "{zone}: {raw:?}");
        assert_same(zone, &rolled, &raw);
        assert_reports_match(&store, zone).await;
        // The dashboard's top keys per day, read in three queries, equal what every key's
        // rows give (two keys shown, the third as "other").
        let (from, to) = (spans_of(zone)[0].0, spans_of(zone)[6].1);
        let top = store
            .top_daily_spend(zone, H, from, to, 2)
            .await
            .unwrap()
            .unwrap();
        let rows = store.daily_spend(zone, H, from, to).await.unwrap().unwrap();
        // The budgets' per-key sums over the span, summed in SQLite, equal the days' rows.
        let mut per_key: HashMap<(String, String), f64> = HashMap::new();
        for r in &rows {
            *per_key
                .entry((r.source.clone(), r.key_id.clone()))
                .or_default() += r.cost_usd;
        }
        let summed = store
            .rolled_key_spend(zone, H, from, to)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summed.len(), per_key.len(), "{zone}");
        for (source, key, usd) in summed {
            assert!((per_key[&(source, key)] - usd).abs() < 1e-9, "{zone}");
        }
        let expected = keywatch::store::TopSpend::from_rows(&rows, 7, 2);
        assert_eq!(top.keys, expected.keys, "{zone}");
        assert!(top.other.is_some());
        for (a, b) in top
            .days
            .iter()
            .chain(top.other.iter())
            .flatten()
            .zip(expected.days.iter().chain(expected.other.iter()).flatten())
        {
            assert!((a - b).abs() < 1e-9, "{zone}: {top:?} vs {expected:?}");
        }
    }

    // A span that is not whole local days, or a zone not rolled up, is read from the buckets.
    assert_eq!(
        store
            .daily_spend(berlin, H, START, START + 86_400)
            .await
            .unwrap(),
        None
    );
    let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
    assert_eq!(both(&store, tokyo).await.0, None);
    // Dropping a zone stops its upkeep.
    store.ensure_rollup_zones(&[Tz::UTC], true).await.unwrap();
    assert_eq!(both(&store, berlin).await.0, None);
    store
        .store_usage("s", H, &[record(0, "priced", 90, Some(9.0))], None, 3)
        .await
        .unwrap();
    let (rolled, raw) = both(&store, Tz::UTC).await;
    assert_same(Tz::UTC, &rolled.unwrap(), &raw);
}

/// A catch-up's pages are staged and moved into the table at once (#16). What that stores, the
/// rollup it keeps (summed per move, not per row) and the cursor it sets equal storing the same
/// pages one by one: re-read rows are overwritten, of a bucket read twice the later read wins
/// (within a page, and across pages by a move first), and nothing staged is visible as usage
/// before the move.
#[tokio::test]
async fn staged_pages_store_what_page_by_page_storing_stores() {
    let dir = tempfile::tempdir().unwrap();
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let direct = crate::backend::open_store(dir.path(), "direct").await;
    let staged = crate::backend::open_store(dir.path(), "staged").await;
    let hour_of_every_key = |hour: i64, cost: f64| -> Vec<UsageRecord> {
        (0..3)
            .flat_map(|key| {
                [
                    record(key, "priced", hour, Some(cost * (key + 1) as f64)),
                    record(key, "unpriced", hour, None),
                ]
            })
            .collect()
    };
    let stored_first: Vec<UsageRecord> = (0..24).flat_map(|h| hour_of_every_key(h, 0.01)).collect();
    // Pages of one hour each from hour 20 (re-read with new values) to 72 across the change to
    // summer time; hour 30's page holds each row twice.
    let mut pages: Vec<Vec<UsageRecord>> = (20..72).map(|h| hour_of_every_key(h, 0.02)).collect();
    pages[10].extend(hour_of_every_key(30, 0.7));
    let cursor = START + 72 * H;
    for store in [&direct, &staged] {
        store
            .ensure_rollup_zones(&[Tz::UTC, berlin], true)
            .await
            .unwrap();
        store
            .store_usage("s", H, &stored_first, Some(START + 24 * H), 1)
            .await
            .unwrap();
    }
    let mut direct_changed = 0;
    let mut changed = 0;
    let mut staging = staged.staging("s", H).await.unwrap();
    for page in &pages {
        direct_changed += direct
            .store_usage("s", H, page, Some(cursor), 2)
            .await
            .unwrap();
        assert!(!staging.overlaps(page));
        staging.add(page, 2).await.unwrap();
    }
    assert_eq!(staging.rows(), 52 * 6);
    assert_eq!(
        staged.usage_row_count().await.unwrap(),
        stored_first.len() as i64,
        "staged rows are not usage until moved"
    );
    assert_eq!(
        staged.usage_poll_state("s", H).await.unwrap().cursor,
        Some(START + 24 * H)
    );
    // A provider that sends hour 40 again: what is staged is moved first.
    let again = hour_of_every_key(40, 0.3);
    direct_changed += direct
        .store_usage("s", H, &again, Some(cursor), 2)
        .await
        .unwrap();
    assert!(staging.overlaps(&again));
    changed += staging.merge(cursor).await.unwrap().changed;
    staging.add(&again, 2).await.unwrap();
    changed += staging.merge(cursor).await.unwrap().changed;

    // Hour 30's repeated rows count once either way: of two rows with one natural key in a
    // page only the later is written (page by page as staged).
    assert_eq!(changed, direct_changed);
    assert_eq!(
        staged.usage_poll_state("s", H).await.unwrap().cursor,
        Some(cursor)
    );
    for key in 0..3 {
        let id = format!("apikey_{key}");
        let a = direct
            .history(&id, None, H, START, START + 100 * H)
            .await
            .unwrap();
        let b = staged
            .history(&id, None, H, START, START + 100 * H)
            .await
            .unwrap();
        assert_eq!(a.len(), 144, "{id}");
        assert_eq!(a, b, "{id}");
    }
    for zone in [Tz::UTC, berlin] {
        let (rolled, raw) = both(&staged, zone).await;
        assert_same(zone, &rolled.unwrap(), &raw);
        assert_eq!(both(&direct, zone).await.1, raw, "{zone}");
        assert_reports_match(&staged, zone).await;
    }
    // Moved rows are gone from staging: a second move changes nothing.
    assert_eq!(staging.merge(cursor).await.unwrap().changed, 0);
    // Rows a crash left staged are discarded when the next catch-up starts.
    staging.add(&pages[0], 3).await.unwrap();
    drop(staging);
    let mut next = staged.staging("s", H).await.unwrap();
    assert_eq!(next.merge(cursor).await.unwrap().changed, 0);
    assert_eq!(staged.usage_row_count().await.unwrap(), 3 * 144);
}

#[tokio::test]
async fn a_large_page_keeps_the_rollup_per_page_and_stores_what_small_pages_store() {
    let dir = tempfile::tempdir().unwrap();
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let small = crate::backend::open_store(dir.path(), "small").await;
    let large = crate::backend::open_store(dir.path(), "large").await;
    // 10 keys x 2 models x 72 hours across the change to summer time: 1,440 rows, a page
    // large enough to be summed per page; key 3's row of hour 50 comes twice (the later wins).
    let page = |cost: f64| -> Vec<UsageRecord> {
        let mut rows: Vec<UsageRecord> = (0..72)
            .flat_map(|h| {
                (0..10).flat_map(move |key| {
                    [
                        record(key, "priced", h, Some(cost * (key + 1) as f64)),
                        record(key, "unpriced", h, None),
                    ]
                })
            })
            .collect();
        rows.push(record(3, "priced", 50, Some(9.0)));
        rows
    };
    for store in [&small, &large] {
        store
            .ensure_rollup_zones(&[Tz::UTC, berlin], true)
            .await
            .unwrap();
    }
    let first = page(0.01);
    for chunk in first.chunks(100) {
        small.store_usage("s", H, chunk, None, 1).await.unwrap();
    }
    let changed = large.store_usage("s", H, &first, None, 1).await.unwrap();
    assert_eq!(changed, 1_440);
    // The same hours again with new values: this page overwrites, so the row triggers
    // subtract what each row held.
    let again = page(0.03);
    for chunk in again.chunks(100) {
        small.store_usage("s", H, chunk, None, 2).await.unwrap();
    }
    large.store_usage("s", H, &again, None, 2).await.unwrap();
    for key in 0..10 {
        let id = format!("apikey_{key}");
        let a = small.history(&id, None, H, START, START + 100 * H).await;
        let b = large.history(&id, None, H, START, START + 100 * H).await;
        assert_eq!(a.unwrap(), b.unwrap(), "{id}");
    }
    for zone in [Tz::UTC, berlin] {
        let (rolled, raw) = both(&large, zone).await;
        assert_same(zone, &rolled.unwrap(), &raw);
        assert_eq!(both(&small, zone).await.1, raw, "{zone}");
        assert_reports_match(&large, zone).await;
    }
    // The last write left the triggers on: a small page still updates the rollup.
    large
        .store_usage("s", H, &[record(0, "priced", 80, Some(5.0))], None, 3)
        .await
        .unwrap();
    let (rolled, raw) = both(&large, Tz::UTC).await;
    assert_same(Tz::UTC, &rolled.unwrap(), &raw);
}
