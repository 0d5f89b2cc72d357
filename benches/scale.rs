//! End-to-end scale (#16): a fake Anthropic Admin API serving N active keys (two models each,
//! every hour of the last 8 days; one key in ten active in any minute) and the real `keywatch`
//! binary against it, on SQLite in a temp dir. Reports per N: the first `run --once` (backfill
//! of 8 days + detect) time, peak RSS and rows/s; a second `run --once` (a steady cycle, process
//! start included); and the daemon's RSS after three poll cycles.
//!
//! Run: `cargo bench --bench scale` (sizes 300, 1,000 and 10,000;
//! `KEYWATCH_BENCH_KEYS=1000` runs one size; `KEYWATCH_BENCH_LOG=1` prints each run's poll and
//! detection timings from its log; `KEYWATCH_BENCH_LATE=1` makes every poll re-read the 48-hour
//! late window (the second run then measures one); `KEYWATCH_BENCH_PYTHON=1` also runs the yardstick,
//! `benches/plain_script.py`, a plain Python cron job over sqlite3 that polls the same fake,
//! twice per N into an empty database, and prints its times and peak RSS in a second table).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};

const ADMIN_KEY: &str = "sk-ant-admin01-scale-bench-key";
const MODELS: [&str; 2] = ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"];

#[derive(Clone)]
struct Fake {
    keys: usize,
}

type Params = Vec<(String, String)>;

fn param<'a>(q: &'a Params, key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn rfc3339(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn json(body: String) -> Response {
    ([("content-type", "application/json")], body).into_response()
}

async fn list_keys(State(f): State<Fake>, Query(q): Query<Params>) -> Response {
    let limit: usize = param(&q, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20);
    let start = param(&q, "after_id")
        .and_then(|a| a.strip_prefix("apikey_"))
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(0, |n| n + 1);
    let end = (start + limit.min(1000)).min(f.keys);
    // Created 30 days ago: inside the rotation policy, so no key-age alert per key.
    let created = rfc3339(Utc::now().timestamp() - 30 * 86_400);
    let mut body = String::from("{\"data\":[");
    for k in start..end {
        if k > start {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"id":"apikey_{k:06}","type":"api_key","name":"service-{k}","partial_key_hint":null,"status":"active","scope":{{"type":"organization"}},"principal":null,"created_at":"{created}","expires_at":null}}"#
        );
    }
    let _ = write!(
        body,
        r#"],"has_more":{},"first_id":null,"last_id":"apikey_{:06}"}}"#,
        end < f.keys,
        end.saturating_sub(1)
    );
    json(body)
}

async fn usage(State(f): State<Fake>, Query(q): Query<Params>) -> Response {
    let width: i64 = match param(&q, "bucket_width") {
        Some("1h") => 3_600,
        Some("1m") => 60,
        _ => return (StatusCode::BAD_REQUEST, "bucket_width").into_response(),
    };
    let limit: i64 = param(&q, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(24);
    let start = match param(&q, "page") {
        Some(p) => p.parse().unwrap_or(0),
        None => param(&q, "starting_at")
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or(0, |t| t.timestamp().div_euclid(width) * width),
    };
    let end = Utc::now().timestamp().div_euclid(width) * width + width;
    let mut body = String::from("{\"data\":[");
    let mut t = start;
    let mut n = 0;
    while t < end && n < limit {
        if n > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"starting_at":"{}","ending_at":"{}","results":["#,
            rfc3339(t),
            rfc3339(t + width)
        );
        let mut first = true;
        for k in 0..f.keys {
            // Hourly: every key; minutes: one key in ten (spread over the minutes).
            if width == 60 && (k as i64 + t / 60) % 10 != 0 {
                continue;
            }
            let scale = if width == 60 { 1 } else { 10 };
            for (m, model) in MODELS.iter().enumerate() {
                if !first {
                    body.push(',');
                }
                first = false;
                let v = ((k as i64 * 7 + t / width * 13 + m as i64) % 50 + 10) * scale;
                let _ = write!(
                    body,
                    r#"{{"api_key_id":"apikey_{k:06}","workspace_id":null,"model":"{model}","service_tier":"standard","context_window":"0-200k","inference_geo":null,"uncached_input_tokens":{},"cache_read_input_tokens":{},"output_tokens":{},"cache_creation":{{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0}},"server_tool_use":{{"web_search_requests":0}}}}"#,
                    v * 100,
                    v * 300,
                    v * 20
                );
            }
        }
        body.push_str("]}");
        t += width;
        n += 1;
    }
    let more = t < end;
    let next = if more {
        format!("\"{t}\"")
    } else {
        "null".into()
    };
    let _ = write!(body, r#"],"has_more":{more},"next_page":{next}}}"#);
    json(body)
}

async fn costs() -> Response {
    json(r#"{"data":[],"has_more":false,"next_page":null}"#.to_owned())
}

async fn start_fake(keys: usize) -> String {
    let app = Router::new()
        .route("/v1/organizations/api_keys", get(list_keys))
        .route("/v1/organizations/usage_report/messages", get(usage))
        .route("/v1/organizations/cost_report", get(costs))
        .with_state(Fake { keys });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn write_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("keywatch.toml");
    let text = format!(
        r#"
[storage]
url = "sqlite://keywatch.db"

[poll]
interval = "10s"
lookback = "8d"
timeout = "60s"

{late}
[[sources]]
name = "scale"
provider = "anthropic"
admin_key_env = "SCALE_ADMIN_KEY"
base_url = "{url}"
"#,
        // KEYWATCH_BENCH_LATE=1: every poll re-reads the late window (48 h), so the second
        // `run --once` measures a re-read.
        late = if std::env::var("KEYWATCH_BENCH_LATE").as_deref() == Ok("1") {
            "late_every = \"10s\""
        } else {
            ""
        }
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// VmHWM / VmRSS of a process, KiB.
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The binary with the config; its log (info) goes to `log`.
fn command(config: &Path, log: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"));
    let log = std::fs::File::create(log).unwrap();
    cmd.arg("--config")
        .arg(config)
        .env("SCALE_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "keywatch=info")
        .env_remove("KEYWATCH_CONFIG")
        .stdout(Stdio::null())
        .stderr(log);
    cmd
}

/// The log lines that time a poll or a detection pass.
fn timings(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            [
                "poll finished",
                "detection pass",
                "backfill progress",
                "staged usage moved",
            ]
            .iter()
            .any(|m| l.contains(m))
        })
        .map(|l| {
            format!(
                "    {}\n",
                l.split_once("  ").map_or(l, |(_, rest)| rest.trim())
            )
        })
        .collect()
}

/// Runs `run --once`: wall time, peak RSS (MiB) and exit code.
async fn run_once(config: &Path, log: &Path) -> (Duration, f64, Option<i32>) {
    let started = Instant::now();
    let child = command(config, log)
        .args(["run", "--once"])
        .spawn()
        .unwrap();
    let (peak, code) = wait_peak(child).await;
    (started.elapsed(), peak, code)
}

/// Waits for a child, reading its VmHWM every 20 ms: peak RSS (MiB) and exit code.
async fn wait_peak(mut child: tokio::process::Child) -> (f64, Option<i32>) {
    let pid = child.id().unwrap_or(0);
    let mut peak = 0;
    let status = loop {
        if let Some(hwm) = proc_kib(pid, "VmHWM:") {
            peak = peak.max(hwm);
        }
        tokio::select! {
            s = child.wait() => break s.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    };
    (peak as f64 / 1024.0, status.code())
}

/// Runs the yardstick, `benches/plain_script.py`, once against the fake with the database `db`:
/// wall time, peak RSS (MiB) and exit code. Its stdout and stderr go to `log`.
async fn run_python(url: &str, db: &Path, log: &Path) -> (Duration, f64, Option<i32>) {
    let out = std::fs::File::create(log).unwrap();
    let started = Instant::now();
    let child = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/plain_script.py"
        ))
        .args(["--base-url", url, "--db"])
        .arg(db)
        .env("ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("python3 on PATH");
    let (peak, code) = wait_peak(child).await;
    (started.elapsed(), peak, code)
}

/// The yardstick's row: its first run (8-day backfill into an empty database) and second run
/// against the fake at `url`.
async fn measure_python(keys: usize, url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let logs = ["first", "second"].map(|n| dir.path().join(format!("python-{n}.log")));
    let (first, first_peak, code) = run_python(url, &db, &logs[0]).await;
    let (second, second_peak, code2) = run_python(url, &db, &logs[1]).await;
    for ((name, log), code) in ["first", "second"].iter().zip(&logs).zip([code, code2]) {
        if code != Some(0) || std::env::var_os("KEYWATCH_BENCH_LOG").is_some() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            eprintln!("{keys} keys, python {name} run:\n    {}", text.trim_end());
        }
    }
    format!(
        "| {keys} | {:.1} s (exit {}) | {:.0} MiB | {:.1} s (exit {}) | {:.0} MiB |",
        first.as_secs_f64(),
        code.unwrap_or(-1),
        first_peak,
        second.as_secs_f64(),
        code2.unwrap_or(-1),
        second_peak
    )
}

/// Runs the daemon for four poll cycles: its RSS (MiB) sampled every half second over the
/// last two (from 20 s to 40 s after start, after the first full detection pass), as the
/// median and the largest sample.
/// `KEYWATCH_BENCH_HEAPTRACK=/path/to/heaptrack` runs the daemon under heaptrack (its data
/// file, in the temp dir, is printed; the RSS shown is then heaptrack's script's).
async fn daemon_rss(config: &Path, log: &Path) -> (f64, f64) {
    let mut cmd = command(config, log);
    if let Some(heaptrack) = std::env::var_os("KEYWATCH_BENCH_HEAPTRACK") {
        let binary = cmd.as_std().get_program().to_owned();
        let args: Vec<_> = cmd.as_std().get_args().map(|a| a.to_owned()).collect();
        let mut wrapped = tokio::process::Command::new(heaptrack);
        wrapped
            .arg("-o")
            .arg(std::env::temp_dir().join("keywatch-daemon.heaptrack"))
            .arg(binary)
            .args(args)
            .args(["run"])
            .env("SCALE_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "keywatch=info")
            .env_remove("KEYWATCH_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        cmd = wrapped;
        eprintln!(
            "heaptrack data: {}.*",
            std::env::temp_dir()
                .join("keywatch-daemon.heaptrack")
                .display()
        );
    } else {
        cmd.arg("run");
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut samples = Vec::new();
    for _ in 0..40 {
        samples.push(proc_kib(pid, "VmRSS:").unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    samples.sort_unstable();
    // Under heaptrack the child is its script: signal the daemon itself.
    let _ = std::process::Command::new("pkill")
        .args(["-TERM", "-P", &pid.to_string()])
        .status();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let mib = |kib: u64| kib as f64 / 1024.0;
    (
        mib(samples[samples.len() / 2]),
        mib(*samples.last().unwrap_or(&0)),
    )
}

/// keywatch's row; with `python`, also the yardstick's against the same fake.
async fn measure(keys: usize, python: bool) -> (String, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let url = start_fake(keys).await;
    let config = write_config(dir.path(), &url);
    let logs = ["backfill", "steady", "daemon"].map(|n| dir.path().join(format!("{n}.log")));
    let (backfill, backfill_peak, code) = run_once(&config, &logs[0]).await;
    let rows = keys * MODELS.len() * (8 * 24 + 1);
    let (steady, steady_peak, code2) = run_once(&config, &logs[1]).await;
    let (rss, rss_max) = daemon_rss(&config, &logs[2]).await;
    let db = std::fs::metadata(dir.path().join("keywatch.db")).map_or(0, |m| m.len());
    if std::env::var_os("KEYWATCH_BENCH_LOG").is_some() {
        for (name, log) in ["backfill", "steady", "daemon"].iter().zip(&logs) {
            eprintln!("{keys} keys, {name}:\n{}", timings(log));
        }
    }
    let row = format!(
        "| {keys} | {:.1} s (exit {}) | {:.0} MiB | {:.0} | {:.2} s (exit {}) | {:.0} MiB | {:.0} MiB ({:.0}) | {:.0} MiB |",
        backfill.as_secs_f64(),
        code.unwrap_or(-1),
        backfill_peak,
        rows as f64 / backfill.as_secs_f64(),
        steady.as_secs_f64(),
        code2.unwrap_or(-1),
        steady_peak,
        rss,
        rss_max,
        db as f64 / 1_048_576.0
    );
    let python = if python {
        Some(measure_python(keys, &url).await)
    } else {
        None
    };
    (row, python)
}

fn main() {
    let sizes: Vec<usize> = match std::env::var("KEYWATCH_BENCH_KEYS") {
        Ok(n) => vec![n.parse().expect("KEYWATCH_BENCH_KEYS is a number of keys")],
        Err(_) => vec![300, 1_000, 10_000],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!("| keys | first run --once (backfill 8 d + detect) | peak RSS | rows/s | second run --once | peak RSS | daemon RSS, median (max) over cycles 3-4 | database |");
    println!("|---|---|---|---|---|---|---|---|");
    let python = std::env::var_os("KEYWATCH_BENCH_PYTHON").is_some_and(|v| v == "1");
    let mut python_rows = Vec::new();
    for keys in sizes {
        let (row, python_row) = rt.block_on(measure(keys, python));
        println!("{row}");
        python_rows.extend(python_row);
    }
    if python {
        println!();
        println!("Plain Python cron script (benches/plain_script.py: hourly report for the last 8 days, upsert, spike check), same fake:");
        println!();
        println!("| keys | python first run | peak RSS | python second run | peak RSS |");
        println!("|---|---|---|---|---|");
        for row in python_rows {
            println!("{row}");
        }
    }
}
