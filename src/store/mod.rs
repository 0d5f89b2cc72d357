//! SQLite storage through sqlx: pool setup, embedded migrations, and one file per table group.
//! Writes are batched in transactions and upserts are idempotent.

mod actions;
mod alerts;
mod batch_rollup;
mod billing;
mod day_cache;
mod day_sums;
mod decode;
mod deliveries;
mod digests;
mod key_reads;
mod keys;
mod late;
mod packed;
mod points;
mod poll_state;
mod prune;
mod reopen;
mod rollup;
mod samples;
mod secrets;
mod silences;
mod spend;
mod splits;
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

pub use actions::{KeyAction, NewAction};
pub use alerts::{AlertChange, Silence, StateChange};
pub use billing::{CostDay, Spend};
pub use deliveries::{Delivery, DeliveryState, OutboxCounts, Route, SUPERSEDED};
pub use digests::DigestSend;
pub use key_reads::{KeyBucket, UsageCursor, UsagePage};
pub use keys::StoredKey;
pub use late::{changed_days, DayUsage};
pub use points::Points;
pub use poll_state::{usage_stream, PollState, COSTS_STREAM, KEYS_STREAM};
pub use prune::Pruned;
pub use rollup::{local_midnight_day, zone_offsets, DaySpend, TopSpend};
pub use samples::KeySeries;
pub use spend::{PeriodUsage, ReconcileDay};
pub use splits::SplitRecord;
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
    #[error("no database at {0}: run `keywatch run --once` first, or check storage.url")]
    Missing(PathBuf),
    /// The file at `storage.url` is not keywatch's: keywatch never writes to it.
    #[error("{path} {reason}; keywatch leaves it untouched: point storage.url at another file, or move this one away (restore a backup if it was keywatch's)")]
    Foreign { path: PathBuf, reason: String },
    /// Another `keywatch run` holds the database.
    #[error("another keywatch process is running on {path} (it holds {lock}); stop it first, or give this one its own storage.url")]
    Locked { path: PathBuf, lock: PathBuf },
    /// `open_existing` on a database a newer keywatch would migrate first.
    #[error("the database {path} is older than this keywatch (migration {version} is not applied); commands other than `run` never upgrade it: restart the daemon or run `keywatch run --once` with this version first")]
    Behind { path: PathBuf, version: i64 },
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
    #[error("database error: {0}")]
    Sqlx(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // Primary result codes, also when extended (the low byte): 5 busy, 13 full.
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .and_then(|c| c.parse::<i64>().ok());
        match code.map(|c| c & 0xff) {
            Some(13) => Self::Full,
            Some(5) => Self::Busy,
            _ => Self::Sqlx(e),
        }
    }
}

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    watchers: watch::Watchers,
    /// Spend per key and local day kept in memory ([`Store::with_day_cache`]).
    days: Option<std::sync::Arc<day_cache::DaySpendCache>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_limited(path, None).await
    }

    /// As [`Store::open`], with the file capped at `max_bytes` (SQLite's `max_page_count`):
    /// writes beyond it fail with [`StoreError::Full`] and change nothing.
    pub async fn open_limited(path: &Path, max_bytes: Option<u64>) -> Result<Self, StoreError> {
        check_is_ours(path).await?;
        let pool = Self::pool(path, true, max_bytes).await?;
        if let Schema::Newer(version) = schema(&pool).await? {
            return Err(StoreError::Newer { version });
        }
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            watchers: watch::Watchers::default(),
            days: None,
        })
    }

    /// Opens an existing database for the CLI's commands other than `run`: never creates a file
    /// and never migrates (a newer CLI upgrading the schema under an older daemon would stop that
    /// daemon from starting again). A database behind this keywatch is refused with what to do.
    pub async fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        check_is_ours(path).await?;
        let pool = Self::pool(path, false, None).await?;
        match schema(&pool).await? {
            Schema::Current => {}
            Schema::Newer(version) => tracing::warn!(
                version,
                "the database was upgraded by a newer keywatch; reading it as this version knows it"
            ),
            Schema::Behind(version) => {
                pool.close().await;
                return Err(StoreError::Behind {
                    path: path.to_path_buf(),
                    version,
                });
            }
        }
        Ok(Self {
            pool,
            watchers: watch::Watchers::default(),
            days: None,
        })
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

    pub fn pool_ref(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish (the last step of shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
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

async fn schema(pool: &SqlitePool) -> Result<Schema, StoreError> {
    let has_table: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await?;
    let applied: Vec<i64> = if has_table {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    let ours: Vec<i64> = MIGRATOR
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

/// The path a database is locked under: symlinks and relative parts resolved, so two names for
/// one file take one lock. A file not created yet resolves through its folder.
fn canonical(database: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(database) {
        return path;
    }
    match (database.parent(), database.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| database.to_path_buf())
        }
        _ => database.to_path_buf(),
    }
}

/// Held by the process that polls and delivers for a database (`keywatch run`): a second one
/// would send every notification twice. An advisory lock on `<database>.lock` next to the real
/// file (through any symlink), released by the kernel when the process ends, however it ends.
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
}

impl InstanceLock {
    pub fn acquire(database: &Path) -> Result<Self, StoreError> {
        let mut name = canonical(database).into_os_string();
        name.push(".lock");
        let lock = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| StoreError::Foreign {
                path: lock.clone(),
                reason: format!("cannot be created or opened ({e})"),
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: database.to_path_buf(),
                lock,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Foreign {
                path: lock,
                reason: format!("cannot be locked ({e})"),
            }),
        }
    }
}

/// Refuses a file that is not keywatch's before anything writes to it: not an SQLite database
/// at all, unreadable as one, or another application's (tables but no keywatch migrations).
/// The check reads through its own read-only connection, so even the switch to WAL waits.
async fn check_is_ours(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let foreign = |reason: String| StoreError::Foreign {
        path: path.to_path_buf(),
        reason,
    };
    let mut head = [0u8; 16];
    let n = match std::fs::File::open(path) {
        Ok(mut f) => f.read(&mut head).unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(foreign(format!("cannot be read ({e})"))),
    };
    if n == 0 {
        return Ok(());
    }
    if &head[..n] == b"SQLite format 3\0" {
        return check_tables(path).await;
    }
    let shown: String = String::from_utf8_lossy(&head[..n])
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '.'
            }
        })
        .collect();
    Err(foreign(format!(
        "is not an SQLite database (it starts with {shown:?})"
    )))
}

async fn check_tables(path: &Path) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions, Connection};
    let unreadable = |e: sqlx::Error| StoreError::Foreign {
        path: path.to_path_buf(),
        reason: format!("cannot be read as a database ({e})"),
    };
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await
        .map_err(unreadable)?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(unreadable)?;
    let _ = conn.close().await;
    if tables.is_empty() || tables.iter().any(|t| t == "_sqlx_migrations") {
        return Ok(());
    }
    let mut listed = tables
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if tables.len() > 5 {
        listed.push_str(", …");
    }
    Err(StoreError::Foreign {
        path: path.to_path_buf(),
        reason: format!("is another application's database (tables: {listed})"),
    })
}
