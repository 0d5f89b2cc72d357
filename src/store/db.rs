//! The two backends behind one store: SQLite (the embedded default) and PostgreSQL (replicated
//! deployments). Each statement is written once, with `$n` placeholders (sqlx's SQLite driver
//! binds `$n` by number too); [`on!`] and [`on_tx!`] run the same tokens against whichever pool
//! or transaction is open, and [`Builder`] assembles multi-row statements for either.

use std::borrow::Cow;

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A connection pool of either backend; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction of either backend: committed with [`Tx::commit`], rolled back on drop.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Db {
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Self::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite(p) => p.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(t) => t.commit().await,
            Self::Postgres(t) => t.commit().await,
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(t) => t.rollback().await,
            Self::Postgres(t) => t.rollback().await,
        }
    }
}

/// Runs `$body` with `$e` bound to the pool of `$db` (a [`Db`] place), once per backend arm.
macro_rules! on {
    ($db:expr, |$e:ident| $body:expr) => {
        match &$db {
            $crate::store::db::Db::Sqlite($e) => $body,
            $crate::store::db::Db::Postgres($e) => $body,
        }
    };
}

/// Runs `$body` with `$e` bound to the connection of `$tx` (a `&mut Tx`).
macro_rules! on_tx {
    ($tx:expr, |$e:ident| $body:expr) => {
        match &mut *$tx {
            $crate::store::db::Tx::Sqlite(t) => {
                let $e = &mut **t;
                $body
            }
            $crate::store::db::Tx::Postgres(t) => {
                let $e = &mut **t;
                $body
            }
        }
    };
}

/// Runs the one write statement `$body` (with `$e` bound to a connection) in a transaction of
/// `$store` (a `Store`): fenced by the lease on a leader's PostgreSQL store, so a replica that
/// lost the lease writes nothing. Evaluates to `Result<_, StoreError>`.
macro_rules! fenced {
    ($store:expr, |$e:ident| $body:expr) => {
        async {
            let mut tx = $store.begin().await?;
            let out = $crate::store::db::on_tx!(&mut tx, |$e| $body)?;
            tx.commit().await?;
            Ok::<_, $crate::store::StoreError>(out)
        }
        .await
    };
}

pub(crate) use {fenced, on, on_tx};

/// One bound value of a [`Builder`] statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'q> {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<Cow<'q, str>>),
    Bool(bool),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl From<&i64> for Arg<'_> {
    fn from(v: &i64) -> Self {
        Self::Int(Some(*v))
    }
}
impl From<&f64> for Arg<'_> {
    fn from(v: &f64) -> Self {
        Self::Real(Some(*v))
    }
}
impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Self::Real(Some(v))
    }
}
impl From<Option<f64>> for Arg<'_> {
    fn from(v: Option<f64>) -> Self {
        Self::Real(v)
    }
}
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl<'q> From<&'q str> for Arg<'q> {
    fn from(v: &'q str) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}
impl<'q> From<&'q String> for Arg<'q> {
    fn from(v: &'q String) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}
impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Self::Text(Some(Cow::Owned(v)))
    }
}
impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Self::Text(v.map(Cow::Owned))
    }
}
impl<'q> From<&'q Option<String>> for Arg<'q> {
    fn from(v: &'q Option<String>) -> Self {
        Self::Text(v.as_deref().map(Cow::Borrowed))
    }
}
impl<'q> From<Option<&'q str>> for Arg<'q> {
    fn from(v: Option<&'q str>) -> Self {
        Self::Text(v.map(Cow::Borrowed))
    }
}

/// Builds a statement with a variable number of bound values (multi-row `INSERT … VALUES`,
/// `IN (…)` lists), numbering the placeholders `$1, $2, …` for either backend.
#[derive(Debug, Default)]
pub(crate) struct Builder<'q> {
    sql: String,
    args: Vec<Arg<'q>>,
}

/// The values of one row inside [`Builder::push_values`], separated by commas.
pub(crate) struct Separated<'b, 'q> {
    builder: &'b mut Builder<'q>,
    first: bool,
}

impl<'q> Separated<'_, 'q> {
    pub(crate) fn push_bind(&mut self, value: impl Into<Arg<'q>>) -> &mut Self {
        if !self.first {
            self.builder.sql.push_str(", ");
        }
        self.first = false;
        self.builder.push_bind(value);
        self
    }
}

impl<'q> Builder<'q> {
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, sql: impl AsRef<str>) -> &mut Self {
        self.sql.push_str(sql.as_ref());
        self
    }

    /// Appends the next placeholder and binds `value` to it.
    pub(crate) fn push_bind(&mut self, value: impl Into<Arg<'q>>) -> &mut Self {
        self.args.push(value.into());
        self.sql.push('$');
        self.sql.push_str(&self.args.len().to_string());
        self
    }

    /// Appends `VALUES (…), (…)`: one parenthesised row per item, filled by `row`.
    pub(crate) fn push_values<I, F>(&mut self, items: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_, 'q>, I::Item),
    {
        self.sql.push_str("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            row(
                Separated {
                    builder: self,
                    first: true,
                },
                item,
            );
            self.sql.push(')');
        }
        self
    }

    /// Runs the statement in `tx`; the number of rows it changed.
    pub(crate) async fn execute(self, tx: &mut Tx) -> Result<u64, sqlx::Error> {
        let Self { sql, args } = self;
        Ok(match tx {
            Tx::Sqlite(t) => {
                let mut q = sqlx::query(&sql);
                for a in args {
                    q = match a {
                        Arg::Int(v) => q.bind(v),
                        Arg::Real(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::Bool(v) => q.bind(v),
                    };
                }
                q.execute(&mut **t).await?.rows_affected()
            }
            Tx::Postgres(t) => {
                let mut q = sqlx::query(&sql);
                for a in args {
                    q = match a {
                        Arg::Int(v) => q.bind(v),
                        Arg::Real(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::Bool(v) => q.bind(v),
                    };
                }
                q.execute(&mut **t).await?.rows_affected()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_across_rows() {
        let mut b = Builder::new("INSERT INTO t (a, b) ");
        b.push_values([(1_i64, "x"), (2, "y")], |mut s, (a, t)| {
            s.push_bind(a).push_bind(t);
        });
        b.push(" ON CONFLICT DO NOTHING");
        assert_eq!(
            b.sql,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(b.args.len(), 4);
    }
}
