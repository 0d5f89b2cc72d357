//! SQLite storage through sqlx: pool setup, embedded migrations, and one file per table group.
//! Writes are batched in transactions and upserts are idempotent.

mod alerts;
mod billing;
mod deliveries;
mod digests;
mod keys;
mod poll_state;
mod report;
mod retention;
mod rollup;
mod samples;
mod usage;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use alerts::{AlertChange, Silence, StateChange};
pub use billing::CostDay;
pub use deliveries::{Delivery, OutboxCounts, Route};
pub use digests::DigestSend;
pub use keys::StoredKey;
pub use poll_state::PollState;
pub use report::{PeriodUsage, ReconcileDay};
pub use retention::Pruned;
pub use rollup::{local_midnight_day, zone_offsets, DaySpend};
pub use samples::KeySeries;
pub use usage::{HistoryRow, UnpricedModel, UsageRecord};

/// A storage failure; callers branch on whether the database could be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source} (check storage.url and that the folder exists and is writable)")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("no database at {0}: run `keywatch run --once` first, or check storage.url")]
    Missing(PathBuf),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let pool = Self::pool(path, true).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens an existing database for reading (the CLI's read commands): never creates a file.
    pub async fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let pool = Self::pool(path, false).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    async fn pool(path: &Path, create: bool) -> Result<SqlitePool, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Small: SQLite serialises writers anyway, and the machines have 2 cores.
        SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_err)
    }

    pub fn pool_ref(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish (the last step of shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The five token classes from consecutive columns starting at `first`, in the order every
/// usage query selects them: uncached input, cache read, 5-minute write, 1-hour write, output.
fn token_columns(r: &sqlx::sqlite::SqliteRow, first: usize) -> crate::prices::TokenCounts {
    use sqlx::Row;
    crate::prices::TokenCounts {
        uncached_input: r.get(first),
        cache_read: r.get(first + 1),
        cache_write_5m: r.get(first + 2),
        cache_write_1h: r.get(first + 3),
        output: r.get(first + 4),
    }
}
