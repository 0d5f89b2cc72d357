//! Dashboard speed: the overview page, the report API, the key list API and the /keys page for 1,000 keys x
//! 30 days of hourly usage, served by the real router over loopback. Target: under 200 ms.
//!
//! Run: `cargo bench --bench dashboard` (KEYWATCH_BENCH_KEYS changes the key count).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use keywatch::config::Config;
use keywatch::prices::TokenCounts;
use keywatch::store::{Store, UsageRecord};

const H: i64 = 3_600;

fn main() {
    let keys: usize = std::env::var("KEYWATCH_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    // KEYWATCH_BENCH_KEEP=1 keeps the database (its path is printed) to look at its queries;
    // KEYWATCH_BENCH_REUSE=DIR times the endpoints over a database so kept, without filling it.
    let keep = std::env::var("KEYWATCH_BENCH_KEEP").as_deref() == Ok("1");
    let reuse = std::env::var_os("KEYWATCH_BENCH_REUSE").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = reuse.clone().unwrap_or_else(|| temp.path().to_owned());
    let text = "[http]\nlisten = \"127.0.0.1:0\"\n[[sources]]\nname = \"bench\"\nprovider = \"anthropic\"\nadmin_key_env = \"K\"\n\
                [[budgets]]\nname = \"org\"\nmonthly_usd = 100000.0\n";
    let env = HashMap::from([("K".to_owned(), "sk-ant-admin01-BENCH".to_owned())]);
    let config = Arc::new(Config::from_str(text, &dir.join("keywatch.toml"), &env).unwrap());
    // KEYWATCH_BENCH_LOG=1: every SQL statement with its time (sqlx logs them at debug).
    if std::env::var_os("KEYWATCH_BENCH_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter("sqlx::query=debug")
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Store::connect(&config.storage).await.unwrap();

        let now = chrono::Utc::now().timestamp() / H * H;
        if reuse.is_none() {
            fill(&store, &config, keys, now).await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let cancel = tokio_util::sync::CancellationToken::new();
        tokio::spawn(keywatch::http::serve(listener, store.clone(), Arc::clone(&config), None, cancel.clone()));
        let client = reqwest::Client::new();
        let (median, max) = timed(&client, &url, "spend-per-day").await;
        println!(
            "dashboard overview: {keys} keys x 30 days ({} rows): median {median:.0} ms, max {max:.0} ms (target < 200 ms)",
            keys * 720,
        );
        // After a poll (every key's current hour written again: today is read anew), and after
        // a late write into the day before yesterday (read anew from there on).
        for (what, back) in [("a poll of this hour", 0), ("a late write 2 days back", 2 * 24)] {
            let mut times = Vec::new();
            for round in 0..5 {
                write_hour(&store, keys, now - back * H, round).await;
                let started = Instant::now();
                let response = client.get(&url).send().await.unwrap();
                assert!(response.status().is_success());
                assert!(response.text().await.unwrap().contains("spend-per-day"));
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "dashboard overview after {what}: median {:.0} ms, max {:.0} ms",
                times[times.len() / 2],
                times[times.len() - 1]
            );
        }
        // A month to date late in the month, as the budgets sum it: 30 UTC days per key, summed
        // in SQLite, and by a store with a day cache (the HTTP endpoint's), cold then warm.
        let today = now.div_euclid(86_400) * 86_400;
        let (from, to) = (today - 29 * 86_400, today + 86_400);
        let cached = store.with_day_cache();
        for (what, s) in [("in SQLite", &store), ("with a day cache", &cached)] {
            let mut times = Vec::new();
            for _ in 0..4 {
                let started = Instant::now();
                let sums = s.rolled_key_spend(chrono_tz::Tz::UTC, H, from, to).await;
                times.push(started.elapsed().as_secs_f64() * 1e3);
                assert_eq!(sums.unwrap().map(|v| v.len()), Some(keys));
            }
            let first = times.remove(0);
            times.sort_by(f64::total_cmp);
            println!(
                "budget sum per key over 30 days {what}: first {first:.0} ms, then median {:.0} ms",
                times[1]
            );
        }
        // The report API (the same numbers as `keywatch report`), 30 days by key.
        let report_url = format!("{url}api/v1/report?period=day&last=30&by=key");
        let (median, max) = timed(&client, &report_url, "").await;
        println!("report API, 30 days by key: median {median:.0} ms, max {max:.0} ms");
        // The key list (the inventory API), and the dashboard's /keys page: the busiest first,
        // and a search sorted by 30 days' spend.
        let (median, max) = timed(&client, &format!("{url}api/v1/keys"), "").await;
        println!(
            "key list API ({keys} keys): median {median:.0} ms, max {max:.0} ms (target < 200 ms)"
        );
        let (median, max) = timed(&client, &format!("{url}keys"), "data-key=").await;
        println!(
            "dashboard /keys ({keys} keys, by spend today, first page): median {median:.0} ms, max {max:.0} ms (target < 300 ms)"
        );
        let (median, max) =
            timed(&client, &format!("{url}keys?q=apikey_00&sort=30d&page=2"), "data-key=").await;
        println!(
            "dashboard /keys search, by 30 days, page 2: median {median:.0} ms, max {max:.0} ms (target < 300 ms)"
        );
        cancel.cancel();
    });
    if keep && reuse.is_none() {
        println!("database kept in {}", temp.keep().display());
    }
}

/// Stores `keys` × 30 days of hourly usage ending at `now`, then rolls it up.
async fn fill(store: &Store, config: &Config, keys: usize, now: i64) {
    let mut batch = Vec::with_capacity(1_000);
    for k in 0..keys {
        for h in 0..(30 * 24) {
            batch.push(UsageRecord {
                key_id: format!("apikey_{k:05}"),
                model: "claude-sonnet-4-20250514".to_owned(),
                bucket_start: now - h * H,
                tokens: TokenCounts {
                    uncached_input: 1_000,
                    output: 100,
                    ..TokenCounts::default()
                },
                web_search_requests: 0,
                requests: None,
                cost_usd: Some(0.01 + (k % 7) as f64 * 0.001),
            });
            if batch.len() == 1_000 {
                store
                    .store_usage("bench", H, &batch, None, 1)
                    .await
                    .unwrap();
                batch.clear();
            }
        }
    }
    store
        .store_usage("bench", H, &batch, None, 1)
        .await
        .unwrap();
    // The rollup is built from the stored rows, as on the first start after an upgrade
    // (KEYWATCH_BENCH_ROLLUP=0: without it, every answer sums the buckets).
    if std::env::var("KEYWATCH_BENCH_ROLLUP").as_deref() != Ok("0") {
        let started = Instant::now();
        store
            .ensure_rollup_zones(&config.rollup_zones(), true)
            .await
            .unwrap();
        println!(
            "rollup backfill of {} rows into {} zone(s): {:.1} s",
            keys * 720,
            config.rollup_zones().len(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// Writes the hour starting at `start` of every key again, its cost changed by `round`.
async fn write_hour(store: &Store, keys: usize, start: i64, round: usize) {
    let rows: Vec<UsageRecord> = (0..keys)
        .map(|k| UsageRecord {
            key_id: format!("apikey_{k:05}"),
            model: "claude-sonnet-4-20250514".to_owned(),
            bucket_start: start,
            tokens: TokenCounts {
                uncached_input: 1_000,
                output: 100,
                ..TokenCounts::default()
            },
            web_search_requests: 0,
            requests: None,
            cost_usd: Some(0.01 + (k % 7) as f64 * 0.001 + round as f64 * 0.0001),
        })
        .collect();
    for chunk in rows.chunks(1_000) {
        store.store_usage("bench", H, chunk, None, 1).await.unwrap();
    }
}

/// Six GETs of `url` (each answering 200 with `expect` in its body); the median and the
/// maximum in ms of the last five (the first warms SQLite's page cache).
async fn timed(client: &reqwest::Client, url: &str, expect: &str) -> (f64, f64) {
    let mut times = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let response = client.get(url).send().await.unwrap();
        assert!(response.status().is_success(), "{url}");
        let body = response.text().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(body.contains(expect), "{url}");
    }
    println!("  {url}: first request {:.0} ms", times.remove(0));
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() - 1])
}
