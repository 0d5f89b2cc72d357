//! `spawn_app()`: a fake provider, a temp dir with a config and a fresh SQLite file, and typed
//! helpers to run keywatch in-process or as the real binary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Once;

use keywatch::app::{App, CycleReport};
use keywatch::config::Config;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::fake_anthropic::{FakeAnthropic, FakeRow, Tokens, ADMIN_KEY};

pub const HOUR: i64 = 3600;

/// Logs from the library under test, visible only with TEST_LOG=1.
pub fn init_test_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            keywatch::telemetry::init("debug", false);
        }
    });
}

pub struct TestApp {
    pub dir: TempDir,
    /// `storage.url`: `sqlite://keywatch.db`, or a throw-away PostgreSQL database
    /// (`KEYWATCH_TEST_BACKEND=postgres`, see [`crate::backend`]).
    pub storage_url: String,
    pub config_path: PathBuf,
    pub fake: FakeAnthropic,
    pub env: HashMap<String, String>,
}

/// One stored usage row, as compared in tests.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub key_id: String,
    pub bucket_start: i64,
    pub model: String,
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
    pub updated_at: i64,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// A test app whose config gets `extra` appended (more TOML tables).
pub async fn spawn_app_with(extra: &str) -> TestApp {
    spawn_app_with_lookback("2d", extra).await
}

/// A test app backfilling `lookback` on first start, with `extra` appended to its config.
pub async fn spawn_app_with_lookback(lookback: &str, extra: &str) -> TestApp {
    init_test_logging();
    let fake = FakeAnthropic::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("keywatch.toml");
    let storage_url = crate::backend::storage_url("keywatch").await;
    let storage = storage_section(&storage_url);
    let text = format!(
        r#"
{storage}
[poll]
interval = "1m"
bucket_width = "1h"
lookback = "{lookback}"
settle = "3h"
timeout = "2s"
retries = 3
retry_backoff = "10ms"

[[sources]]
name = "anthropic-test"
provider = "anthropic"
admin_key_env = "TEST_ANTHROPIC_ADMIN_KEY"
base_url = "{}"
{extra}"#,
        fake.uri()
    );
    std::fs::write(&config_path, text).unwrap();
    let env = HashMap::from([
        ("TEST_ANTHROPIC_ADMIN_KEY".to_owned(), ADMIN_KEY.to_owned()),
        (
            "TEST_WEBHOOK_SECRET".to_owned(),
            crate::receivers::WEBHOOK_SECRET.to_owned(),
        ),
        (
            "TEST_PD_ROUTING_KEY".to_owned(),
            "R0UT1NGKEY-test".to_owned(),
        ),
        (
            "TEST_HTTP_TOKEN".to_owned(),
            "s3cret-dashboard-token".to_owned(),
        ),
        (
            "TEST_OPENAI_ADMIN_KEY".to_owned(),
            crate::fake_openai::OPENAI_ADMIN_KEY.to_owned(),
        ),
    ]);
    TestApp {
        dir,
        storage_url,
        config_path,
        fake,
        env,
    }
}

/// `[storage]` for `url`; on PostgreSQL with a 1 s lease, so a killed daemon's lease lapses
/// (and `run --once` may follow it) within a second, as tests expect of a SQLite file lock.
fn storage_section(url: &str) -> String {
    let lease = if url.starts_with("postgres") {
        "lease = \"1s\"\n"
    } else {
        ""
    };
    format!("[storage]\nurl = \"{url}\"\n{lease}")
}

/// The current hour's start, Unix seconds.
pub fn this_hour() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(HOUR) * HOUR
}

pub fn row(key: Option<&str>, model: &str, uncached: i64, output: i64) -> FakeRow {
    FakeRow {
        key: key.map(str::to_owned),
        model: model.to_owned(),
        tokens: Tokens {
            uncached,
            cache_read: uncached * 3,
            cache_5m: uncached / 2,
            cache_1h: uncached / 4,
            output,
        },
        ..FakeRow::default()
    }
}

impl TestApp {
    pub fn config(&self) -> Config {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        Config::from_str(&text, &self.config_path, &self.env).expect("test config is valid")
    }

    /// The config's `[storage]` section, as written (tests append settings to it).
    pub fn storage_section(&self) -> String {
        storage_section(&self.storage_url)
    }

    /// The store, opened as the read-only commands open it (never migrating).
    pub async fn store(&self) -> keywatch::store::Store {
        keywatch::store::Store::connect_existing(&self.config().storage)
            .await
            .expect("the test store opens")
    }

    /// The store, opened (and migrated) as `keywatch run` opens it.
    pub async fn open_store(&self) -> keywatch::store::Store {
        keywatch::store::Store::connect(&self.config().storage)
            .await
            .expect("the test store opens")
    }

    /// The SQLite file (SQLite runs only).
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("keywatch.db")
    }

    /// `run --once`, in-process.
    pub async fn run_once(&self) -> CycleReport {
        let app = App::build(std::sync::Arc::new(self.config()))
            .await
            .expect("app builds");
        let report = app.run_once(&CancellationToken::new()).await;
        app.store().close().await;
        report
    }

    /// Runs the real binary with this app's config and environment.
    pub async fn cli(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywatch"));
        cmd.arg("--config").arg(&self.config_path).args(args);
        cmd.env_remove("RUST_LOG").env_remove("KEYWATCH_CONFIG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().await.expect("the keywatch binary runs")
    }

    /// Runs the real binary, expects exit 0, and returns its standard output.
    pub async fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args, &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "keywatch {args:?} failed: {stderr}"
        );
        String::from_utf8(out.stdout).expect("output is UTF-8")
    }

    /// Every stored usage row, ordered.
    pub async fn stored_rows(&self) -> Vec<StoredRow> {
        let store = self.open_store().await;
        type Row = (
            String,
            i64,
            String,
            i64,
            i64,
            i64,
            i64,
            i64,
            Option<f64>,
            i64,
        );
        let rows: Vec<Row> = crate::backend::on_pool!(store, |p| sqlx::query_as(
            "SELECT key_id, bucket_start, model, uncached_input_tokens, cache_read_input_tokens,
                    cache_write_5m_tokens, cache_write_1h_tokens, output_tokens, cost_usd, updated_at
             FROM usage_buckets WHERE bucket_width = 3600 ORDER BY bucket_start, key_id, model",
        )
        .fetch_all(p)
        .await)
        .unwrap();
        store.close().await;
        rows.into_iter()
            .map(|r| StoredRow {
                key_id: r.0,
                bucket_start: r.1,
                model: r.2,
                tokens: Tokens {
                    uncached: r.3,
                    cache_read: r.4,
                    cache_5m: r.5,
                    cache_1h: r.6,
                    output: r.7,
                },
                cost_usd: r.8,
                updated_at: r.9,
            })
            .collect()
    }

    /// What the fake served since the lookback start, in the shape of [`StoredRow`] (without
    /// cost and update time), ordered like `stored_rows`.
    pub fn expected_rows(&self, since: i64) -> Vec<(String, i64, String, Tokens)> {
        let mut rows: Vec<_> = self
            .fake
            .served_since(since)
            .into_iter()
            .map(|(t, r)| {
                (
                    r.key.unwrap_or_else(|| "workbench".to_owned()),
                    t,
                    r.model,
                    r.tokens,
                )
            })
            .collect();
        rows.sort_by(|a, b| (a.1, &a.0, &a.2).cmp(&(b.1, &b.0, &b.2)));
        rows
    }

    pub async fn cursor(&self) -> Option<i64> {
        self.usage_poll_state().await.cursor
    }

    /// The hourly usage stream's poll state (cursor, last error, …).
    pub async fn usage_poll_state(&self) -> keywatch::store::PollState {
        let store = self.store().await;
        let state = store
            .usage_poll_state("anthropic-test", HOUR)
            .await
            .unwrap();
        store.close().await;
        state
    }

    /// Moves every stream's last successful poll `secs` back, as time passing would.
    pub async fn age_poll_state(&self, secs: i64) {
        let store = self.store().await;
        crate::backend::on_pool!(store, |p| sqlx::query(
            "UPDATE poll_state SET last_success_at = last_success_at - $1"
        )
        .bind(secs)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .unwrap();
        store.close().await;
    }
}

pub fn without_cost(rows: &[StoredRow]) -> Vec<(String, i64, String, Tokens)> {
    rows.iter()
        .map(|r| (r.key_id.clone(), r.bucket_start, r.model.clone(), r.tokens))
        .collect()
}

/// A fake's view of a request's query string, in order (repeated keys kept).
pub fn query(req: &wiremock::Request) -> Vec<(String, String)> {
    req.url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `key` in a query.
pub fn first<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A test app with an OpenAI source beside the Anthropic one, and its project `proj_1`.
pub async fn spawn_with_openai() -> (TestApp, crate::fake_openai::FakeOpenAi) {
    let oa = crate::fake_openai::FakeOpenAi::start().await;
    let app = spawn_app_with(&format!(
        "[[sources]]\nname = \"openai-test\"\nprovider = \"openai\"\n\
         admin_key_env = \"TEST_OPENAI_ADMIN_KEY\"\nbase_url = \"{}\"\n",
        oa.server.uri()
    ))
    .await;
    oa.add_project("proj_1", false);
    (app, oa)
}
