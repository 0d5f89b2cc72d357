//! SQLite storage through sqlx: pool setup, embedded migrations, and one file per table group.
//! Writes are batched in transactions and upserts are idempotent.

mod actions;
mod alerts;
mod batch_rollup;
mod billing;
mod day_cache;
mod day_sums;
mod db;
mod decode;
mod deliveries;
mod dialect;
mod digests;
mod key_reads;
mod keys;
mod late;
mod migrate;
mod packed;
mod points;
mod poll_state;
mod postgres;
mod prune;
mod reopen;
mod rollup;
mod samples;
mod secrets;
mod silences;
mod spend;
mod splits;
mod sqlite_file;
mod staging;
mod timeline;
mod tokens;
mod unpriced;
mod usage;
mod watch;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use db::{on, Db};

pub use actions::{KeyAction, NewAction};
pub use alerts::{AlertChange, Silence, StateChange};
pub use billing::{CostDay, Spend};
pub use db::Backend;
pub use deliveries::{Delivery, DeliveryState, OutboxCounts, Route, SUPERSEDED};
pub use digests::DigestSend;
pub use key_reads::{KeyBucket, UsageCursor, UsagePage};
pub use keys::StoredKey;
pub use late::{changed_days, DayUsage};
pub use migrate::{MigrateError, Migration, Progress, TableReport};
pub use points::Points;
pub use poll_state::{usage_stream, PollState, COSTS_STREAM, KEYS_STREAM};
pub use postgres::pg_pool;
pub use prune::Pruned;
pub use rollup::{local_midnight_day, zone_offsets, DaySpend, TopSpend};
pub use samples::KeySeries;
pub use spend::{PeriodUsage, ReconcileDay};
pub use splits::SplitRecord;
pub use sqlite_file::InstanceLock;
pub use staging::{Moved, Staging};
pub use timeline::TimelineEntry;
pub use unpriced::UnpricedUsage;
pub use usage::{HistoryRow, UnpricedModel, UsageRecord};
pub use watch::{Changed, UsageWatch};

/// A storage failure; callers branch on whether the database could be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source} (check storage.url and that the folder exists and is writable)")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to the PostgreSQL database {url}: {source} (check storage.url, storage.password_env/_file, that the server is up and that its certificate is trusted)")]
    OpenPostgres {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("no database at {0}: run `keywatch run --once` first, or check storage.url")]
    Missing(String),
    /// The file at `storage.url` is not keywatch's: keywatch never writes to it.
    #[error("{path} {reason}; keywatch leaves it untouched: point storage.url at another file, or move this one away (restore a backup if it was keywatch's)")]
    Foreign { path: String, reason: String },
    /// Another `keywatch run` holds the database.
    #[error("another keywatch process is running on {path} (it holds {lock}); stop it first, or give this one its own storage.url")]
    Locked { path: PathBuf, lock: PathBuf },
    /// `open_existing` on a database a newer keywatch would migrate first.
    #[error("the database {path} is older than this keywatch (migration {version} is not applied); commands other than `run` never upgrade it: restart the daemon or run `keywatch run --once` with this version first")]
    Behind { path: String, version: i64 },
    /// The database was migrated by a newer keywatch: an older one must not run on it.
    #[error("the database was upgraded by a newer keywatch (migration {version}, unknown to this version): run that version or newer, or restore a backup taken before the upgrade")]
    Newer { version: i64 },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// SQLITE_FULL: the disk, or `storage.max_size_mb`, is full. Nothing was written.
    #[error("the database is full (the disk is full or storage.max_size_mb is reached): nothing of this write was stored and it is retried; free disk space, raise storage.max_size_mb or shorten [storage.retention]")]
    Full,
    /// SQLITE_BUSY after the busy timeout: another process held the write lock too long.
    #[error("the database stayed locked by another process for longer than {}s: nothing of this write was stored and it is retried; check what else opens the database", BUSY_TIMEOUT.as_secs())]
    Busy,
    /// A stored value this keywatch does not know: never re-read as something else.
    #[error("{row} has {column} {value:?} in the database, which this keywatch does not know (written by a newer version, or edited by hand): upgrade keywatch, or correct the row")]
    UnknownValue {
        row: String,
        column: &'static str,
        value: String,
    },
    /// A fenced write found that this replica no longer leads: nothing was written.
    #[error("this replica ({instance}) no longer holds the leader lease (epoch {epoch}): nothing of this write was stored; the new leader carries on")]
    NotLeader { instance: String, epoch: i64 },
    #[error("database error: {0}")]
    Sqlx(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let Some(db) = e.as_database_error() else {
            return Self::Sqlx(e);
        };
        if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            // SQLSTATEs: disk full; serialization failure, deadlock, lock not available.
            return match pg.code() {
                "53100" => Self::Full,
                "40001" | "40P01" | "55P03" => Self::Busy,
                _ => Self::Sqlx(e),
            };
        }
        // SQLite's primary result codes, also when extended (the low byte): 5 busy, 13 full.
        match db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff)
        {
            Some(13) => Self::Full,
            Some(5) => Self::Busy,
            _ => Self::Sqlx(e),
        }
    }
}

/// How long a statement waits for another process's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
/// PostgreSQL's migrations: the same schema in intent (see the baseline's header).
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

fn migrator(backend: Backend) -> &'static sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => &MIGRATOR,
        Backend::Postgres => &PG_MIGRATOR,
    }
}

/// The database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    watchers: watch::Watchers,
    /// Spend per key and local day kept in memory ([`Store::with_day_cache`]).
    days: Option<std::sync::Arc<day_cache::DaySpendCache>>,
    /// Set on the leader's store (PostgreSQL): every write transaction first checks that this
    /// replica still holds the lease with this epoch ([`crate::lease::fence`]).
    fence: Option<std::sync::Arc<Fence>>,
}

/// The lease a leader's writes are fenced with.
#[derive(Debug)]
struct Fence {
    instance: String,
    epoch: i64,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_limited(path, None).await
    }

    /// As [`Store::open`], with the file capped at `max_bytes` (SQLite's `max_page_count`):
    /// writes beyond it fail with [`StoreError::Full`] and change nothing.
    pub async fn open_limited(path: &Path, max_bytes: Option<u64>) -> Result<Self, StoreError> {
        sqlite_file::check_is_ours(path).await?;
        let pool = Self::pool(path, true, max_bytes).await?;
        let db = Db::Sqlite(pool.clone());
        if let Schema::Newer(version) = schema(&db).await? {
            return Err(StoreError::Newer { version });
        }
        MIGRATOR.run(&pool).await?;
        Ok(Self::on(db))
    }

    /// Opens an existing database for the CLI's commands other than `run`: never creates a file
    /// and never migrates (a newer CLI upgrading the schema under an older daemon would stop that
    /// daemon from starting again). A database behind this keywatch is refused with what to do.
    pub async fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        sqlite_file::check_is_ours(path).await?;
        let db = Db::Sqlite(Self::pool(path, false, None).await?);
        readable_schema(&db, &path.display().to_string()).await?;
        Ok(Self::on(db))
    }

    async fn pool(
        path: &Path,
        create: bool,
        max_bytes: Option<u64>,
    ) -> Result<SqlitePool, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(bytes) = max_bytes {
            // The default page size; max_page_count never shrinks a file already larger.
            options = options.pragma("max_page_count", (bytes / 4_096).max(16).to_string());
        }
        // Small: SQLite serialises writers anyway, and the machines have 2 cores.
        SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_err)
    }

    /// This store with every write transaction fenced by the lease `(instance, epoch)`: once
    /// another replica has taken the lease, writes fail with [`StoreError::NotLeader`] and the
    /// takeover waits for a fenced write in flight to commit. No effect on SQLite.
    pub fn fenced(&self, instance: &str, epoch: i64) -> Store {
        let mut store = self.clone();
        store.fence = Some(std::sync::Arc::new(Fence {
            instance: instance.to_owned(),
            epoch,
        }));
        store
    }

    /// The lease epoch this store's writes are fenced with, if any.
    pub(crate) fn fence_epoch(&self) -> Option<i64> {
        self.fence.as_ref().map(|f| f.epoch)
    }

    /// Begins a write transaction, fenced when this is a leader's store.
    pub(crate) async fn begin(&self) -> Result<db::Tx, StoreError> {
        let mut tx = self.db.begin().await?;
        if let (Some(f), db::Tx::Postgres(t)) = (&self.fence, &mut tx) {
            if !crate::lease::fence(t, &f.instance, f.epoch).await? {
                let _ = tx.rollback().await;
                return Err(StoreError::NotLeader {
                    instance: f.instance.clone(),
                    epoch: f.epoch,
                });
            }
        }
        Ok(tx)
    }

    /// Which database engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// The SQLite pool, for tests that inspect the file directly.
    #[doc(hidden)]
    pub fn pool_ref(&self) -> &SqlitePool {
        match &self.db {
            Db::Sqlite(p) => p,
            Db::Postgres(_) => unreachable!("pool_ref is only used by tests on SQLite"),
        }
    }

    /// Closes the pool, waiting for connections to finish (the last step of shutdown).
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// Where a database's schema stands against this keywatch's migrations.
enum Schema {
    Current,
    /// A migration this keywatch has is not applied (the newest missing version).
    Behind(i64),
    /// A migration is applied that this keywatch does not have (the newest such version).
    Newer(i64),
}

/// For the read-only commands: a newer schema is read as this version knows it (with a
/// warning); one behind this keywatch is refused (and `db` closed), naming `at`.
async fn readable_schema(db: &Db, at: &str) -> Result<(), StoreError> {
    match schema(db).await? {
        Schema::Current => Ok(()),
        Schema::Newer(version) => {
            tracing::warn!(
                version,
                "the database was upgraded by a newer keywatch; reading it as this version knows it"
            );
            Ok(())
        }
        Schema::Behind(version) => {
            db.close().await;
            Err(StoreError::Behind {
                path: at.to_owned(),
                version,
            })
        }
    }
}

async fn schema(db: &Db) -> Result<Schema, StoreError> {
    let has_table: bool = match db {
        Db::Sqlite(p) => {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master
                                WHERE type = 'table' AND name = '_sqlx_migrations')",
            )
            .fetch_one(p)
            .await?
        }
        Db::Postgres(p) => {
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(p)
                .await?
        }
    };
    let applied: Vec<i64> = if has_table {
        on!(db, |e| sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE"
        )
        .fetch_all(e)
        .await)?
    } else {
        Vec::new()
    };
    let ours: Vec<i64> = migrator(db.backend())
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    if let Some(newer) = applied.iter().filter(|v| !ours.contains(v)).max() {
        return Ok(Schema::Newer(*newer));
    }
    Ok(match ours.iter().filter(|v| !applied.contains(v)).max() {
        Some(missing) => Schema::Behind(*missing),
        None => Schema::Current,
    })
}
