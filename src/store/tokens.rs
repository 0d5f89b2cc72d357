//! The five token columns of `usage_buckets` and `usage_daily`, named once for the store: the
//! SQL fragments every query builds from them, and reading them into [`TokenCounts`] (a row type
//! flattens it with `#[sqlx(flatten)] tokens: TokenCounts`). The migrations' triggers spell them
//! too. They are the names of `TokenCounts::NAMES` (CSV and JSON), in the order SQL has always
//! added them up rather than the CSV order, so the sums stay the same expressions.

use super::decode::Count;
use crate::prices::TokenCounts;

/// In the order every query selects, binds and adds them: uncached input, cache read, 5-minute
/// write, 1-hour write, output (the order of [`column_values`]).
pub const TOKEN_COLUMNS: [&str; 5] = [
    "uncached_input_tokens",
    "cache_read_input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
];

/// `counts`' classes in [`TOKEN_COLUMNS`] order.
pub fn column_values(counts: &TokenCounts) -> [i64; 5] {
    [
        counts.uncached_input,
        counts.cache_read,
        counts.cache_write_5m,
        counts.cache_write_1h,
        counts.output,
    ]
}

/// Each column written through `f`, joined by `sep`.
pub fn each(f: impl Fn(&str) -> String, sep: &str) -> String {
    TOKEN_COLUMNS.map(f).join(sep)
}

/// The columns as a list: `uncached_input_tokens, …, output_tokens`.
pub fn list() -> String {
    each(str::to_owned, ", ")
}

/// Each column of the table aliased `table` (`""` for none) summed under its own name:
/// `SUM(u.uncached_input_tokens) AS uncached_input_tokens, …`.
pub fn sums(table: &str) -> String {
    each(|c| format!("SUM({table}{c}) AS {c}"), ", ")
}

/// All classes of a row added up, in parentheses: `(u.uncached_input_tokens + … )`.
pub fn total(table: &str) -> String {
    format!("({})", each(|c| format!("{table}{c}"), " + "))
}

/// Read by column name, each as a saturating `Count` (NULL as 0).
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for TokenCounts
where
    Count: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        let mut n = [0_i64; 5];
        for (v, column) in n.iter_mut().zip(TOKEN_COLUMNS) {
            *v = row.try_get::<Count, _>(column)?.into();
        }
        let [uncached_input, cache_read, cache_write_5m, cache_write_1h, output] = n;
        Ok(TokenCounts {
            uncached_input,
            cache_read,
            cache_write_5m,
            cache_write_1h,
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments() {
        assert_eq!(
            total("u."),
            "(u.uncached_input_tokens + u.cache_read_input_tokens + u.cache_write_5m_tokens \
             + u.cache_write_1h_tokens + u.output_tokens)"
        );
        assert!(sums("").starts_with("SUM(uncached_input_tokens) AS uncached_input_tokens, "));
        assert_eq!(list().matches(", ").count(), 4);
    }

    #[test]
    fn the_columns_are_the_output_names_of_the_same_classes() {
        let counts = TokenCounts {
            uncached_input: 1,
            cache_read: 2,
            cache_write_5m: 3,
            cache_write_1h: 4,
            output: 5,
        };
        let mut by_column: Vec<_> = TOKEN_COLUMNS
            .into_iter()
            .zip(column_values(&counts))
            .collect();
        let mut by_name: Vec<_> = counts.named().collect();
        by_column.sort_unstable();
        by_name.sort_unstable();
        assert_eq!(by_column, by_name);
    }
}
