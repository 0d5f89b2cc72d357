//! `keywatch history`: a key's stored buckets as a table, CSV or JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::cli::{Format, TimeArg};
use crate::config::Config;
use crate::exit;
use crate::prices::TokenCounts;
use crate::store::{HistoryRow, Store, StoredKey};

/// What is stored about one key in a window: the history and the evidence export read it.
pub(super) struct Evidence {
    pub keys: Vec<StoredKey>,
    /// Buckets of `poll.bucket_width`.
    pub rows: Vec<HistoryRow>,
    pub billed: Billed,
}

impl Evidence {
    pub(super) async fn read(
        store: &Store,
        config: &Config,
        key: &str,
        source: Option<&str>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let (from, to) = (since.timestamp(), until.timestamp());
        let width = config.poll.bucket_width.seconds();
        Ok(Self {
            keys: store.keys_by_id(key).await?,
            rows: store.history(key, source, width, from, to).await?,
            billed: Billed(store.billed_by_day(source, key, from, to).await?),
        })
    }
}

pub async fn print(
    config: &Config,
    key: &str,
    source: Option<&str>,
    since: TimeArg,
    until: Option<TimeArg>,
    format: Format,
) -> anyhow::Result<u8> {
    let (since, until) = crate::window::range(since, until, Utc::now())
        .map_err(|e| anyhow::anyhow!("--since/--until: {e}"))?;
    let store = Store::connect_existing(&config.storage).await?;
    let Evidence {
        keys: known,
        rows,
        billed,
    } = Evidence::read(&store, config, key, source, since, until).await?;
    store.close().await;
    if rows.is_empty() && known.is_empty() {
        eprintln!("keywatch: no key {key:?} in the store (check the id; `keywatch run --once` fetches the inventory)");
        return Ok(exit::FAILURE);
    }
    let text = match format {
        Format::Csv => csv(key, &rows, &billed),
        Format::Json => json(key, &rows, &billed)?,
        Format::Table => {
            let mut t = String::new();
            for k in &known {
                let _ = writeln!(
                    t,
                    "key {} {:?} on {}: {}{}",
                    crate::text::clean(&k.key_id),
                    k.name.as_deref().unwrap_or("(unnamed)"),
                    k.source,
                    crate::text::clean(&k.status),
                    k.workspace_id
                        .as_deref()
                        .map(|w| format!(", workspace {}", crate::text::clean(w)))
                        .unwrap_or_default()
                );
            }
            let _ = writeln!(
                t,
                "usage from {} to {} (UTC)",
                time(since.timestamp()),
                time(until.timestamp())
            );
            t + &table(&rows) + &billed.table(&rows)
        }
    };
    print!("{text}");
    Ok(exit::OK)
}

pub(super) fn time(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ts.to_string())
}

fn csv_header() -> String {
    format!(
        "source,key_id,bucket_start,bucket_end,model,{},web_search_requests,requests,cost_usd,priced,billed_usd_day",
        TokenCounts::NAMES.join(",")
    )
}

/// Billed cost per (source, UTC day) of the key, where the provider reports it.
pub(super) struct Billed(pub(super) Vec<(String, i64, f64)>);

impl Billed {
    /// The key's billed USD for the UTC day of the bucket starting at `start`.
    fn day_of(&self, source: &str, start: i64) -> Option<f64> {
        let day = start.div_euclid(86_400) * 86_400;
        self.0
            .iter()
            .find(|(s, d, _)| s == source && *d == day)
            .map(|(_, _, usd)| *usd)
    }

    /// Estimated against billed cost per day, for the table.
    fn table(&self, rows: &[HistoryRow]) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let mut o =
            String::from("\nper UTC day       source                estimated USD   billed USD\n");
        for (source, day, usd) in &self.0 {
            let estimated: f64 = rows
                .iter()
                .filter(|r| {
                    &r.source == source && r.bucket_start.div_euclid(86_400) * 86_400 == *day
                })
                .filter_map(|r| r.cost_usd)
                .sum();
            let _ = writeln!(
                o,
                "{:<17} {:<20} {:>14.4} {:>12.4}",
                time(*day).get(..10).unwrap_or_default(),
                source,
                estimated,
                usd
            );
        }
        o
    }
}

pub(super) fn csv(key: &str, rows: &[HistoryRow], billed: &Billed) -> String {
    let mut o = csv_header();
    o.push('\n');
    for r in rows {
        let _ = writeln!(
            o,
            "{},{},{},{},{},{},{},{},{},{},{}",
            crate::csv::text(&r.source),
            crate::csv::text(key),
            time(r.bucket_start),
            time(r.bucket_start + r.bucket_width),
            crate::csv::text(&r.model),
            r.tokens.csv_fields(),
            r.web_search_requests,
            r.requests.map(|n| n.to_string()).unwrap_or_default(),
            r.cost_usd.map(|c| format!("{c:.6}")).unwrap_or_default(),
            r.cost_usd.is_some(),
            billed
                .day_of(&r.source, r.bucket_start)
                .map(|c| format!("{c:.6}"))
                .unwrap_or_default()
        );
    }
    o
}

fn json(key: &str, rows: &[HistoryRow], billed: &Billed) -> anyhow::Result<String> {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut item = serde_json::json!({
                "source": r.source,
                "key_id": key,
                "bucket_start": time(r.bucket_start),
                "bucket_end": time(r.bucket_start + r.bucket_width),
                "model": r.model,
                "web_search_requests": r.web_search_requests,
                "requests": r.requests,
                "cost_usd": r.cost_usd,
                "priced": r.cost_usd.is_some(),
                "billed_usd_day": billed.day_of(&r.source, r.bucket_start),
            });
            r.tokens.add_to(&mut item);
            item
        })
        .collect();
    Ok(serde_json::to_string_pretty(&items)? + "\n")
}

fn table(rows: &[HistoryRow]) -> String {
    if rows.is_empty() {
        return "no usage stored in this window\n".to_owned();
    }
    let model = |r: &HistoryRow| crate::text::clean(&r.model).into_owned();
    let model_w = rows
        .iter()
        .map(|r| model(r).chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<20}  {:<model_w$}  {:>11}  {:>11}  {:>11}  {:>11}  {:>11}  {:>8}  {:>10}",
        "start (UTC)",
        "model",
        "input",
        "cache wr 5m",
        "cache wr 1h",
        "cache read",
        "output",
        "requests",
        "cost USD"
    );
    let mut total = 0.0;
    let mut unpriced = BTreeSet::new();
    for r in rows {
        let t = &r.tokens;
        let cost = match r.cost_usd {
            Some(c) => {
                total += c;
                format!("{c:.4}")
            }
            None => {
                unpriced.insert(model(r));
                "unpriced".to_owned()
            }
        };
        let _ = writeln!(
            o,
            "{:<20}  {:<model_w$}  {:>11}  {:>11}  {:>11}  {:>11}  {:>11}  {:>8}  {:>10}",
            time(r.bucket_start),
            model(r),
            t.uncached_input,
            t.cache_write_5m,
            t.cache_write_1h,
            t.cache_read,
            t.output,
            r.requests.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            cost
        );
    }
    let _ = writeln!(o, "total {:.4} USD over {} rows", total, rows.len());
    for m in unpriced {
        let _ = writeln!(
            o,
            "note: model {m} has no price, so its cost is not in the total; add [prices.\"{m}\"] to the config"
        );
    }
    o
}
