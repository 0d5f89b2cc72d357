//! Drives the real poller, store and detector over a [`Corpus`] one poll at a time in simulated
//! time, as the daemon would: set the fake's clock, `Poller::poll_once(now)`, a pass of one
//! `Detector` (which keeps its windows between passes, as the daemon's does), and once a
//! simulated hour the retention prune. The first poll backfills `poll.lookback` (the daemon's
//! first start); later ones come every `poll.interval`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keywatch::alerts::{AlertStatus, Detector};
use keywatch::config::Config;
use keywatch::poller::{PollOutcome, Poller};
use keywatch::store::Store;
use tokio_util::sync::CancellationToken;

use super::corpus::{Corpus, HOUR};
use super::fake::MinuteFake;
use crate::fake_anthropic::ADMIN_KEY;

/// The admin key's environment variable in the replay's config.
const ADMIN_KEY_ENV: &str = "MINUTE_CORPUS_ADMIN_KEY";
/// Polls happen at this offset into the minute, as a daemon started at a random second would.
pub const PHASE: i64 = 37;

/// One spike alert that started firing.
#[derive(Debug, Clone)]
pub struct Fired {
    pub key_id: String,
    /// The poll (simulated time) whose detection pass opened it: when on-call is notified.
    pub at: i64,
    /// When the alert says the spike began.
    pub starts_at: i64,
    pub rule: &'static str,
    pub summary: String,
}

/// What one replay did.
#[derive(Debug)]
pub struct Run {
    pub fired: Vec<Fired>,
    pub polls: usize,
    /// The replayed span (simulated), first poll to the end.
    pub from: i64,
    pub to: i64,
    pub took: Duration,
    /// Requests the fake answered, by kind (`usage 1m`, `usage 1h`, `keys`, `costs`).
    pub requests: BTreeMap<String, usize>,
    /// Size of the database file at the end.
    pub db_bytes: u64,
    /// Keys a containment policy deactivated: (key id, simulated time of the action).
    pub contained: Vec<(String, i64)>,
}

/// The replay's config: `extra` (whole TOML tables such as `[poll]` or `[detect.spike]`) first,
/// then the storage and the one source pointing at the fake. With `extra` empty, every
/// `[poll]` and `[detect]` setting is keywatch's default.
pub fn config_text(extra: &str, uri: &str, storage_url: &str) -> String {
    format!(
        "{extra}\n\n[storage]\nurl = \"{storage_url}\"\n\n[[sources]]\nname = \"anthropic-corpus\"\nprovider = \"anthropic\"\nadmin_key_env = \"{ADMIN_KEY_ENV}\"\nbase_url = \"{uri}\"\n"
    )
}

fn at(t: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(t, 0).expect("a valid simulated time")
}

/// Replays `corpus` with the config `extra` from the first poll at `from` (which backfills the
/// lookback) every `poll.interval` while before `to`. `Err` (the config's error) when `extra`
/// is not a valid config for this keywatch, so a table row for a setting that does not exist
/// yet is reported as skipped.
pub async fn replay(corpus: Arc<Corpus>, extra: &str, from: i64, to: i64) -> Result<Run, String> {
    let fake = MinuteFake::start(Arc::clone(&corpus)).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let env = HashMap::from([(ADMIN_KEY_ENV.to_owned(), ADMIN_KEY.to_owned())]);
    // On the suite's backend: a SQLite file, or a throw-away PostgreSQL database.
    let storage_url = crate::backend::storage_url("keywatch").await;
    let config = Config::from_str(
        &config_text(extra, &fake.uri(), &storage_url),
        &dir.path().join("keywatch.toml"),
        &env,
    )
    .map_err(|e| e.to_string())?;
    let store = Store::connect(&config.storage)
        .await
        .expect("the store opens");
    store
        .ensure_rollup_zones(&config.rollup_zones(), true)
        .await
        .expect("the rollup zones are set up");
    let source = config.sources.first().expect("one source");
    let poller = Poller::new(source, &config.poll, config.prices.clone(), store.clone())
        .expect("the poller is set up");
    let cancel = CancellationToken::new();
    let step = config.poll.interval.0.as_secs() as i64;
    let started = Instant::now();
    let mut fired = Vec::new();
    let mut polls = 0;
    let mut detector = Detector::for_config(&config);
    let mut t = from;
    while t < to {
        fake.set_now(t);
        match poller.poll_once(at(t), &cancel).await {
            PollOutcome::Done { failed_streams, .. } if failed_streams.is_empty() => {}
            other => panic!("the poll at {t} failed against the fake: {other:?}"),
        }
        let report = detector
            .evaluate(&store, &config, at(t))
            .await
            .expect("detection runs");
        let opened: HashSet<&str> = report
            .changes
            .iter()
            .filter(|c| c.status == AlertStatus::Firing)
            .map(|c| c.alert_id.as_str())
            .collect();
        if !opened.is_empty() {
            let open = store.alerts(false).await.expect("alerts read");
            fired.extend(
                open.into_iter()
                    .filter(|a| opened.contains(a.id.as_str()))
                    .filter(|a| a.rule.as_str().starts_with("spike"))
                    .map(|a| Fired {
                        key_id: a.key_id.unwrap_or_default(),
                        at: t,
                        starts_at: a.starts_at,
                        rule: a.rule.as_str(),
                        summary: a.summary,
                    }),
            );
        }
        if t.div_euclid(HOUR) != (t + step).div_euclid(HOUR) {
            keywatch::retention::prune_at(&store, &config, t, &cancel)
                .await
                .expect("retention runs");
        }
        polls += 1;
        t += step;
    }
    let took = started.elapsed();
    let mut contained = Vec::new();
    for k in store.all_keys().await.expect("keys read") {
        for a in store
            .actions_for_key(&k.key_id, None)
            .await
            .expect("actions read")
        {
            if a.result == "done" {
                contained.push((a.key_id, a.at));
            }
        }
    }
    store.close().await;
    let db_bytes = ["", "-wal"]
        .iter()
        .filter_map(|s| {
            std::fs::metadata(format!("{}{s}", config.storage.describe()))
                .ok()
                .map(|m| m.len())
        })
        .sum();
    Ok(Run {
        fired,
        polls,
        from,
        to,
        took,
        requests: fake.requests(),
        db_bytes,
        contained,
    })
}
