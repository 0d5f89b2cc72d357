//! What is copied: the source's tables with their columns, typed by the target, in an order
//! that satisfies the foreign keys; and the check that the target holds no rows yet.

use std::collections::BTreeMap;

use sqlx::{PgConnection, PgPool, SqliteConnection};

use super::{quote, MigrateError};

/// How a column is carried across: the target column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Int,
    Real,
    Text,
    /// PostgreSQL BOOLEAN, SQLite INTEGER 0/1.
    Bool,
}

impl Kind {
    /// What a source value must be to become this.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Int => "an integer (BIGINT)",
            Self::Real => "a number (DOUBLE PRECISION)",
            Self::Text => "text (TEXT)",
            Self::Bool => "0 or 1 (BOOLEAN)",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Column {
    pub name: String,
    pub kind: Kind,
}

/// One table to copy.
#[derive(Debug, Clone)]
pub(super) struct Table {
    pub name: String,
    /// The source's columns, in its order.
    pub columns: Vec<Column>,
    /// The target's identity columns, each with the source's AUTOINCREMENT high-water mark
    /// (`sqlite_sequence`, 0 without): ids never handed out again.
    pub identities: Vec<(String, i64)>,
}

/// Every table of the source but sqlx's bookkeeping, parents before the tables that refer to
/// them, typed by the target's columns.
pub(super) async fn tables(
    source: &mut SqliteConnection,
    target: &PgPool,
) -> Result<Vec<Table>, MigrateError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
           AND name <> '_sqlx_migrations'
         ORDER BY name",
    )
    .fetch_all(&mut *source)
    .await?;
    let has_sequence: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')",
    )
    .fetch_one(&mut *source)
    .await?;
    let mut parents = BTreeMap::new();
    let mut tables = BTreeMap::new();
    for name in names {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(&name)
                .fetch_all(&mut *source)
                .await?;
        let refs: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(&name)
                .fetch_all(&mut *source)
                .await?;
        let high_water: i64 = if has_sequence {
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = $1")
                .bind(&name)
                .fetch_one(&mut *source)
                .await?
        } else {
            0
        };
        let table = typed(target, &name, columns, high_water).await?;
        parents.insert(name.clone(), refs);
        tables.insert(name, table);
    }
    let order = order(&parents)?;
    Ok(order
        .into_iter()
        .filter_map(|name| tables.remove(&name))
        .collect())
}

/// The table with each source column typed by the target's column of that name.
async fn typed(
    target: &PgPool,
    name: &str,
    columns: Vec<String>,
    high_water: i64,
) -> Result<Table, MigrateError> {
    let target_columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_identity::text
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(name)
    .fetch_all(target)
    .await?;
    if target_columns.is_empty() {
        return Err(MigrateError::MissingTable {
            table: name.to_owned(),
        });
    }
    let mut typed = Vec::with_capacity(columns.len());
    for column in columns {
        let Some((_, ty, _)) = target_columns.iter().find(|(c, _, _)| *c == column) else {
            return Err(MigrateError::MissingColumn {
                table: name.to_owned(),
                column,
            });
        };
        let kind = match ty.as_str() {
            "bigint" => Kind::Int,
            "double precision" => Kind::Real,
            "text" => Kind::Text,
            "boolean" => Kind::Bool,
            other => {
                return Err(MigrateError::UnsupportedType {
                    table: name.to_owned(),
                    column,
                    ty: other.to_owned(),
                })
            }
        };
        typed.push(Column { name: column, kind });
    }
    let identities = target_columns
        .iter()
        .filter(|(_, _, identity)| identity == "YES")
        .map(|(c, _, _)| (c.clone(), high_water))
        .collect();
    Ok(Table {
        name: name.to_owned(),
        columns: typed,
        identities,
    })
}

/// The tables ordered so that every table comes after the tables it refers to (by name among
/// tables free to go; `rollup_paused` first, so that a row it holds is in place before the
/// buckets are copied). References to tables not being copied are ignored.
fn order(parents: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, MigrateError> {
    let mut left: Vec<&String> = parents.keys().collect();
    left.sort_by_key(|name| (name.as_str() != "rollup_paused", name.as_str()));
    let mut done: Vec<String> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left.iter().position(|name| {
            parents[*name]
                .iter()
                .all(|p| p == *name || !parents.contains_key(p) || done.contains(p))
        });
        let Some(i) = ready else {
            let tables: Vec<&str> = left.iter().map(|s| s.as_str()).collect();
            return Err(MigrateError::Cycle {
                tables: tables.join(", "),
            });
        };
        done.push(left.remove(i).clone());
    }
    Ok(done)
}

/// Refuses a target that holds a row in any table (leader_lease too: a replica runs on it).
pub(super) async fn refuse_rows(target: &mut PgConnection) -> Result<(), MigrateError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables
         WHERE schemaname = current_schema() AND tablename <> '_sqlx_migrations'
         ORDER BY 1",
    )
    .fetch_all(&mut *target)
    .await?;
    let mut held = Vec::new();
    for name in names {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", quote(&name)))
            .fetch_one(&mut *target)
            .await?;
        if rows > 0 {
            held.push(format!(
                "{name}: {}",
                crate::text::count(rows, "row", "rows")
            ));
        }
    }
    if held.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::NotEmpty {
            tables: held.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parents(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(t, ps)| (t.to_string(), ps.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    #[test]
    fn parents_come_first_and_rollup_paused_leads() {
        let p = parents(&[
            ("deliveries", &["alert_events"]),
            ("alert_events", &["alerts"]),
            ("alerts", &[]),
            ("usage_buckets", &[]),
            ("rollup_paused", &[]),
            ("notes", &["notes", "elsewhere"]),
        ]);
        assert_eq!(
            order(&p).unwrap(),
            [
                "rollup_paused",
                "alerts",
                "alert_events",
                "deliveries",
                "notes",
                "usage_buckets"
            ]
        );
    }

    #[test]
    fn a_cycle_is_refused_naming_its_tables() {
        let p = parents(&[("a", &["b"]), ("b", &["a"]), ("c", &[])]);
        let e = order(&p).unwrap_err().to_string();
        assert!(e.contains("among a, b:"), "{e}");
    }
}
