//! Which replica leads, as `/readyz` and the dashboard say it (PostgreSQL; on SQLite the one
//! process leads and nothing is added).

use crate::lease::{self, Leadership};
use crate::text::rfc3339;

use super::AppState;

/// The lines `/readyz` adds, and whether a replica holds a live lease. Read from the database
/// (the lease row is the authority) and from this replica's own elector.
pub(super) async fn describe(state: &AppState) -> (String, bool) {
    let (Some(replica), Some(pool)) = (&state.replica, state.store.pg_pool()) else {
        return (String::new(), true);
    };
    let me = format!(
        "this replica: {} ({})\n",
        replica.instance,
        role_word(&replica.role.borrow())
    );
    match lease::current(pool).await {
        Ok(Some(row)) if row.is_live() => (
            format!(
                "leader: {} (epoch {}) since {}\n{me}",
                row.holder,
                row.epoch,
                rfc3339(row.since_ms.div_euclid(1000))
            ),
            true,
        ),
        Ok(Some(row)) => (
            format!(
                "leader: none (the lease of {} lapsed {} s ago)\n{me}",
                row.holder,
                (row.now_ms - row.deadline_ms).max(0) / 1000
            ),
            false,
        ),
        Ok(None) => ("leader: none yet\n".to_owned() + &me, false),
        Err(e) => (format!("leader: cannot read the lease: {e}\n{me}"), false),
    }
}

fn role_word(role: &Leadership) -> &'static str {
    match role {
        Leadership::Leader { .. } => "leader",
        Leadership::Follower { .. } => "follower",
        Leadership::Unknown => "not leading",
    }
}

/// The dashboard's one-line note, from this replica's elector (no database read).
pub(super) fn banner(state: &AppState) -> Option<String> {
    let replica = state.replica.as_ref()?;
    let since = |ms: i64| rfc3339(ms.div_euclid(1000));
    Some(match &*replica.role.borrow() {
        Leadership::Leader { since_ms, .. } => {
            format!(
                "replica {} leads since {}",
                replica.instance,
                since(*since_ms)
            )
        }
        Leadership::Follower { leader, since_ms } => format!(
            "replica {} follows {} (leader since {})",
            replica.instance,
            leader,
            since(*since_ms)
        ),
        Leadership::Unknown => format!("replica {}: no leader known", replica.instance),
    })
}
