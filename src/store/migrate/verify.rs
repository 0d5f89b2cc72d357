//! Checking a copied table against its source: the row count, and per column a sum — exact
//! for integers (as SQLite's 64-bit halves on the source, as NUMERIC on the target), the
//! count of true for booleans, the total length of text, and for floats SQLite's `SUM`
//! against `kw_sum` (the same compensated summation), which must agree within 1e-9 relative.

use sqlx::{PgConnection, Row, SqliteConnection};

use super::plan::{Kind, Table};
use super::{quote, MigrateError};

/// Float sums may differ by this much, relative, when the rows were added in another order.
const TOLERANCE: f64 = 1e-9;

/// One side's figures for one table: the row count, and one sum per column.
#[derive(Debug, Clone)]
pub(super) struct Sums {
    pub rows: i64,
    sums: Vec<Sum>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sum {
    /// Integers, 0/1 counts and text lengths: NULL when every value is NULL (or no row).
    Exact(Option<i128>),
    Float(Option<f64>),
}

/// What the checks of one table found.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub table: String,
    /// Rows in the source.
    pub rows: i64,
    /// Checks made: the row count and one per column.
    pub checks: usize,
    /// Of those, DOUBLE PRECISION sums (equal to the bit unless a note says otherwise).
    pub floats: usize,
    /// Float columns whose sums agree within 1e-9 relative but not to the bit.
    pub notes: Vec<String>,
    /// What differs; empty when the table matches.
    pub problems: Vec<String>,
}

/// The source's figures, read from the snapshot being copied.
pub(super) async fn source_sums(
    source: &mut SqliteConnection,
    table: &Table,
) -> Result<Sums, MigrateError> {
    let mut exprs = vec!["COUNT(*)".to_owned()];
    for c in &table.columns {
        let q = quote(&c.name);
        match c.kind {
            // Two halves, so that no sum overflows 64 bits (SQLite's SUM fails if one would):
            // x = (x >> 32) * 2^32 + (x & 0xFFFFFFFF), the shift being arithmetic.
            Kind::Int => exprs.push(format!("SUM({q} >> 32), SUM({q} & 4294967295)")),
            Kind::Bool => exprs.push(format!("SUM({q}), NULL")),
            Kind::Text => exprs.push(format!("SUM(length({q})), NULL")),
            Kind::Real => exprs.push(format!("SUM({q})")),
        }
    }
    let sql = format!("SELECT {} FROM {}", exprs.join(", "), quote(&table.name));
    let row = sqlx::query(&sql).fetch_one(&mut *source).await?;
    let mut sums = Vec::with_capacity(table.columns.len());
    let mut i = 1;
    for c in &table.columns {
        if c.kind == Kind::Real {
            sums.push(Sum::Float(row.try_get(i)?));
            i += 1;
            continue;
        }
        let high: Option<i64> = row.try_get(i)?;
        let low: Option<i64> = if c.kind == Kind::Int {
            row.try_get(i + 1)?
        } else {
            Some(0)
        };
        sums.push(Sum::Exact(high.zip(low).map(|(h, l)| match c.kind {
            Kind::Int => (i128::from(h) << 32) + i128::from(l),
            _ => i128::from(h),
        })));
        i += 2;
    }
    Ok(Sums {
        rows: row.try_get(0)?,
        sums,
    })
}

/// The target's figures, inside the copying transaction, compared with the source's.
pub(super) async fn compare(
    target: &mut PgConnection,
    table: &Table,
    expected: &Sums,
) -> Result<TableReport, MigrateError> {
    let mut exprs = vec!["COUNT(*)".to_owned()];
    for c in &table.columns {
        let q = quote(&c.name);
        exprs.push(match c.kind {
            Kind::Int => format!("SUM({q})::text"),
            Kind::Bool => format!("SUM({q}::int)::text"),
            Kind::Text => format!("SUM(char_length({q}))::text"),
            Kind::Real => format!("kw_sum({q})"),
        });
    }
    let sql = format!("SELECT {} FROM {}", exprs.join(", "), quote(&table.name));
    let row = sqlx::query(&sql).fetch_one(&mut *target).await?;
    let mut report = TableReport {
        table: table.name.clone(),
        rows: expected.rows,
        checks: 1 + table.columns.len(),
        floats: table
            .columns
            .iter()
            .filter(|c| c.kind == Kind::Real)
            .count(),
        notes: Vec::new(),
        problems: Vec::new(),
    };
    let rows: i64 = row.try_get(0)?;
    if rows != expected.rows {
        report.problems.push(format!(
            "{}: {} rows in the source, {rows} in the target",
            table.name, expected.rows
        ));
    }
    for (i, (c, want)) in table.columns.iter().zip(&expected.sums).enumerate() {
        let got = if c.kind == Kind::Real {
            Sum::Float(row.try_get(i + 1)?)
        } else {
            let text: Option<String> = row.try_get(i + 1)?;
            Sum::Exact(text.and_then(|t| t.parse().ok()))
        };
        let what = match c.kind {
            Kind::Int | Kind::Real => "sum",
            Kind::Bool => "count of true",
            Kind::Text => "total length",
        };
        let column = format!("{}.{}", table.name, c.name);
        match judge(*want, got) {
            Verdict::Same => {}
            Verdict::Close(rel) => report.notes.push(format!(
                "{column}: the sums agree within 1e-9 relative ({rel:.1e}), not to the bit"
            )),
            Verdict::Differ => report.problems.push(format!(
                "{column}: {what} {} in the source, {} in the target",
                show(*want),
                show(got)
            )),
        }
    }
    Ok(report)
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Same,
    /// Floats within the tolerance: their relative difference.
    Close(f64),
    Differ,
}

fn judge(want: Sum, got: Sum) -> Verdict {
    match (want, got) {
        (Sum::Float(Some(a)), Sum::Float(Some(b))) => {
            if a.to_bits() == b.to_bits() || a == b {
                return Verdict::Same;
            }
            let rel = (a - b).abs() / a.abs().max(b.abs());
            if rel <= TOLERANCE {
                Verdict::Close(rel)
            } else {
                Verdict::Differ
            }
        }
        (a, b) if a == b => Verdict::Same,
        _ => Verdict::Differ,
    }
}

fn show(sum: Sum) -> String {
    match sum {
        Sum::Exact(Some(v)) => v.to_string(),
        Sum::Float(Some(v)) => format!("{v:?}"),
        Sum::Exact(None) | Sum::Float(None) => "NULL".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_agree_to_the_bit_or_within_the_tolerance() {
        let f = |v: f64| Sum::Float(Some(v));
        assert_eq!(judge(f(0.1 + 0.2), f(0.1 + 0.2)), Verdict::Same);
        assert!(matches!(
            judge(f(0.30000000000000004), f(0.3)),
            Verdict::Close(r) if r > 0.0 && r < 1e-15
        ));
        assert_eq!(judge(f(1.0), f(1.000_001)), Verdict::Differ);
        assert_eq!(judge(Sum::Float(None), f(0.0)), Verdict::Differ);
        assert_eq!(judge(Sum::Float(None), Sum::Float(None)), Verdict::Same);
    }

    #[test]
    fn exact_sums_must_be_equal() {
        let big = i128::from(i64::MAX) * 3;
        assert_eq!(
            judge(Sum::Exact(Some(big)), Sum::Exact(Some(big))),
            Verdict::Same
        );
        assert_eq!(
            judge(Sum::Exact(Some(big)), Sum::Exact(Some(big + 1))),
            Verdict::Differ
        );
    }
}
