//! Time to alert on minute-level traffic (#15), measured end to end: a seeded corpus of
//! Poisson requests with lognormal costs published 1–5 minutes late ([`corpus`]), served by a
//! fake Admin API on a simulated clock ([`fake`]), replayed one poll at a time through the real
//! poller, store and detector ([`replay`]) and scored per leak ([`score`]).
//!
//! The table (release; about two minutes a row):
//! `cargo test --release --test integration minute_corpus::table -- --ignored --nocapture`
//! Extra rows without recompiling: `MINUTE_CORPUS_ROW='[detect.spike]\nfactor = 5.0'` adds one
//! (`\n` is read as a newline); `MINUTE_CORPUS_ONLY=default` keeps the rows whose name contains
//! it; `MINUTE_CORPUS_SLOW=1` adds [`SLOW_ROW`]; `MINUTE_CORPUS_DETAILS=1` lists every leak and
//! false alert of every row (else of `default` only).

mod corpus;
mod fake;
mod replay;
mod score;

use std::sync::Arc;

use corpus::{Corpus, LeakPlan, Shape, Spec, DAY, HOUR, START};
use replay::{replay, PHASE};
use score::{details, score, table, Score};

/// The configurations of the table: a name and TOML tables added to the config. A row whose
/// TOML this keywatch does not accept is printed as skipped.
pub const ROWS: &[(&str, &str)] = &[
    ("default", ""),
    (
        "today: hourly stream, explicit",
        "[poll]\nbucket_width = \"1h\"\n",
    ),
    ("fast rule off", "[detect.spike.fast]\nenabled = false\n"),
    ("poll every minute", "[poll]\ninterval = \"1m\"\n"),
    ("minute factor 10", "[detect.spike.fast]\nfactor = 10.0\n"),
    ("minute factor 7", "[detect.spike.fast]\nfactor = 7.0\n"),
    ("spike factor 5", "[detect.spike]\nfactor = 5.0\n"),
];

/// Today's workaround a user would try, judged on a week of minute buckets per key: about a
/// second a poll, so only with `MINUTE_CORPUS_SLOW=1`.
pub const SLOW_ROW: (&str, &str) = (
    "1m buckets (today's workaround)",
    "[poll]\nbucket_width = \"1m\"\n",
);

/// The measured corpus: 35 keys (5 per shape) over 18 days, the last 11 replayed; two leaks on
/// each of 4 keys per shape except near-zero (48 leaks), 10–100x for 40–180 minutes, with the
/// minute-55 and the straddling 10x 100-minute leaks.
pub fn full_spec() -> Spec {
    Spec {
        seed: 15,
        days: 18,
        baseline_days: 7,
        shapes: Shape::ALL.to_vec(),
        keys_per_shape: 5,
        leaks: LeakPlan::Random {
            per_key: 2,
            multiple: (10.0, 100.0),
            minutes: (40, 180),
            specials: true,
        },
    }
}

/// Replays `corpus` with `extra` from `from` (plus the poll phase) to `to` and scores it.
pub async fn replay_and_score(
    corpus: &Arc<Corpus>,
    extra: &str,
    from: i64,
    to: i64,
) -> (replay::Run, Score) {
    let run = replay(Arc::clone(corpus), extra, from + PHASE, to)
        .await
        .unwrap_or_else(|e| panic!("the config {extra:?} is refused: {e}"));
    let s = score(corpus, &run);
    (run, s)
}

/// A few keys over one replayed day, leaks big enough for the hourly rule: every keywatch
/// since the detection issue must alert each within its length plus 75 minutes, once, and
/// raise nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_corpus_alerts_every_leak_once_and_nothing_else() {
    let corpus = Arc::new(Corpus::generate(Spec {
        seed: 7,
        days: 8,
        baseline_days: 7,
        shapes: vec![Shape::Diurnal, Shape::BusinessHours, Shape::Sparse],
        keys_per_shape: 2,
        leaks: LeakPlan::Random {
            per_key: 1,
            multiple: (30.0, 60.0),
            minutes: (60, 180),
            specials: false,
        },
    }));
    let (run, s) = replay_and_score(&corpus, "", corpus.replay_start(), corpus.end()).await;
    println!(
        "{}{}",
        table("small corpus, default", &run, &s),
        details(&corpus, &s)
    );
    assert_eq!(s.all.leaks, 6, "one leak on each key");
    for r in &s.leaks {
        let limit = (r.leak.end - r.leak.start) as f64 / 60.0 + 75.0;
        assert!(
            r.minutes.is_some_and(|m| m <= limit),
            "leak on {} at {} alerted after {:?} min (limit {limit})",
            corpus.keys[r.key].name,
            score::when(r.leak.start),
            r.minutes
        );
    }
    assert_eq!(s.all.repeats, 0, "one alert per leak");
    assert_eq!(s.false_alerts, vec![], "no alert outside a leak");
}

/// The acceptance test: a 20x leak starting at 14:55 on a steady key is alerted within
/// 15 minutes (the hourly rule alone needs 75: its hour ends at 15:59 and settles at 16:10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_at_minute_55_is_alerted_within_15_minutes() {
    let leak_at = 7 * DAY + 14 * HOUR + 55 * 60;
    let corpus = Arc::new(Corpus::generate(Spec {
        seed: 55,
        days: 8,
        baseline_days: 7,
        shapes: vec![Shape::Diurnal],
        keys_per_shape: 4,
        // The fourth key spends about $5 an hour at its peak.
        leaks: LeakPlan::Fixed(vec![(3, leak_at, 60, 20.0)]),
    }));
    let from = START + leak_at - 2 * HOUR;
    // With a containment policy (#18) over every key: the key is deactivated in the pass that
    // alerts, so minutes to containment are minutes to alert.
    let policy = "[[containment]]\nname = \"all\"\nkey_name = \"*\"\naction = \"deactivate\"\n";
    let (run, s) = replay_and_score(&corpus, policy, from, START + leak_at + 30 * 60).await;
    println!("{}{}", table("minute 55", &run, &s), details(&corpus, &s));
    let minutes = s.leaks[0].minutes;
    assert!(
        minutes.is_some_and(|m| m <= 15.0),
        "the leak from 14:55 was not alerted within 15 minutes (after {minutes:?} minutes; \
         replayed to 15:25; the hourly rule alone alerts at 16:10)"
    );
    assert_eq!(s.false_alerts, vec![], "no other alert");
    let leaking = &corpus.keys[3];
    let contained: Vec<f64> = run
        .contained
        .iter()
        .filter(|(k, _)| *k == leaking.id)
        .map(|(_, at)| (*at - (START + leak_at)) as f64 / 60.0)
        .collect();
    println!("minutes from the first leaking minute to containment: {contained:?}");
    assert_eq!(contained.len(), 1, "deactivated once: {:?}", run.contained);
    assert!(
        contained[0] <= 15.0,
        "contained after {} minutes",
        contained[0]
    );
    assert_eq!(run.contained.len(), 1, "no other key was touched");
}

/// The table for the closing note: every row of [`ROWS`] over [`full_spec`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes in release: cargo test --release --test integration minute_corpus::table -- --ignored --nocapture"]
async fn table_of_time_to_alert_and_false_alerts() {
    let started = std::time::Instant::now();
    let corpus = Arc::new(Corpus::generate(full_spec()));
    let leaks: usize = corpus.keys.iter().map(|k| k.leaks.len()).sum();
    println!(
        "corpus: {} keys, {} days ({} replayed), {leaks} leaks, generated in {:.1} s",
        corpus.keys.len(),
        corpus.spec.days,
        corpus.spec.days - corpus.spec.baseline_days,
        started.elapsed().as_secs_f64()
    );
    let mut rows: Vec<(String, String)> = ROWS
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    if let Ok(extra) = std::env::var("MINUTE_CORPUS_ROW") {
        rows.push((
            format!("MINUTE_CORPUS_ROW {extra}"),
            extra.replace("\\n", "\n"),
        ));
    }
    if std::env::var_os("MINUTE_CORPUS_SLOW").is_some() {
        rows.push((SLOW_ROW.0.to_owned(), SLOW_ROW.1.to_owned()));
    }
    let only = std::env::var("MINUTE_CORPUS_ONLY").unwrap_or_default();
    for (name, extra) in rows.iter().filter(|(n, _)| n.contains(&only)) {
        let from = corpus.replay_start() + PHASE;
        match replay(Arc::clone(&corpus), extra, from, corpus.end()).await {
            Ok(run) => {
                let s = score(&corpus, &run);
                println!("{}", table(name, &run, &s));
                if name == "default" || std::env::var_os("MINUTE_CORPUS_DETAILS").is_some() {
                    println!("{}", details(&corpus, &s));
                }
            }
            Err(e) => println!("\n## {name}: skipped, this keywatch refuses the config: {e}"),
        }
    }
}
