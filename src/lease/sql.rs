//! The statements on `leader_lease`. Every time in them is the database clock, `kw_now_ms()`.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::time::Instant;

use super::LeaseRow;

/// The row with the database clock at the read (no lock taken).
const CURRENT: &str = "SELECT holder, epoch, since_ms, deadline_ms, kw_now_ms() AS now_ms \
    FROM leader_lease WHERE id = 1";

/// The fence; see [`super::fence`].
const FENCE: &str = "SELECT 1 FROM leader_lease \
    WHERE id = 1 AND holder = $1 AND epoch = $2 AND deadline_ms > kw_now_ms() FOR KEY SHARE";

/// Bounds how long an acquirer waits on the row lock (the old leader's fenced transactions);
/// a server-side limit leaves the connection usable, unlike dropping the future mid-statement.
const LOCK_TIMEOUT: &str = "SELECT set_config('lock_timeout', $1, true)";

/// Waits for every fenced (`FOR KEY SHARE`) transaction on the row to end, then holds it.
/// No `kw_now_ms()` here: a SELECT's output is computed before it waits for the lock.
const LOCK: &str = "SELECT holder FROM leader_lease WHERE id = 1 FOR UPDATE";

/// Creates the row with epoch 1 when there is none.
const INSERT: &str = "INSERT INTO leader_lease (id, holder, epoch, since_ms, deadline_ms) \
    SELECT 1, $1, 1, n.ms, n.ms + $2 FROM (SELECT kw_now_ms() AS ms) AS n \
    ON CONFLICT (id) DO NOTHING RETURNING epoch, since_ms";

/// Takes the (locked) row when it lapsed or already names this instance, with the next epoch.
const TAKE: &str = "UPDATE leader_lease AS l \
    SET holder = $1, epoch = l.epoch + 1, since_ms = n.ms, deadline_ms = n.ms + $2 \
    FROM (SELECT kw_now_ms() AS ms) AS n \
    WHERE l.id = 1 AND (l.deadline_ms < n.ms OR l.holder = $1) \
    RETURNING l.epoch, l.since_ms";

const RENEW: &str = "UPDATE leader_lease SET deadline_ms = kw_now_ms() + $3 \
    WHERE id = 1 AND holder = $1 AND epoch = $2";

const RELEASE: &str = "UPDATE leader_lease SET deadline_ms = 0 \
    WHERE id = 1 AND holder = $1 AND epoch = $2";

/// What an acquire attempt found.
#[derive(Debug)]
pub(super) enum Acquired {
    /// This instance now holds the row; `sent` is when the taking statement was sent, so the
    /// database deadline is at least `sent + ttl`.
    Leader {
        epoch: i64,
        since_ms: i64,
        sent: Instant,
    },
    /// Another instance holds a live lease that lapses in `remaining` (database clock).
    Follower {
        leader: String,
        since_ms: i64,
        remaining: Duration,
    },
}

pub(super) async fn current(pool: &PgPool) -> Result<Option<LeaseRow>, sqlx::Error> {
    sqlx::query_as::<_, LeaseRow>(CURRENT)
        .fetch_optional(pool)
        .await
}

pub(super) async fn fence(
    conn: &mut PgConnection,
    instance: &str,
    epoch: i64,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(FENCE)
        .bind(instance)
        .bind(epoch)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// Renews this instance's lease; `false` when the row no longer has this holder and epoch.
pub(super) async fn renew(
    pool: &PgPool,
    instance: &str,
    epoch: i64,
    ttl_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(RENEW)
        .bind(instance)
        .bind(epoch)
        .bind(ttl_ms)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends this instance's lease now (deadline 0); `false` when it no longer held it.
pub(super) async fn release(
    pool: &PgPool,
    instance: &str,
    epoch: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(RELEASE)
        .bind(instance)
        .bind(epoch)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes the lease when it lapsed, is absent or names this instance; else says who holds it.
///
/// A plain read comes first: while another holder's lease is live, a follower neither locks
/// nor writes the row (a `FOR UPDATE` per poll would write the tuple each time and queue
/// behind the leader's long fenced transactions). Only then the row is locked `FOR UPDATE`,
/// which waits for the old leader's fenced transactions, and re-checked under the lock.
pub(super) async fn acquire(
    pool: &PgPool,
    instance: &str,
    ttl_ms: i64,
    lock_timeout_ms: i64,
) -> Result<Acquired, sqlx::Error> {
    if let Some(row) = current(pool).await? {
        if let Some(follower) = live_other(instance, row) {
            return Ok(follower);
        }
    }
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK_TIMEOUT)
        .bind(format!("{lock_timeout_ms}ms"))
        .execute(&mut *tx)
        .await?;
    let mut locked: Option<(String,)> = sqlx::query_as(LOCK).fetch_optional(&mut *tx).await?;
    if locked.is_none() {
        let sent = Instant::now();
        let inserted: Option<(i64, i64)> = sqlx::query_as(INSERT)
            .bind(instance)
            .bind(ttl_ms)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some((epoch, since_ms)) = inserted {
            tx.commit().await?;
            return Ok(Acquired::Leader {
                epoch,
                since_ms,
                sent,
            });
        }
        // Another instance inserted it meanwhile (the INSERT waited for it to commit).
        locked = sqlx::query_as(LOCK).fetch_optional(&mut *tx).await?;
    }
    if locked.is_none() {
        return Err(sqlx::Error::RowNotFound);
    }
    let sent = Instant::now();
    let taken: Option<(i64, i64)> = sqlx::query_as(TAKE)
        .bind(instance)
        .bind(ttl_ms)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some((epoch, since_ms)) = taken {
        tx.commit().await?;
        return Ok(Acquired::Leader {
            epoch,
            since_ms,
            sent,
        });
    }
    // Live and someone else's (still locked by us, so this read is consistent with TAKE's).
    let row: Option<LeaseRow> = sqlx::query_as(CURRENT).fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    row.map(follower).ok_or(sqlx::Error::RowNotFound)
}

/// A follower's view of `row` when it names another holder whose lease has not lapsed
/// (`deadline_ms >= now_ms`: TAKE needs `deadline_ms < now_ms`).
fn live_other(instance: &str, row: LeaseRow) -> Option<Acquired> {
    (row.holder != instance && row.deadline_ms >= row.now_ms).then(|| follower(row))
}

fn follower(row: LeaseRow) -> Acquired {
    let remaining_ms = u64::try_from(row.deadline_ms.saturating_sub(row.now_ms)).unwrap_or(0);
    Acquired::Follower {
        leader: row.holder,
        since_ms: row.since_ms,
        remaining: Duration::from_millis(remaining_ms),
    }
}
