//! Leader election over PostgreSQL: one row, `leader_lease` (id = 1), taken and renewed by epoch.
//!
//! Every replica runs an [`Elector`]. Each `ttl / 3` the leader renews its deadline and every
//! other replica checks whether the lease has lapsed and, if so, takes it with `epoch + 1`. The
//! [`Leadership`] each elector believes is published on a `tokio::sync::watch` channel.
//!
//! # Clocks
//!
//! Deadlines live in the row, in the DATABASE clock (`kw_now_ms()`), and are only ever compared
//! with that same clock inside SQL. Locally an elector measures durations with
//! [`tokio::time::Instant`]; no host wall clock is compared with anything.
//!
//! # Guarantees
//!
//! * **Step-down.** A leader stops believing it leads (publishes [`Leadership::Unknown`]) at
//!   once when a renew finds another holder, and in any case no later than
//!   `sent + ttl - margin`, where `sent` is the [`Instant`](tokio::time::Instant) at which its
//!   last *successful* renew (or the acquiring statement) was sent and
//!   `margin = min(1 s, ttl / 4)`. Because that statement set `deadline_ms` to the database's
//!   clock *after* it was sent plus `ttl`, the local belief ends at least `margin` before the
//!   database lets anyone else take the row (given the two clocks' rates agree to within
//!   `margin / ttl`, at least 3.3 % for ttl ≤ 30 s; real drift is parts per million).
//! * **Takeover.** After a leader dies without releasing, its row lapses at most `ttl` after its
//!   last renew ran, and a follower takes it within `ttl + ttl / 3` plus one database round
//!   trip (followers poll each `ttl / 3`; a follower that saw a live lease also wakes right after
//!   its deadline, so in practice takeover is `ttl` plus a round trip). After a graceful
//!   release ([`Elector::run`] cancelled) a follower takes over within `ttl / 3` plus a round
//!   trip. Both are delayed by any fenced write transaction of the old leader still open (see
//!   [`fence`]): the takeover happens right after it ends.
//! * **Fencing.** The watch channel is advisory (a paused process can believe it leads for a
//!   moment after it lost the row). Writes that must come from the leader alone call [`fence`]
//!   inside their transaction, which makes the database the arbiter; see there.
//!
//! # Schema
//!
//! ```sql
//! CREATE FUNCTION kw_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE PARALLEL SAFE
//!     AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
//! CREATE TABLE leader_lease (
//!     id BIGINT PRIMARY KEY CHECK (id = 1), holder TEXT COLLATE "C" NOT NULL,
//!     epoch BIGINT NOT NULL, since_ms BIGINT NOT NULL, deadline_ms BIGINT NOT NULL);
//! ```

mod elector;
mod sql;

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

pub use elector::Elector;

/// What an elector believes about leadership right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Not known: at start, after a database error, after stepping down and after shutdown.
    /// Never leader.
    Unknown,
    /// This instance holds the lease with this epoch, taken at `since_ms` (database clock,
    /// Unix milliseconds). Leader writes pass `epoch` to [`fence`].
    Leader { epoch: i64, since_ms: i64 },
    /// Another instance, `leader`, holds a live lease, taken at `since_ms` (database clock).
    Follower { leader: String, since_ms: i64 },
}

impl Leadership {
    /// Whether this instance believes it leads.
    pub fn is_leader(&self) -> bool {
        matches!(self, Leadership::Leader { .. })
    }
}

/// How an [`Elector`] takes part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// This replica's name in `leader_lease.holder`; unique per running process
    /// (see [`default_instance`]). An elector re-takes a row that already names it.
    pub instance: String,
    /// How long a renew keeps the lease (database clock). Renews and polls run each `ttl / 3`.
    /// Clamped to 100 ms ..= 1 day.
    pub ttl: Duration,
}

/// The lease ttl for a poll interval: `poll / 2` clamped to 5 s ..= 30 s.
///
/// The takeover bound after a leader dies is `ttl + ttl / 3` plus one database round trip
/// (see the module docs), which is:
/// * poll < 10 s: ttl = 5 s, takeover ≤ 6.67 s — at most 2 poll intervals for poll ≥ 3.34 s;
/// * 10 s ≤ poll ≤ 60 s: ttl = poll / 2, takeover ≤ 2/3 of one poll interval;
/// * poll > 60 s: ttl = 30 s, takeover ≤ 40 s, under one poll interval.
///
/// So for every poll interval ≥ 5 s a new leader is in place within 2 poll intervals
/// (in fact within 4/3 of one), plus a round trip and any open fenced write transaction.
pub fn ttl_for_poll_interval(poll: Duration) -> Duration {
    (poll / 2).clamp(Duration::from_secs(5), Duration::from_secs(30))
}

/// A per-process instance name: the host name (`/etc/hostname`, else `$HOSTNAME`, else
/// `keywatch`) + `-` + 6 random hex digits, so two processes on one host differ.
pub fn default_instance() -> String {
    let host = host_name();
    let mut bytes = [0u8; 3];
    let suffix = match getrandom::fill(&mut bytes) {
        Ok(()) => u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
        // No OS randomness: the process id and the clock's nanoseconds still differ per process.
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            (std::process::id() ^ nanos) & 0x00ff_ffff
        }
    };
    format!("{host}-{suffix:06x}")
}

/// This machine's name: `/etc/hostname`, else `$HOSTNAME`, else `keywatch`.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "keywatch".to_owned())
}

/// The `leader_lease` row as the database has it, with the database's clock at the read.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaseRow {
    pub holder: String,
    pub epoch: i64,
    pub since_ms: i64,
    pub deadline_ms: i64,
    /// `kw_now_ms()` when the row was read.
    pub now_ms: i64,
}

impl LeaseRow {
    /// Whether the lease was live when read (a [`fence`] by its holder would have passed).
    pub fn is_live(&self) -> bool {
        self.deadline_ms > self.now_ms
    }
}

/// The lease row, if any, with the database clock (`now_ms`) at the read.
pub async fn current(pool: &PgPool) -> Result<Option<LeaseRow>, sqlx::Error> {
    sql::current(pool).await
}

/// Whether `instance` holds a live lease with `epoch`; call it first inside every leader-only
/// write transaction and roll back unless it returns `true`.
///
/// It runs `SELECT 1 FROM leader_lease WHERE id = 1 AND holder = $1 AND epoch = $2 AND
/// deadline_ms > kw_now_ms() FOR KEY SHARE`, and the `FOR KEY SHARE` row lock is held until the
/// calling transaction ends:
/// * It does not conflict with the leader's renew (`UPDATE … SET deadline_ms`, which takes
///   `FOR NO KEY UPDATE`) nor with its release, so a long write never blocks renewing.
/// * It does conflict with the `SELECT … FOR UPDATE` an acquirer takes before it touches the
///   row, so a takeover waits until every fenced transaction of the old leader has committed
///   or rolled back, and the new epoch starts strictly after the old epoch's last write.
/// * Once the row has a new epoch (or its deadline passed), the old leader's later fences
///   return `false`; a fence that was waiting behind the acquirer re-reads the new row and
///   returns `false` too.
///
/// Use it in READ COMMITTED transactions (PostgreSQL's default); under REPEATABLE READ a fence
/// after a concurrent renew fails with a serialization error instead.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn fence(
    conn: &mut PgConnection,
    instance: &str,
    epoch: i64,
) -> Result<bool, sqlx::Error> {
    sql::fence(conn, instance, epoch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_half_the_poll_interval_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(ttl_for_poll_interval(Duration::ZERO), s(5));
        assert_eq!(ttl_for_poll_interval(s(1)), s(5));
        assert_eq!(ttl_for_poll_interval(s(5)), s(5));
        assert_eq!(ttl_for_poll_interval(s(10)), s(5));
        assert_eq!(ttl_for_poll_interval(s(15)), Duration::from_millis(7500));
        assert_eq!(ttl_for_poll_interval(s(60)), s(30));
        assert_eq!(ttl_for_poll_interval(s(61)), s(30));
        assert_eq!(ttl_for_poll_interval(s(86_400)), s(30));
        assert_eq!(ttl_for_poll_interval(Duration::MAX), s(30));
    }

    #[test]
    fn takeover_bound_within_two_poll_intervals_from_five_seconds() {
        for poll_ms in (5_000..=200_000).step_by(250) {
            let poll = Duration::from_millis(poll_ms);
            let ttl = ttl_for_poll_interval(poll);
            assert!(ttl + ttl / 3 <= poll * 2, "poll {poll:?}");
        }
    }

    #[test]
    fn default_instance_is_host_dash_six_hex() {
        let a = default_instance();
        let (host, suffix) = a.rsplit_once('-').expect("a dash");
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 6);
        assert!(suffix
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // 24 random bits: two draws colliding would be a 1-in-16M fluke; try a few.
        let distinct = (0..4).map(|_| default_instance()).any(|b| b != a);
        assert!(distinct);
    }

    #[test]
    fn only_leader_is_leader() {
        assert!(Leadership::Leader {
            epoch: 1,
            since_ms: 0
        }
        .is_leader());
        assert!(!Leadership::Unknown.is_leader());
        assert!(!Leadership::Follower {
            leader: "a".into(),
            since_ms: 0
        }
        .is_leader());
    }
}
