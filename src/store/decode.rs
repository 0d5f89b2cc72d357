//! How stored values that cannot be trusted blindly are read: counts that may have overflowed
//! into a REAL, and names of a closed set that a newer keywatch (or a hand edit) may have
//! extended. Typed rows name these types in `#[sqlx(try_from = ...)]` or as field types.

use std::borrow::Cow;

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Postgres, Sqlite, Type, TypeInfo, ValueRef};

use super::StoreError;

/// A token or request count, possibly NULL (no count reported). SQLite turns an integer sum
/// that overflows into a REAL: a database written before counts were bounded at decode may hold
/// one; it reads as the largest count instead of failing the read. Any other type reads as the
/// largest count too.
///
/// Read into `i64` (NULL as 0) or `Option<i64>` through `#[sqlx(try_from = "Count")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(Option<i64>);

impl Type<Sqlite> for Count {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    /// Every stored type: the decode below saturates what is not an integer.
    fn compatible(_: &SqliteTypeInfo) -> bool {
        true
    }
}

impl<'r> Decode<'r, Sqlite> for Count {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(Self(None));
        }
        let ty: Cow<'_, SqliteTypeInfo> = value.type_info();
        if <i64 as Type<Sqlite>>::compatible(&ty) {
            return Ok(Self(Some(<i64 as Decode<Sqlite>>::decode(value)?)));
        }
        if <f64 as Type<Sqlite>>::compatible(&ty) {
            // `as` saturates; NaN becomes 0.
            return Ok(Self(Some(<f64 as Decode<Sqlite>>::decode(value)? as i64)));
        }
        Ok(Self(Some(i64::MAX)))
    }
}

impl Type<Postgres> for Count {
    fn type_info() -> PgTypeInfo {
        <i64 as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <i64 as Type<Postgres>>::compatible(ty)
            || <i32 as Type<Postgres>>::compatible(ty)
            || <f64 as Type<Postgres>>::compatible(ty)
            || ty.name() == "NUMERIC"
    }
}

impl<'r> Decode<'r, Postgres> for Count {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(Self(None));
        }
        let ty = value.type_info().into_owned();
        if <i64 as Type<Postgres>>::compatible(&ty) {
            return Ok(Self(Some(<i64 as Decode<Postgres>>::decode(value)?)));
        }
        if <i32 as Type<Postgres>>::compatible(&ty) {
            return Ok(Self(Some(<i32 as Decode<Postgres>>::decode(value)?.into())));
        }
        if <f64 as Type<Postgres>>::compatible(&ty) {
            return Ok(Self(Some(<f64 as Decode<Postgres>>::decode(value)? as i64)));
        }
        if ty.name() == "NUMERIC" {
            // PostgreSQL's SUM() of BIGINT: a NUMERIC, saturated to i64 like an overflow.
            return Ok(Self(Some(numeric_to_i64(&value)?)));
        }
        Err(format!("a count column of type {} (expected BIGINT)", ty.name()).into())
    }
}

/// A NUMERIC's integer part, saturated to `i64` (NaN as 0). Binary format: ndigits, weight,
/// sign, dscale (i16 each), then ndigits base-10,000 digits, the first worth 10000^weight.
fn numeric_to_i64(value: &PgValueRef<'_>) -> Result<i64, BoxDynError> {
    if value.format() == sqlx::postgres::PgValueFormat::Text {
        let text = value.as_str()?;
        let int = text.split('.').next().unwrap_or("0");
        return Ok(int.parse::<i64>().unwrap_or(if int.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        }));
    }
    let b = value.as_bytes()?;
    let word = |i: usize| -> Result<i16, BoxDynError> {
        b.get(2 * i..2 * i + 2)
            .map(|w| i16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(|| "a truncated NUMERIC".into())
    };
    let (ndigits, weight, sign) = (word(0)?, word(1)?, word(2)? as u16);
    if sign == 0xC000 {
        return Ok(0);
    }
    let mut total: i128 = 0;
    for i in 0..ndigits.max(0) {
        let place = i32::from(weight) - i32::from(i);
        if place < 0 {
            break;
        }
        if place > 5 {
            total = i128::MAX;
            break;
        }
        total =
            total.saturating_add(i128::from(word(4 + i as usize)?) * 10_000_i128.pow(place as u32));
    }
    if sign == 0x4000 {
        total = -total;
    }
    Ok(total.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// A count in a packed JSON row (see `packed`), read as [`Count`] reads a column: an integer,
/// a float saturated to `i64` (a REAL an older version stored), or null.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsonCount(pub Option<i64>);

impl<'de> serde::Deserialize<'de> for JsonCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = Option::<serde_json::Number>::deserialize(d)?;
        Ok(JsonCount(n.map(|n| {
            match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i,
                (None, Some(_), _) => i64::MAX,
                // `as` saturates; NaN becomes 0.
                (None, None, f) => f.unwrap_or(0.0) as i64,
            }
        })))
    }
}

impl From<Count> for i64 {
    fn from(c: Count) -> Self {
        c.0.unwrap_or(0)
    }
}

impl From<Count> for Option<i64> {
    fn from(c: Count) -> Self {
        c.0
    }
}

/// A TEXT column holding one name of a closed set (`T` derives `sqlx::Type`). A name this
/// keywatch does not know is kept as text rather than failing inside sqlx, so the reader can
/// name the row in [`StoreError::UnknownValue`]: it is never re-read as something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known<T> {
    Is(T),
    Unknown(String),
}

impl<T> Known<T> {
    /// The value, or [`StoreError::UnknownValue`] naming `row` (e.g. `alert kw_…`) and `column`.
    pub fn get(self, row: impl FnOnce() -> String, column: &'static str) -> Result<T, StoreError> {
        match self {
            Self::Is(v) => Ok(v),
            Self::Unknown(value) => Err(StoreError::UnknownValue {
                row: row(),
                column,
                value,
            }),
        }
    }
}

impl<DB: Database, T: Type<DB>> Type<DB> for Known<T> {
    fn type_info() -> DB::TypeInfo {
        T::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        T::compatible(ty)
    }
}

impl<'r, DB: Database, T: Decode<'r, DB>> Decode<'r, DB> for Known<T>
where
    String: for<'a> Decode<'a, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        // A cheap copy (shared), read as text only when `T` does not know the name.
        let copy = value.to_owned();
        match T::decode(value) {
            Ok(v) => Ok(Self::Is(v)),
            Err(_) => Ok(Self::Unknown(<String as Decode<DB>>::decode(
                sqlx::Value::as_ref(&copy),
            )?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertStatus, Rule, Severity};

    #[test]
    fn json_counts_read_as_columns_do() {
        let got: Vec<JsonCount> =
            serde_json::from_str("[5, null, 1e300, -1e300, 18446744073709551615, 2.9]").unwrap();
        let want = [
            Some(5),
            None,
            Some(i64::MAX),
            Some(i64::MIN),
            Some(i64::MAX),
            Some(2),
        ];
        assert_eq!(got.iter().map(|c| c.0).collect::<Vec<_>>(), want);
        assert!(serde_json::from_str::<JsonCount>("\"5\"").is_err());
    }

    async fn pool() -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap()
    }

    async fn count(pool: &sqlx::SqlitePool, expr: &str) -> Option<i64> {
        let c: Count = sqlx::query_scalar(&format!("SELECT {expr}"))
            .fetch_one(pool)
            .await
            .unwrap();
        c.into()
    }

    #[tokio::test]
    async fn counts_saturate_instead_of_failing() {
        let pool = pool().await;
        assert_eq!(count(&pool, "42").await, Some(42));
        assert_eq!(count(&pool, "NULL").await, None);
        // An integer sum past i64::MAX is a REAL in SQLite.
        assert_eq!(
            count(&pool, "9223372036854775807 + 1").await,
            Some(i64::MAX)
        );
        assert_eq!(count(&pool, "-1e30").await, Some(i64::MIN));
        assert_eq!(count(&pool, "'text'").await, Some(i64::MAX));
        assert_eq!(i64::from(Count(None)), 0);
    }

    /// The names `sqlx::Type` stores are the ones `as_str` gives (and the migrations' comments).
    #[tokio::test]
    async fn stored_names_are_the_as_str_names() {
        let pool = pool().await;
        async fn round_trip<T>(pool: &sqlx::SqlitePool, v: T, name: &str)
        where
            T: for<'q> sqlx::Encode<'q, Sqlite>
                + for<'r> Decode<'r, Sqlite>
                + Type<Sqlite>
                + PartialEq
                + std::fmt::Debug
                + Send
                + Unpin
                + Copy,
        {
            let (text, back): (String, Known<T>) = sqlx::query_as("SELECT $1, $2")
                .bind(v)
                .bind(name)
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(text, name);
            assert_eq!(back, Known::Is(v));
        }
        for r in Rule::ALL {
            round_trip(&pool, r, r.as_str()).await;
        }
        for s in [Severity::Info, Severity::Warning, Severity::Critical] {
            round_trip(&pool, s, s.as_str()).await;
        }
        for s in [AlertStatus::Firing, AlertStatus::Resolved] {
            round_trip(&pool, s, s.as_str()).await;
        }
        // The names the outboxes' SQL filters on.
        use super::super::DeliveryState as D;
        for (s, name) in [
            (D::Pending, "pending"),
            (D::Delivered, "delivered"),
            (D::Expired, "expired"),
        ] {
            round_trip(&pool, s, name).await;
        }
        let unknown: Known<AlertStatus> = sqlx::query_scalar("SELECT 'acknowledged'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(unknown, Known::Unknown("acknowledged".to_owned()));
        let err = unknown
            .get(|| "alert kw_1".to_owned(), "status")
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::UnknownValue {
                column: "status",
                ..
            }
        ));
    }
}
