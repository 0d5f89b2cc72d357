//! `keywatch backtest`: the spike rule replayed over stored history — the hourly check over the
//! hourly stream and the minute check over the recent minute stream still kept — so an operator
//! can tune `factor`, `baseline_quantile`, `seasonal`, `min_baseline` and `[detect.spike.fast]`
//! before going live.

use std::collections::HashMap;

use chrono::Utc;
use serde_json::json;

use crate::alerts::rfc3339;
use crate::cli::{ListFormat, TimeArg};
use crate::config::Config;
use crate::detect::burn;
use crate::detect::spike::{baseline, replay};
use crate::exit;
use crate::store::Store;

pub async fn run(config: &Config, since: TimeArg, format: ListFormat) -> anyhow::Result<u8> {
    let now = Utc::now().timestamp();
    let width = config.poll.bucket_width.seconds();
    let settle = config.poll.settle.0.as_secs() as i64;
    let last = (now - settle).div_euclid(width) * width - width;
    let since = since.resolve(Utc::now()).timestamp().div_euclid(width) * width;
    let window = (config.spike.baseline_window.0.as_secs() as i64).max(7 * 86_400);
    let store = Store::connect_existing(&config.storage).await?;
    let keys: HashMap<(String, String), _> = store
        .all_keys()
        .await?
        .into_iter()
        .map(|k| ((k.source.clone(), k.key_id.clone()), k))
        .collect();
    let cfg = &config.spike;
    let series = store
        .usage_series(width, since - window, last, cfg.metric)
        .await?;
    let recent = match config.poll.recent {
        Some(_) if width == 3_600 => {
            store
                .usage_series(60, since, now, crate::detect::SpikeMetric::Cost)
                .await?
        }
        _ => Vec::new(),
    };
    store.close().await;
    let mut rows = Vec::new();
    for m in &recent {
        let hourly = series
            .iter()
            .find(|s| s.source == m.source && s.key_id == m.key_id);
        let key = keys.get(&(m.source.clone(), m.key_id.clone()));
        let Some(first_minute) = m.points.first().map(|p| p.0) else {
            continue;
        };
        let minutes = m.points.dense(first_minute, now.div_euclid(60) * 60, 60);
        let factor = cfg.fast_factor();
        // The key's busy level per hour of the replay, computed once per hour (not per minute):
        // its hourly baseline over the hours before that one.
        let first_hour = first_minute.div_euclid(3_600) * 3_600;
        let busy_by_hour: Vec<f64> = (first_hour..=now)
            .step_by(3_600)
            .map(|hour| {
                let Some(h) = hourly.filter(|_| cfg.metric == crate::detect::SpikeMetric::Cost)
                else {
                    return cfg.min_baseline;
                };
                let Some(first) = h.points.first().map(|p| p.0) else {
                    return cfg.min_baseline;
                };
                let upto = hour - 3_600;
                let values = h.points.dense(first, upto, 3_600);
                let known = key
                    .and_then(|k| k.created_at)
                    .map_or(first, |c| c.min(first));
                baseline(cfg, 3_600, &values, upto + 3_600 - known).value
            })
            .collect();
        let busy = |i: usize| -> f64 {
            let hour = (first_minute + i as i64 * 60 - first_hour) / 3_600;
            busy_by_hour
                .get(hour as usize)
                .copied()
                .unwrap_or(cfg.min_baseline)
        };
        let at = |i: usize| first_minute + i as i64 * 60;
        for e in burn::replay(&cfg.fast, &minutes, 0, |i| factor * busy(i)) {
            rows.push(json!({
                "rule": "spike (minute check)",
                "source": m.source,
                "key_id": m.key_id,
                "key_name": key.and_then(|k| k.name.clone()),
                "fires_at": rfc3339(at(e.fired)),
                "began_at": rfc3339(at(e.burn.began)),
                "resolves_at": e.end.map(|i| rfc3339(at(i))),
                "observed": e.burn.rate_per_hour,
                "peak": e.burn.rate_per_hour,
                "baseline": e.burn.level_per_hour / factor,
                "ratio": e.burn.rate_per_hour * factor / e.burn.level_per_hour,
            }));
        }
    }
    for s in &series {
        let Some(first) = s.points.first().map(|p| p.0) else {
            continue;
        };
        let values = s.points.dense(first, last, width);
        let key = keys.get(&(s.source.clone(), s.key_id.clone()));
        let known_since = key
            .and_then(|k| k.created_at)
            .map_or(first, |c| c.min(first));
        let from = ((since.max(first) - first) / width) as usize;
        let at = |i: usize| first + i as i64 * width;
        for e in replay(cfg, width, &values, from, |i| at(i) - known_since) {
            rows.push(json!({
                "rule": "spike",
                "source": s.source,
                "key_id": s.key_id,
                "key_name": key.and_then(|k| k.name.clone()),
                "fires_at": rfc3339(at(e.start)),
                "resolves_at": e.end.map(|i| rfc3339(at(i))),
                "observed": e.observed,
                "peak": e.peak,
                "baseline": e.baseline.value,
                "ratio": e.observed / e.baseline.value,
            }));
        }
    }
    rows.sort_by(|a, b| a["fires_at"].as_str().cmp(&b["fires_at"].as_str()));
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        ListFormat::Table => {
            println!(
                "spike replay from {} to {} with factor {}, quantile {}, seasonal {}, floor {}",
                rfc3339(since),
                rfc3339(last + width),
                cfg.factor,
                cfg.baseline_quantile,
                cfg.seasonal,
                cfg.min_baseline
            );
            if rows.is_empty() {
                println!("no spike would have fired");
            }
            for r in &rows {
                println!(
                    "{}  {:<28} {:>9.2} vs {:>7.2} ({:>5.1}x)  until {}",
                    r["fires_at"].as_str().unwrap_or_default(),
                    crate::text::clean(
                        r["key_name"]
                            .as_str()
                            .or(r["key_id"].as_str())
                            .unwrap_or_default()
                    ),
                    r["observed"].as_f64().unwrap_or_default(),
                    r["baseline"].as_f64().unwrap_or_default(),
                    r["ratio"].as_f64().unwrap_or_default(),
                    r["resolves_at"].as_str().unwrap_or("still open"),
                );
            }
            println!(
                "{} spike alerts would have fired (the minute check replays the recent stream kept, storage.retention.\"1m\", as if each minute arrived at once)",
                rows.len()
            );
        }
    }
    Ok(exit::OK)
}
