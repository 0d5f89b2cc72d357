//! `keywatch migrate-storage` (#21): copies a SQLite database, table by table, into a new
//! PostgreSQL one, then checks every table against the source (`verify`).
//!
//! Column names come from the SQLite table, column types from the PostgreSQL target (its
//! migrations are the SQLite ones in intent): BIGINT ← i64, DOUBLE PRECISION ← f64, TEXT ←
//! String, BOOLEAN ← SQLite's 0/1, each nullable. Tables are copied parents first (foreign
//! keys), each in its stored order (the primary key, or the rowid).

mod copy;
mod plan;
mod verify;

use std::time::{Duration, Instant};

use super::db::Db;
use super::{schema, Schema, Store, StoreError};

pub use verify::TableReport;

/// What a finished migration found.
#[derive(Debug)]
pub struct Migration {
    /// Every table of the source, in the order copied.
    pub tables: Vec<TableReport>,
    /// Rows copied, all tables together.
    pub rows: u64,
    /// From the first read to the commit (or the rollback).
    pub elapsed: Duration,
}

impl Migration {
    /// Whether every table matched (and so the copy was committed).
    pub fn matches(&self) -> bool {
        self.tables.iter().all(|t| t.problems.is_empty())
    }
}

/// Reported after every batch: `done` of the table's `total` rows are copied.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub table: &'a str,
    pub done: u64,
    pub total: u64,
}

/// Why a migration stopped before its checks. Nothing was committed to the target.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migrate-storage copies a SQLite database into a PostgreSQL one")]
    Backends,
    #[error("the source database was upgraded by a newer keywatch (migration {version}, unknown to this version): run migrate-storage with that version or newer")]
    NewerSource { version: i64 },
    #[error("the target database already holds rows ({tables}); migrate-storage never merges into existing data: give --to a new, empty database (CREATE DATABASE …), and stop any keywatch running on it")]
    NotEmpty { tables: String },
    #[error("the target database has no table {table}, which the source has: is it this keywatch's schema? give --to a new, empty database")]
    MissingTable { table: String },
    #[error("the target's table {table} has no column {column}, which the source has: is it this keywatch's schema? give --to a new, empty database")]
    MissingColumn { table: String, column: String },
    #[error("the target's column {table}.{column} has the type {ty}, which migrate-storage does not copy into (bigint, double precision, text, boolean)")]
    UnsupportedType {
        table: String,
        column: String,
        ty: String,
    },
    #[error("the source's foreign keys form a cycle among {tables}: no order satisfies them")]
    Cycle { tables: String },
    #[error("row {row} of {table} in the source: {column} {reason}; correct the row in the SQLite file, then migrate again")]
    Value {
        table: String,
        column: String,
        row: u64,
        reason: String,
    },
    #[error("copying {table}")]
    Table {
        table: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for MigrateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Store {
    /// Copies every table of this SQLite store into `target`, a PostgreSQL store migrated to
    /// this keywatch's schema and holding no rows, then compares each table with the source.
    /// The copy is committed only when every table matches; `progress` hears of every batch.
    pub async fn copy_into(
        &self,
        target: &Store,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<Migration, MigrateError> {
        let (Db::Sqlite(source), Db::Postgres(dest)) = (&self.db, &target.db) else {
            return Err(MigrateError::Backends);
        };
        if let Schema::Newer(version) = schema(&self.db).await? {
            return Err(MigrateError::NewerSource { version });
        }
        let started = Instant::now();
        // One read transaction: every table (and every check) sees one snapshot of the file,
        // even if a CLI command writes to it meanwhile (WAL readers never wait for writers).
        let mut snap = source.begin().await?;
        let tables = plan::tables(&mut snap, dest).await?;
        // The source's sums first, so the target's transaction never idles on a long scan
        // (the server ends a session idle in a transaction after 15 s).
        let mut expected = Vec::with_capacity(tables.len());
        for table in &tables {
            expected.push(verify::source_sums(&mut snap, table).await?);
        }
        // One PostgreSQL transaction for everything, not one per table: a copy that fails or
        // does not match part-way leaves the target as it was (empty), so it can simply be run
        // again; per-table commits would leave a half-filled target that the next run refuses
        // as not empty. Nobody else uses the new database meanwhile, so its locks cost nothing.
        let mut tx = dest.begin().await?;
        plan::refuse_rows(&mut tx).await?;
        let mut rows = 0;
        for (table, sums) in tables.iter().zip(&expected) {
            let context = |source: StoreError| MigrateError::Table {
                table: table.name.clone(),
                source,
            };
            // usage_daily is copied as it stands: the rollup triggers on usage_buckets must
            // not add the buckets to it a second time (a rollup_paused row pauses them).
            let pause = table.name == "usage_buckets";
            let paused = if pause {
                Some(copy::pause_rollup(&mut tx).await.map_err(context)?)
            } else {
                None
            };
            let total = u64::try_from(sums.rows).unwrap_or(0);
            rows += copy::table(&mut snap, &mut tx, table, total, progress).await?;
            if let Some(p) = paused {
                copy::resume_rollup(&mut tx, p).await.map_err(context)?;
            }
            copy::reset_identities(&mut tx, table)
                .await
                .map_err(context)?;
        }
        let mut reports = Vec::with_capacity(tables.len());
        for (table, sums) in tables.iter().zip(&expected) {
            reports.push(verify::compare(&mut tx, table, sums).await?);
        }
        let migration = Migration {
            tables: reports,
            rows,
            elapsed: Duration::ZERO,
        };
        if migration.matches() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        snap.rollback().await?;
        Ok(Migration {
            elapsed: started.elapsed(),
            ..migration
        })
    }
}

/// `name` as a quoted SQL identifier (valid on both backends).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
