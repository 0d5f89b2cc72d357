//! Harnesses shared by the fuzz targets (`fuzz/`) and the test that replays their corpus
//! (`tests/integration/fuzz_corpus.rs`). Each takes arbitrary bytes, runs them through the same
//! code keywatch runs on untrusted input, and panics only when an invariant breaks.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::config::{Config, Env};
use crate::providers::{anthropic, openai, UsagePage};

/// Any secret variable a fuzzed config names resolves to this, so leaks are detectable.
pub const SENTINEL: &str = "sk-ant-admin01-FUZZ-SENTINEL-0b9e1d";

struct SentinelEnv;

impl Env for SentinelEnv {
    fn var(&self, name: &str) -> Option<String> {
        // systemd's folders are paths, not secrets (the first fuzzing run flagged
        // STATE_DIRECTORY showing up in the database path).
        match name {
            "STATE_DIRECTORY" | "CREDENTIALS_DIRECTORY" => None,
            _ => (!name.is_empty() && name.len() < 64).then(|| SENTINEL.to_owned()),
        }
    }
}

fn check_usage(page: &UsagePage) {
    for b in &page.buckets {
        assert!(
            b.end > b.start,
            "a bucket that ends before it starts was accepted"
        );
        for r in &b.rows {
            let t = &r.tokens;
            for v in [
                t.uncached_input,
                t.cache_read,
                t.cache_write_5m,
                t.cache_write_1h,
                t.output,
            ] {
                assert!(v >= 0, "a negative token count was accepted");
            }
        }
    }
}

/// Every provider response decoder: both providers' usage, cost and key pages, and error bodies.
pub fn provider_responses(data: &[u8]) {
    if let Ok(page) = anthropic::decode_usage(data) {
        check_usage(&page);
    }
    if let Ok(page) = openai::decode_usage(data) {
        check_usage(&page);
    }
    for page in [anthropic::decode_costs(data), openai::decode_costs(data)]
        .into_iter()
        .flatten()
    {
        for b in &page.buckets {
            assert!(b.end > b.start);
            assert!(b.lines.iter().all(|l| l.usd.is_finite()));
        }
    }
    let _ = anthropic::decode_keys(data);
    let _ = openai::decode_keys(data);
    let _ = crate::providers::parse_error(data);
}

/// The config parser and checks, with every named secret resolving to [`SENTINEL`]: it never
/// panics, and the secret is in neither an error nor the parsed config's Debug output.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_str(text, Path::new("/etc/keywatch/keywatch.toml"), &SentinelEnv) {
        Ok(config) => {
            let shown = format!("{config:?}");
            assert!(!shown.contains(SENTINEL), "a secret reached Debug output");
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            assert!(
                !shown.contains(SENTINEL),
                "a secret reached an error: {shown}"
            );
        }
    }
}

/// Durations, times and time zones: the CLI's `--since`/`--until` parser, zone names, report
/// periods and budget periods around arbitrary dates, and the rollup's day arithmetic.
pub fn times(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let now = DateTime::parse_from_rfc3339("2026-11-26T14:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    if let Ok(t) = crate::cli::parse_time(&text) {
        let _ = t.resolve(now);
    }
    let _ = humantime::parse_duration(&text);
    // The first line names a zone; the bytes after it pick dates and instants.
    let (name, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let zone: Tz = name.trim().parse().unwrap_or(Tz::UTC);
    let mut seed = [0u8; 16];
    for (i, b) in rest.bytes().take(16).enumerate() {
        seed[i] = b;
    }
    let ts = i64::from(i32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]])) * 4;
    let days = i64::from(u16::from_le_bytes([seed[4], seed[5]]) % 400);
    let Some(instant) = DateTime::<Utc>::from_timestamp(ts, 0) else {
        return;
    };
    let _ = crate::budget::current_periods(zone, instant);
    let _ = crate::store::local_midnight_day(zone, ts);
    let first = instant.with_timezone(&zone).date_naive();
    let last = first + chrono::Duration::days(days);
    for kind in [
        crate::report::PeriodKind::Day,
        crate::report::PeriodKind::Week,
        crate::report::PeriodKind::Month,
    ] {
        let periods = crate::report::periods(kind, zone, first, last);
        for w in periods.windows(2) {
            assert!(w[0].start < w[0].end, "an empty period");
            assert_eq!(w[0].end, w[1].start, "periods must tile time");
        }
    }
    let _ = NaiveDate::from_ymd_opt(i32::from(seed[6]) + 1900, u32::from(seed[7]), 1);
}
