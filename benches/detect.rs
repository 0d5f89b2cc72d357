//! Detection throughput: passes (load from SQLite + judge every rule + record alerts) over N
//! keys with 7 days of hourly history, through one `Detector` as the daemon runs them: the
//! first pass reads every key's window, the pass after the next hour's buckets arrive reads
//! that hour only, and a pass with nothing new reads no buckets. Reports time and peak memory
//! for 1,000, 5,000 and 10,000 keys, to show that the cost grows linearly with keys.
//!
//! Run: `cargo bench --bench detect` (KEYWATCH_BENCH_KEYS=10000 runs one size only;
//! KEYWATCH_BENCH_LOG=1 prints each pass's load/decide/apply times).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use keywatch::alerts::Detector;
use keywatch::config::Config;
use keywatch::prices::TokenCounts;
use keywatch::providers::ApiKey;
use keywatch::store::{Store, UsageRecord};

const H: i64 = 3_600;
const NOW: i64 = 1_780_000_000 / H * H + 20 * 60;

/// A memory figure of this process from /proc/self/status, in KiB (0 where unavailable).
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn seed(store: &Store, keys: usize) {
    let inventory: Vec<ApiKey> = (0..keys)
        .map(|k| ApiKey {
            id: format!("apikey_{k:06}"),
            name: Some(format!("service-{k}")),
            status: "active".to_owned(),
            created_at: DateTime::<Utc>::from_timestamp(NOW - 30 * 86_400, 0),
            expires_at: None,
            workspace_id: None,
            partial_key_hint: None,
            created_by: None,
        })
        .collect();
    store
        .store_inventory("bench", &inventory, NOW)
        .await
        .unwrap();
    let last = NOW / H * H - H;
    let mut batch = Vec::with_capacity(1_000);
    for k in 0..keys {
        for h in 0..168 {
            let n = ((k * 7 + h * 13) % 100) as i64;
            batch.push(UsageRecord {
                key_id: format!("apikey_{k:06}"),
                model: "claude-sonnet-4-20250514".to_owned(),
                bucket_start: last - (167 - h as i64) * H,
                tokens: TokenCounts {
                    uncached_input: 1_000 + n,
                    output: 100,
                    ..TokenCounts::default()
                },
                web_search_requests: 0,
                requests: None,
                cost_usd: Some(0.5 + n as f64 / 100.0),
            });
            if batch.len() == 1_000 {
                store
                    .store_usage("bench", H, &batch, None, NOW)
                    .await
                    .unwrap();
                batch.clear();
            }
        }
    }
    store
        .store_usage("bench", H, &batch, None, NOW)
        .await
        .unwrap();
}

/// Every key's usage in the bucket at `start`.
fn hour(keys: usize, start: i64) -> Vec<UsageRecord> {
    (0..keys)
        .map(|k| UsageRecord {
            key_id: format!("apikey_{k:06}"),
            model: "claude-sonnet-4-20250514".to_owned(),
            bucket_start: start,
            tokens: TokenCounts {
                uncached_input: 1_000,
                output: 100,
                ..TokenCounts::default()
            },
            web_search_requests: 0,
            requests: None,
            cost_usd: Some(0.6),
        })
        .collect()
}

fn config(dir: &Path) -> Config {
    let text = "[[sources]]\nname = \"bench\"\nprovider = \"anthropic\"\nadmin_key_env = \"K\"\n\
                [[budgets]]\nname = \"org\"\nmonthly_usd = 1000000.0\n";
    let env = HashMap::from([("K".to_owned(), "sk-ant-admin01-BENCH".to_owned())]);
    Config::from_str(text, &dir.join("keywatch.toml"), &env).unwrap()
}

fn main() {
    let sizes: Vec<usize> = match std::env::var("KEYWATCH_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => vec![n],
        None => vec![1_000, 5_000, 10_000],
    };
    if std::env::var_os("KEYWATCH_BENCH_LOG").is_some() {
        // Each pass's "detection pass" line: keys, what was read, load/decide/apply times.
        tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("KEYWATCH_BENCH_FILTER")
                    .unwrap_or_else(|_| "keywatch=info".to_owned()),
            )
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("detect: one pass over N keys x 168 hourly buckets (file-backed SQLite)");
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>12} {:>14}",
        "keys", "rows", "first ms", "new hour ms", "steady ms", "peak RSS MiB"
    );
    for keys in sizes {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        runtime.block_on(async {
            let store = Store::connect(&cfg.storage).await.unwrap();
            // As the daemon starts: the budgets' zones are rolled up.
            store
                .ensure_rollup_zones(&cfg.rollup_zones(), true)
                .await
                .unwrap();
            seed(&store, keys).await;
            let at = |t: i64| DateTime::<Utc>::from_timestamp(t, 0).unwrap();
            let before = proc_status_kib("VmRSS:");
            let _ = std::fs::write("/proc/self/clear_refs", "5"); // reset the peak (Linux)
            let mut detector = Detector::default();
            let started = Instant::now();
            detector.evaluate(&store, &cfg, at(NOW)).await.unwrap();
            let first = started.elapsed();
            // The next hour's buckets arrive; the pass after reads them only.
            let rows = hour(keys, NOW / H * H);
            for chunk in rows.chunks(1_000) {
                store
                    .store_usage("bench", H, chunk, None, NOW + H)
                    .await
                    .unwrap();
            }
            let started = Instant::now();
            detector.evaluate(&store, &cfg, at(NOW + H)).await.unwrap();
            let next = started.elapsed();
            let started = Instant::now();
            detector
                .evaluate(&store, &cfg, at(NOW + H + 60))
                .await
                .unwrap();
            let steady = started.elapsed();
            let peak = proc_status_kib("VmHWM:").max(before);
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            println!(
                "{:>8} {:>10} {:>12.0} {:>12.0} {:>12.0} {:>14.1}",
                keys,
                keys * 168,
                ms(first),
                ms(next),
                ms(steady),
                peak as f64 / 1024.0
            );
            store.close().await;
        });
    }
}
