//! Ingest throughput: upsert 1,000 keys x 1,000 hourly buckets into a file-backed SQLite
//! database through keywatch's store, and the same rows through plain rusqlite (a cached
//! prepared statement, 1,000-row transactions) as the yardstick, in one run.
//!
//! Rows are stored as a steady poll stores a page (`store_usage`, one transaction per batch) and
//! as a backfill does (batches staged, moved into the table every 400,000 rows: the staged
//! lines, compared with the same rusqlite figures).
//!
//! Run: `cargo bench --bench ingest` (KEYWATCH_BENCH_KEYS / KEYWATCH_BENCH_HOURS shrink it).

use std::time::{Duration, Instant};

use keywatch::prices::TokenCounts;
use keywatch::store::{Store, UsageRecord};

const SOURCE: &str = "bench";
const WIDTH: i64 = 3600;
const T0: i64 = 1_780_000_000 / 3600 * 3600;
const MIGRATION: &str =
    include_str!("../migrations/20261126140000_create_inventory_usage_poll_state.sql");

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn record(key: usize, hour: usize, salt: i64) -> UsageRecord {
    let n = (key * 31 + hour * 7) as i64 + salt;
    UsageRecord {
        key_id: format!("apikey_{key:06}"),
        model: "claude-sonnet-4-20250514".to_owned(),
        bucket_start: T0 + hour as i64 * WIDTH,
        tokens: TokenCounts {
            uncached_input: 1_000 + n,
            cache_read: 5_000 + n,
            cache_write_5m: 100 + n,
            cache_write_1h: n,
            output: 400 + n,
        },
        web_search_requests: 0,
        requests: None,
        cost_usd: Some(0.01 + n as f64 * 1e-6),
    }
}

/// Batches of 1,000 rows: key order (one key's hours per batch) or time order (one hour of
/// every key per batch, the shape provider pages arrive in).
fn batches(keys: usize, hours: usize, time_order: bool, salt: i64) -> Vec<Vec<UsageRecord>> {
    let mut rows = Vec::with_capacity(keys * hours);
    if time_order {
        for h in 0..hours {
            for k in 0..keys {
                rows.push(record(k, h, salt));
            }
        }
    } else {
        for k in 0..keys {
            for h in 0..hours {
                rows.push(record(k, h, salt));
            }
        }
    }
    rows.chunks(1_000).map(<[UsageRecord]>::to_vec).collect()
}

fn rate(rows: usize, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64()
}

/// Rows staged before each move, as the poller's catch-up does (`poller::usage`).
const STAGE_ROWS: usize = 400_000;

/// Stores `batches` through keywatch: each batch at once (`store_usage`, a steady poll's page),
/// or `staged` as a backfill does (pages staged, moved into the table every STAGE_ROWS rows).
async fn keywatch_run(
    dir: &std::path::Path,
    name: &str,
    batches: &[Vec<UsageRecord>],
    staged: bool,
) -> Duration {
    let store = Store::open(&dir.join(format!("{name}.db"))).await.unwrap();
    // As `keywatch run` sets up with a dashboard: the daily rollup in UTC and one more zone
    // (KEYWATCH_BENCH_ROLLUP=0 measures without it, to see what the triggers cost).
    if std::env::var("KEYWATCH_BENCH_ROLLUP").as_deref() != Ok("0") {
        let zones = ["UTC".parse().unwrap(), "Europe/Berlin".parse().unwrap()];
        store.ensure_rollup_zones(&zones, true).await.unwrap();
    }
    let started = Instant::now();
    let mut staging = store.staging(SOURCE, WIDTH).await.unwrap();
    for b in batches {
        if staged {
            staging.add(b, 1).await.unwrap();
            if staging.rows() >= STAGE_ROWS {
                staging.merge(0).await.unwrap();
            }
        } else {
            store.store_usage(SOURCE, WIDTH, b, None, 1).await.unwrap();
        }
    }
    if staged {
        staging.merge(0).await.unwrap();
    }
    let took = started.elapsed();
    store.close().await;
    took
}

fn rusqlite_open(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(MIGRATION).unwrap();
    conn
}

const UPSERT: &str = "INSERT INTO usage_buckets (source, key_id, bucket_width, bucket_start, model,
    uncached_input_tokens, cache_read_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    output_tokens, web_search_requests, requests, cost_usd, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (source, key_id, bucket_width, bucket_start, model) DO UPDATE SET
    uncached_input_tokens = excluded.uncached_input_tokens,
    cache_read_input_tokens = excluded.cache_read_input_tokens,
    cache_write_5m_tokens = excluded.cache_write_5m_tokens,
    cache_write_1h_tokens = excluded.cache_write_1h_tokens,
    output_tokens = excluded.output_tokens, web_search_requests = excluded.web_search_requests,
    requests = excluded.requests, cost_usd = excluded.cost_usd, updated_at = excluded.updated_at";

fn rusqlite_run(conn: &mut rusqlite::Connection, batches: &[Vec<UsageRecord>]) -> Duration {
    let started = Instant::now();
    for b in batches {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare_cached(UPSERT).unwrap();
            for r in b {
                stmt.execute(rusqlite::params![
                    SOURCE,
                    r.key_id,
                    WIDTH,
                    r.bucket_start,
                    r.model,
                    r.tokens.uncached_input,
                    r.tokens.cache_read,
                    r.tokens.cache_write_5m,
                    r.tokens.cache_write_1h,
                    r.tokens.output,
                    r.web_search_requests,
                    r.requests,
                    r.cost_usd,
                    1i64
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    started.elapsed()
}

fn main() {
    let keys = env_or("KEYWATCH_BENCH_KEYS", 1_000);
    let hours = env_or("KEYWATCH_BENCH_HOURS", 1_000);
    let rows = keys * hours;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("ingest: {keys} keys x {hours} hourly buckets = {rows} rows, 1,000-row transactions");
    println!(
        "{:<40} {:>12} {:>12} {:>8}",
        "case", "keywatch/s", "rusqlite/s", "ratio"
    );
    for (label, time_order) in [("key order", false), ("time order", true)] {
        let inserts = batches(keys, hours, time_order, 0);
        let updates = batches(keys, hours, time_order, 1);
        let tag = label.replace(' ', "-");
        let kw_insert = runtime.block_on(keywatch_run(dir.path(), &tag, &inserts, false));
        let kw_update = runtime.block_on(keywatch_run(dir.path(), &tag, &updates, false));
        let kw_same = runtime.block_on(keywatch_run(dir.path(), &tag, &updates, false));
        let staged_tag = format!("{tag}-staged");
        let kw_backfill = runtime.block_on(keywatch_run(dir.path(), &staged_tag, &inserts, true));
        let kw_refill = runtime.block_on(keywatch_run(dir.path(), &staged_tag, &updates, true));
        let mut conn = rusqlite_open(&dir.path().join(format!("rusqlite-{tag}.db")));
        let rs_insert = rusqlite_run(&mut conn, &inserts);
        let rs_update = rusqlite_run(&mut conn, &updates);
        let rs_same = rusqlite_run(&mut conn, &updates);
        for (case, kw, rs) in [
            ("insert", kw_insert, rs_insert),
            ("update (changed values)", kw_update, rs_update),
            ("re-poll (unchanged values)", kw_same, rs_same),
            ("insert, staged (a backfill)", kw_backfill, rs_insert),
            ("update, staged (a catch-up)", kw_refill, rs_update),
        ] {
            println!(
                "{:<40} {:>12.0} {:>12.0} {:>8.2}",
                format!("{label}: {case}"),
                rate(rows, kw),
                rate(rows, rs),
                rate(rows, kw) / rate(rows, rs)
            );
        }
    }
}
