//! Opening a store from the checked `[storage]` section: a SQLite file, or a PostgreSQL
//! database several replicas share (#21).

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::db::Db;
use super::{migrator, readable_schema, schema, watch, Backend, Schema, Store, StoreError};
use crate::config::{PostgresStorage, Storage};

/// How long a transaction may sit idle before the server ends its session: a stuck replica
/// (SIGSTOP, a hung disk) must not hold row locks a takeover waits on for longer than this.
/// `storage.lease` when set (a stuck leader is then replaced within `lease + lease/3`), else
/// 15 s (the default lease is 5 s to 30 s: replaced within 40 s, two poll intervals or less).
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(15);

impl Store {
    /// Opens the configured storage for `keywatch run`: creates a SQLite file if needed, and
    /// runs pending migrations on either backend (PostgreSQL's migrator holds an advisory lock,
    /// so replicas starting together migrate once).
    pub async fn connect(storage: &Storage) -> Result<Self, StoreError> {
        match storage {
            Storage::Sqlite { path, max_bytes } => Self::open_limited(path, *max_bytes).await,
            Storage::Postgres(pg) => {
                let pool = pg_pool(pg, 8).await?;
                let db = Db::Postgres(pool.clone());
                check_is_ours(&pool, &pg.url).await?;
                if let Schema::Newer(version) = schema(&db).await? {
                    return Err(StoreError::Newer { version });
                }
                migrator(Backend::Postgres).run(&pool).await?;
                Ok(Self::on(db))
            }
        }
    }

    /// As [`Store::open_existing`] for the configured storage: never creates nor migrates.
    pub async fn connect_existing(storage: &Storage) -> Result<Self, StoreError> {
        match storage {
            Storage::Sqlite { path, .. } => Self::open_existing(path).await,
            Storage::Postgres(pg) => {
                let pool = pg_pool(pg, 4).await?;
                let db = Db::Postgres(pool.clone());
                check_is_ours(&pool, &pg.url).await?;
                let empty: bool =
                    sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NULL")
                        .fetch_one(&pool)
                        .await?;
                if empty {
                    // keywatch never ran here: as a SQLite file that does not exist yet.
                    db.close().await;
                    return Err(StoreError::Missing(pg.url.clone()));
                }
                readable_schema(&db, &pg.url).await?;
                Ok(Self::on(db))
            }
        }
    }

    pub(super) fn on(db: Db) -> Self {
        Self {
            db,
            watchers: watch::Watchers::default(),
            days: None,
            fence: None,
        }
    }

    /// The PostgreSQL pool, for the leader lease and the tests.
    #[doc(hidden)]
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Postgres(p) => Some(p),
            Db::Sqlite(_) => None,
        }
    }
}

/// A pool of at most `max` connections to the configured database.
pub async fn pg_pool(pg: &PostgresStorage, max: u32) -> Result<PgPool, StoreError> {
    let open_err = |source| StoreError::OpenPostgres {
        url: pg.url.clone(),
        source,
    };
    let idle = pg
        .lease
        .map_or(IDLE_IN_TRANSACTION, |l| l.max(Duration::from_secs(1)))
        .as_millis()
        .to_string();
    let options = pg
        .connect_options()
        .map_err(open_err)?
        .options([("idle_in_transaction_session_timeout", idle.as_str())]);
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(open_err)
}

/// Refuses a database that holds another application's tables (and no keywatch migrations):
/// keywatch never writes into it.
async fn check_is_ours(pool: &PgPool, url: &str) -> Result<(), StoreError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    super::sqlite_file::ours_or_foreign(url, &tables)
}
