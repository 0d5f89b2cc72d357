//! The few SQL fragments SQLite and PostgreSQL spell differently. Everything else is written
//! once in the SQL both accept (`$n` placeholders, `ON CONFLICT … DO UPDATE`, `->>`, `CASE`).

use std::borrow::Cow;

use super::Backend;

impl Backend {
    /// A table `alias(value)` of the elements of the JSON array bound at `$n`, each as text
    /// (for arrays of strings).
    pub(crate) fn json_texts(self, n: usize, alias: &str) -> String {
        match self {
            Self::Sqlite => format!("json_each(${n}) AS {alias}"),
            Self::Postgres => format!("json_array_elements_text(${n}::json) AS {alias}(value)"),
        }
    }

    /// A subquery listing the strings of the JSON array bound at `$n`, for `x IN (…)`.
    pub(crate) fn json_text_list(self, n: usize) -> String {
        match self {
            Self::Sqlite => format!("(SELECT value FROM json_each(${n}))"),
            Self::Postgres => format!("(SELECT json_array_elements_text(${n}::json))"),
        }
    }

    /// A table `alias(key, value)` of the `[from, to)` pairs of the JSON array bound at `$n`:
    /// `key` numbers them from 0, `value ->> 0` and `value ->> 1` are the bounds.
    pub(crate) fn json_spans(self, n: usize, alias: &str) -> String {
        match self {
            Self::Sqlite => format!("json_each(${n}) AS {alias}"),
            Self::Postgres => format!(
                "(SELECT value, n - 1 AS key
                  FROM json_array_elements(${n}::json) WITH ORDINALITY AS j(value, n)) AS {alias}"
            ),
        }
    }

    /// A table `alias(value)` of the elements of the JSON array bound at `$n`, each as JSON
    /// (for arrays of arrays: `value ->> 0`).
    pub(crate) fn json_values(self, n: usize, alias: &str) -> String {
        match self {
            Self::Sqlite => format!("json_each(${n}) AS {alias}"),
            Self::Postgres => format!("json_array_elements(${n}::json) AS {alias}(value)"),
        }
    }

    /// `expr`'s values of a group joined by `sep` (in no promised order).
    pub(crate) fn string_agg(self, expr: &str, sep: &str) -> String {
        match self {
            Self::Sqlite => format!("group_concat({expr}, '{sep}')"),
            Self::Postgres => format!("string_agg(CAST({expr} AS TEXT), '{sep}')"),
        }
    }

    /// The distinct values of `expr` in a group joined by commas.
    pub(crate) fn string_agg_distinct(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("group_concat(DISTINCT {expr})"),
            Self::Postgres => format!("string_agg(DISTINCT CAST({expr} AS TEXT), ',')"),
        }
    }

    /// A float sum that is 0.0 over no rows and never overflows (SQLite's TOTAL; on
    /// PostgreSQL the same Kahan-Babuska-Neumaier sum, `kw_sum` in the baseline migration).
    pub(crate) fn total(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("TOTAL({expr})"),
            Self::Postgres => format!("COALESCE(kw_sum(CAST({expr} AS DOUBLE PRECISION)), 0.0)"),
        }
    }

    /// A float sum, NULL over no rows, added as SQLite adds (Kahan-Babuska-Neumaier).
    pub(crate) fn sum_real(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("SUM({expr})"),
            Self::Postgres => format!("kw_sum(CAST({expr} AS DOUBLE PRECISION))"),
        }
    }

    /// `sql` with each `SUM_REAL(` (a sum of floats) spelled as this backend adds floats as
    /// SQLite does: SQLite's own `SUM(`, PostgreSQL's `kw_sum(` (its `SUM` of a float adds
    /// without compensation, so totals would differ in the last bits between backends).
    pub(crate) fn real_sums(self, sql: &str) -> Cow<'_, str> {
        match self {
            Self::Sqlite => Cow::Owned(sql.replace("SUM_REAL(", "SUM(")),
            Self::Postgres => Cow::Owned(sql.replace("SUM_REAL(", "kw_sum(")),
        }
    }

    /// `LIMIT` with no limit (SQLite plans a subquery with one differently).
    pub(crate) fn no_limit(self) -> &'static str {
        match self {
            Self::Sqlite => "LIMIT -1",
            Self::Postgres => "LIMIT ALL",
        }
    }

    /// A float rounded half away from zero to a BIGINT (SQLite's ROUND; PostgreSQL's rounds
    /// a float half to even).
    pub(crate) fn round_int(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("CAST(ROUND({expr}) AS BIGINT)"),
            Self::Postgres => {
                format!("CAST(sign({expr}) * floor(abs({expr}) + 0.5) AS BIGINT)")
            }
        }
    }

    /// The join that keeps its left side as the outer loop on SQLite (PostgreSQL plans joins
    /// itself, and its CROSS JOIN takes no ON).
    pub(crate) fn driving_join(self) -> &'static str {
        match self {
            Self::Sqlite => "CROSS JOIN",
            Self::Postgres => "JOIN",
        }
    }
}
