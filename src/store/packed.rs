//! Many small rows read as one. sqlx's SQLite driver hands each row from its worker thread to
//! the caller on its own, which costs more than SQLite's work on reads that return a row per
//! key: at 10,000 keys the inventory took 175 ms to arrive (SQLite's part: 15 ms). Such reads
//! ask SQLite for one JSON array of rows instead (`json_group_array`), decoded here with serde.
//! SQLite's JSON keeps 15 digits of a REAL; money travels as `printf('%!.17g')` text ([`real`]:
//! the `!` lifts SQLite's 16-digit limit), which reads back as the same `f64`.

use serde::{Deserialize, Deserializer};

use super::{Backend, StoreError};

/// `query`'s rows as one JSON array of arrays of `columns` (expressions over `query`'s
/// columns, in the order of the tuple they are read into), in no particular order.
pub(super) fn packed(backend: Backend, columns: &str, query: &str) -> String {
    match backend {
        Backend::Sqlite => {
            format!("SELECT json_group_array(json_array({columns})) FROM ({query}) AS packed_rows")
        }
        Backend::Postgres => format!(
            "SELECT CAST(COALESCE(json_agg(json_build_array({columns})), '[]') AS TEXT)
             FROM ({query}) AS packed_rows"
        ),
    }
}

/// [`packed`], the rows in `order` (SQLite does not promise to keep a subquery's ORDER BY
/// through an aggregate; the aggregate's own ORDER BY is kept).
pub(super) fn packed_in_order(backend: Backend, columns: &str, query: &str, order: &str) -> String {
    match backend {
        Backend::Sqlite => format!(
            "SELECT json_group_array(json_array({columns}) ORDER BY {order}) FROM ({query}) AS packed_rows"
        ),
        Backend::Postgres => format!(
            "SELECT CAST(COALESCE(json_agg(json_build_array({columns}) ORDER BY {order}), '[]') AS TEXT)
             FROM ({query}) AS packed_rows"
        ),
    }
}

/// A REAL column as text that reads back exactly (see [`Real`]). Only for values that are
/// never NULL: SQLite prints a NULL as 0.
pub(super) fn real(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Sqlite => format!("printf('%!.17g', {column})"),
        // PostgreSQL 12+ prints a float8 in the shortest text that reads back exactly.
        Backend::Postgres => format!("CAST({column} AS TEXT)"),
    }
}

/// The rows of a [`packed`] read (their strings may borrow from `text`).
pub(super) fn unpack<'a, T: Deserialize<'a>>(text: &'a str) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Sqlx(sqlx::Error::Decode(Box::new(e))))
}

/// An `f64` sent as [`real`] text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Real(pub f64);

impl<'de> Deserialize<'de> for Real {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.trim()
            .parse()
            .map(Real)
            .map_err(|_| serde::de::Error::custom(format!("not a number: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_read_back_exactly_whatever_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (a TEXT, b REAL, c INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let rows = [
            ("plain", 0.1 + 0.2, Some(1_i64)),
            (
                "quote \" and \\ and \u{e9} and [,]",
                11.520_000_000_000_01,
                None,
            ),
            ("", 1e300, Some(i64::MAX)),
            ("tiny", -5e-324, Some(i64::MIN)),
        ];
        for (a, b, c) in rows {
            sqlx::query("INSERT INTO t VALUES ($1, $2, $3)")
                .bind(a)
                .bind(b)
                .bind(c)
                .execute(&pool)
                .await
                .unwrap();
        }
        let sql = packed(
            Backend::Sqlite,
            &format!("a, {}, c", real(Backend::Sqlite, "b")),
            "SELECT * FROM t ORDER BY rowid",
        );
        let text: String = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
        let back: Vec<(String, Real, Option<i64>)> = unpack(&text).unwrap();
        let back: Vec<(&str, f64, Option<i64>)> =
            back.iter().map(|(a, b, c)| (a.as_str(), b.0, *c)).collect();
        assert_eq!(back, rows);
        let sql = packed_in_order(Backend::Sqlite, "c", "SELECT * FROM t", "a DESC");
        let text: String = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
        let order: Vec<(Option<i64>,)> = unpack(&text).unwrap();
        assert_eq!(
            order,
            [(Some(i64::MIN),), (None,), (Some(1),), (Some(i64::MAX),)]
        );
        // No rows: an empty array, not NULL.
        let sql = packed(Backend::Sqlite, "a", "SELECT * FROM t WHERE 0");
        let text: String = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
        assert!(unpack::<(String,)>(&text).unwrap().is_empty());
    }
}
