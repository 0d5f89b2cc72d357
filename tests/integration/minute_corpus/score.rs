//! Scoring a replay against the corpus's leaks: per leak, minutes from its first minute to the
//! poll that opened a spike alert for its key; every other spike alert is false (or a second
//! page for the same leak); tabled per key shape and overall.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::corpus::{quantile, Corpus, Leak, Shape, DAY, START};
use super::replay::Run;

/// An alert opened up to this long after a leak ended is still about that leak (the hourly
/// rule judges a bucket once it settled: up to an hour and `settle` after its start).
pub const GRACE: i64 = 90 * 60;

/// One leak and how the replay did on it.
#[derive(Debug, Clone)]
pub struct LeakResult {
    pub key: usize,
    pub leak: Leak,
    /// Minutes from the leak's start to the alert (`None`: missed).
    pub minutes: Option<f64>,
    /// When the alert said the spike began.
    pub began: Option<i64>,
    /// The first alert's summary (what on-call read).
    pub summary: Option<String>,
}

/// Counts for one key shape (or all).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub keys: usize,
    pub leaks: usize,
    pub missed: usize,
    pub minutes: Vec<f64>,
    /// Spike alerts opened for a leak already alerted (a second page for the same episode).
    pub repeats: usize,
    /// Spike alerts opened outside every leak.
    pub false_alerts: usize,
    pub key_days: f64,
}

impl Tally {
    pub fn median(&self) -> Option<f64> {
        (!self.minutes.is_empty()).then(|| quantile(self.minutes.clone(), 0.5))
    }

    pub fn p95(&self) -> Option<f64> {
        (!self.minutes.is_empty()).then(|| quantile(self.minutes.clone(), 0.95))
    }

    pub fn false_per_key_month(&self) -> f64 {
        if self.key_days == 0.0 {
            0.0
        } else {
            self.false_alerts as f64 * 30.0 / self.key_days
        }
    }

    fn add(&mut self, o: &Tally) {
        self.keys += o.keys;
        self.leaks += o.leaks;
        self.missed += o.missed;
        self.minutes.extend(&o.minutes);
        self.repeats += o.repeats;
        self.false_alerts += o.false_alerts;
        self.key_days += o.key_days;
    }
}

pub struct Score {
    pub by_shape: BTreeMap<Shape, Tally>,
    pub all: Tally,
    pub leaks: Vec<LeakResult>,
    /// (key index, poll time, summary) of each false alert.
    pub false_alerts: Vec<(usize, i64, String)>,
}

/// Scores `run` against the leaks of `corpus` that start within the replayed span.
pub fn score(corpus: &Corpus, run: &Run) -> Score {
    let mut by_shape: BTreeMap<Shape, Tally> = BTreeMap::new();
    let mut leaks = Vec::new();
    let mut false_alerts = Vec::new();
    let key_days = (run.to - run.from) as f64 / DAY as f64;
    for (k, key) in corpus.keys.iter().enumerate() {
        let tally = by_shape.entry(key.shape).or_default();
        tally.keys += 1;
        tally.key_days += key_days;
        let mut fired: Vec<_> = run.fired.iter().filter(|f| f.key_id == key.id).collect();
        fired.sort_by_key(|f| f.at);
        let mut used = vec![false; fired.len()];
        for leak in key
            .leaks
            .iter()
            .filter(|l| (run.from..run.to).contains(&l.start))
        {
            tally.leaks += 1;
            let (mut minutes, mut began, mut summary) = (None, None, None);
            for (i, f) in fired.iter().enumerate() {
                if (leak.start..leak.end + GRACE).contains(&f.at) {
                    used[i] = true;
                    match minutes {
                        None => {
                            minutes = Some((f.at - leak.start) as f64 / 60.0);
                            began = Some(f.starts_at);
                            summary = Some(f.summary.clone());
                        }
                        Some(_) => tally.repeats += 1,
                    }
                }
            }
            match minutes {
                Some(m) => tally.minutes.push(m),
                None => tally.missed += 1,
            }
            leaks.push(LeakResult {
                key: k,
                leak: leak.clone(),
                minutes,
                began,
                summary,
            });
        }
        for (f, used) in fired.iter().zip(used) {
            if !used {
                tally.false_alerts += 1;
                false_alerts.push((k, f.at, format!("{}: {}", f.rule, f.summary)));
            }
        }
    }
    let mut all = Tally::default();
    for t in by_shape.values() {
        all.add(t);
    }
    Score {
        by_shape,
        all,
        leaks,
        false_alerts,
    }
}

/// `d3 14:55` for a simulated time (days since the corpus's Monday).
pub fn when(t: i64) -> String {
    let s = t - START;
    format!(
        "d{} {:02}:{:02}",
        s / DAY,
        (s % DAY) / 3600,
        (s % 3600) / 60
    )
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The table for one row (a config): per shape and all.
pub fn table(name: &str, run: &Run, s: &Score) -> String {
    let mut out = String::new();
    let per_poll =
        |kind: &str| run.requests.get(kind).copied().unwrap_or(0) as f64 / run.polls.max(1) as f64;
    let _ = writeln!(
        out,
        "\n## {name}: {} polls in {:.1} s ({:.1} ms/poll); usage requests per poll: 1m {:.2}, 1h {:.2}; database with WAL {:.1} MB",
        run.polls,
        run.took.as_secs_f64(),
        run.took.as_secs_f64() * 1000.0 / run.polls.max(1) as f64,
        per_poll("usage 1m"),
        per_poll("usage 1h"),
        run.db_bytes as f64 / 1e6,
    );
    let _ = writeln!(
        out,
        "| shape | keys | leaks | missed | median min | p95 min | repeat pages | false | false/key-month |\n|---|---|---|---|---|---|---|---|---|"
    );
    let line = |out: &mut String, label: &str, t: &Tally| {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            t.keys,
            t.leaks,
            t.missed,
            opt(t.median()),
            opt(t.p95()),
            t.repeats,
            t.false_alerts,
            t.false_per_key_month()
        );
    };
    for (shape, t) in &s.by_shape {
        line(&mut out, shape.name(), t);
    }
    line(&mut out, "**all**", &s.all);
    out
}

/// Every leak and every false alert, for reading what the table sums up.
pub fn details(corpus: &Corpus, s: &Score) -> String {
    let mut out = String::new();
    for r in &s.leaks {
        let key = &corpus.keys[r.key];
        let _ = writeln!(
            out,
            "leak {:<12} {} (minute {:02}) {:>5.1}x busy ${:.2}/h for {:>3} min: {}",
            key.name,
            when(r.leak.start),
            (r.leak.start % 3600) / 60,
            r.leak.multiple,
            key.busy,
            (r.leak.end - r.leak.start) / 60,
            match (r.minutes, r.began) {
                (Some(m), Some(b)) => format!("alerted after {m:.0} min (began {})", when(b)),
                _ => "MISSED".to_owned(),
            },
        );
    }
    // What on-call read for the slow ones: the level the alert crossed, and when.
    for r in s
        .leaks
        .iter()
        .filter(|r| r.minutes.is_some_and(|m| m > 15.0))
    {
        if let Some(summary) = &r.summary {
            let _ = writeln!(out, "slow {:<12} {summary}", corpus.keys[r.key].name);
        }
    }
    for (k, at, summary) in &s.false_alerts {
        let _ = writeln!(
            out,
            "false {:<12} {}: {summary}",
            corpus.keys[*k].name,
            when(*at)
        );
    }
    out
}
