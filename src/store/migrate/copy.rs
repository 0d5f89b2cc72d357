//! Moving one table's rows: read from the SQLite snapshot in stored order, written to
//! PostgreSQL in multi-row INSERTs of [`BATCH_ROWS`] rows.

use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{PgConnection, Row, SqliteConnection};

use super::plan::{Kind, Table};
use super::{quote, MigrateError, Progress};
use crate::store::StoreError;

/// Rows per INSERT: large enough that a round trip is cheap per row, small enough to stay far
/// below PostgreSQL's 65,535 bound values (16 columns at most: 32,000).
const BATCH_ROWS: usize = 2_000;
const MAX_BOUND: usize = 65_535;

/// One value on its way, typed by the target column.
#[derive(Debug)]
enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

/// Copies `table`; the number of rows copied.
pub(super) async fn table(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &Table,
    total: u64,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<u64, MigrateError> {
    let width = table.columns.len().max(1);
    let batch = BATCH_ROWS.min(MAX_BOUND / width);
    let names: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let select = format!("SELECT {} FROM {}", names.join(", "), quote(&table.name));
    let full_insert = insert_sql(table, batch);
    let context = |source: StoreError| MigrateError::Table {
        table: table.name.clone(),
        source,
    };
    let mut rows = sqlx::query(&select).fetch(&mut *source);
    let mut values = Vec::with_capacity(batch * width);
    let (mut pending, mut done) = (0usize, 0u64);
    while let Some(row) = rows.try_next().await.map_err(|e| context(e.into()))? {
        for (i, column) in table.columns.iter().enumerate() {
            let value = cell(&row, i, column.kind).map_err(|reason| MigrateError::Value {
                table: table.name.clone(),
                column: column.name.clone(),
                row: done + pending as u64 + 1,
                reason,
            })?;
            values.push(value);
        }
        pending += 1;
        if pending == batch {
            insert(target, &full_insert, std::mem::take(&mut values))
                .await
                .map_err(context)?;
            done += pending as u64;
            pending = 0;
            progress(Progress {
                table: &table.name,
                done,
                total,
            });
        }
    }
    if pending > 0 {
        insert(target, &insert_sql(table, pending), values)
            .await
            .map_err(context)?;
        done += pending as u64;
        progress(Progress {
            table: &table.name,
            done,
            total,
        });
    }
    Ok(done)
}

/// `INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), …` for `rows` rows.
fn insert_sql(table: &Table, rows: usize) -> String {
    let names: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let width = names.len();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quote(&table.name),
        names.join(", ")
    );
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(r * width + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

async fn insert(
    target: &mut PgConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<(), StoreError> {
    let mut query = sqlx::query(sql);
    for value in values {
        query = match value {
            Value::Int(v) => query.bind(v),
            Value::Real(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
        };
    }
    query.execute(&mut *target).await?;
    Ok(())
}

/// Column `i` of a source row as the target's `kind`; why not, when it cannot be.
fn cell(row: &SqliteRow, i: usize, kind: Kind) -> Result<Value, String> {
    let read = |e: sqlx::Error| format!("cannot be read as {} ({e})", kind.describe());
    Ok(match kind {
        Kind::Int => Value::Int(row.try_get(i).map_err(read)?),
        Kind::Real => Value::Real(row.try_get(i).map_err(read)?),
        Kind::Text => Value::Text(row.try_get(i).map_err(read)?),
        Kind::Bool => Value::Bool(match row.try_get::<Option<i64>, _>(i).map_err(read)? {
            None => None,
            Some(0) => Some(false),
            Some(1) => Some(true),
            Some(v) => return Err(format!("is {v}, not {}", kind.describe())),
        }),
    })
}

/// Pauses the rollup triggers on usage_buckets within `target`'s transaction: a row of its own
/// in rollup_paused (after any the source had); the value to remove again.
pub(super) async fn pause_rollup(target: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO rollup_paused (paused)
         SELECT COALESCE(MAX(paused), 0) + 1 FROM rollup_paused RETURNING paused",
    )
    .fetch_one(&mut *target)
    .await?)
}

pub(super) async fn resume_rollup(
    target: &mut PgConnection,
    paused: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM rollup_paused WHERE paused = $1")
        .bind(paused)
        .execute(&mut *target)
        .await?;
    Ok(())
}

/// Sets each identity's sequence past the highest id copied (and past the source's
/// AUTOINCREMENT high-water mark), so new rows get fresh ids.
pub(super) async fn reset_identities(
    target: &mut PgConnection,
    table: &Table,
) -> Result<(), StoreError> {
    for (column, high_water) in &table.identities {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), GREATEST(COALESCE(MAX({}), 0), $3) + 1, false) FROM {}",
            quote(column),
            quote(&table.name)
        );
        let _: i64 = sqlx::query_scalar(&sql)
            .bind(quote(&table.name))
            .bind(column)
            .bind(high_water)
            .fetch_one(&mut *target)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::plan::Column;
    use super::*;

    #[test]
    fn placeholders_run_across_rows() {
        let table = Table {
            name: "key_actions".to_owned(),
            columns: vec![
                Column {
                    name: "id".to_owned(),
                    kind: Kind::Int,
                },
                Column {
                    name: "by".to_owned(),
                    kind: Kind::Text,
                },
            ],
            identities: Vec::new(),
        };
        assert_eq!(
            insert_sql(&table, 2),
            "INSERT INTO \"key_actions\" (\"id\", \"by\") VALUES ($1, $2), ($3, $4)"
        );
    }
}
