//! The database the suite runs on: by default a SQLite file in each test's temp dir; with
//! `KEYWATCH_TEST_BACKEND=postgres`, a throw-away PostgreSQL database per test on the server
//! `KEYWATCH_TEST_POSTGRES` names (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`). `.ci/run` runs the suite once on each and
//! drops the `kwt_*` databases afterwards.

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use keywatch::store::Store;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

pub const BACKEND_ENV: &str = "KEYWATCH_TEST_BACKEND";
pub const POSTGRES_ENV: &str = "KEYWATCH_TEST_POSTGRES";

/// The admin URL, when this run is on PostgreSQL.
pub fn postgres_admin() -> Option<String> {
    if std::env::var(BACKEND_ENV).as_deref() != Ok("postgres") {
        return None;
    }
    match std::env::var(POSTGRES_ENV) {
        Ok(url) => Some(url),
        Err(_) => panic!("{BACKEND_ENV}=postgres needs {POSTGRES_ENV} (an admin URL)"),
    }
}

pub fn is_postgres() -> bool {
    postgres_admin().is_some()
}

/// Says loudly, past the harness's capture, that a test does not run on this backend.
pub fn skip(test: &str, why: &str) {
    let backend = if is_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let _ = writeln!(
        std::io::stderr(),
        "*** SKIPPED on {backend}: {test}: {why} ***"
    );
}

/// Returns from the test when the suite runs on PostgreSQL: what it checks is SQLite's own
/// (the file, its lock, its size cap, its corruption).
macro_rules! sqlite_only {
    ($why:expr) => {
        if $crate::backend::is_postgres() {
            $crate::backend::skip(module_path!(), $why);
            return;
        }
    };
}
pub(crate) use sqlite_only;

/// A `storage.url` for a fresh database named after `name`: `sqlite://NAME.db` (relative to
/// the config's folder), or a new PostgreSQL database.
pub async fn storage_url(name: &str) -> String {
    let Some(admin) = postgres_admin() else {
        return format!("sqlite://{name}.db");
    };
    let options = PgConnectOptions::from_str(&admin).expect("KEYWATCH_TEST_POSTGRES is a URL");
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("randomness");
    let db: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let db = format!("kwt_{db}");
    let mut conn = options
        .connect()
        .await
        .expect("connect to KEYWATCH_TEST_POSTGRES");
    sqlx::raw_sql(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let _ = conn.close().await;
    let mut url = reqwest::Url::parse(&admin).expect("KEYWATCH_TEST_POSTGRES is a URL");
    url.set_path(&db);
    url.to_string()
}

/// A fresh, migrated store named `name` (a file in `dir`, or a new PostgreSQL database).
pub async fn open_store(dir: &Path, name: &str) -> Store {
    let url = storage_url(name).await;
    let storage = if let Some(file) = url.strip_prefix("sqlite://") {
        keywatch::config::Storage::Sqlite {
            path: dir.join(file),
            max_bytes: None,
        }
    } else {
        keywatch::config::Storage::Postgres(keywatch::config::PostgresStorage {
            url,
            password: None,
            instance: None,
            lease: None,
        })
    };
    Store::connect(&storage)
        .await
        .expect("the test store opens")
}

/// Runs `$body` with `$p` bound to the store's pool, whichever the backend (raw SQL in tests;
/// write `$1`-style placeholders, which both drivers take).
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match $store.pg_pool() {
            Some($p) => $body,
            None => {
                let $p = $store.pool_ref();
                $body
            }
        }
    };
}
pub(crate) use on_pool;
