//! The election loop: while leading, renew each `ttl / 3`; otherwise poll and take a lapsed
//! lease. See the module docs for the bounds it keeps.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::sql::{self, Acquired};
use super::{Leadership, LeaseConfig};

/// The ttl an [`Elector`] uses is clamped to this range (a zero ttl would spin; a huge one
/// would overflow deadlines).
const MIN_TTL: Duration = Duration::from_millis(100);
const MAX_TTL: Duration = Duration::from_secs(86_400);

/// How long after a live lease's deadline (database clock) a follower polls again: past
/// `kw_now_ms()`'s millisecond rounding, so the lapsed row can be taken at the first try.
const AFTER_DEADLINE: Duration = Duration::from_millis(5);

/// SQLSTATE lock_not_available: the acquirer's `lock_timeout` ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl AttemptError {
    fn is_lock_timeout(&self) -> bool {
        matches!(self, AttemptError::Db(sqlx::Error::Database(e))
            if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
    }
}

/// What the loop holds.
#[derive(Clone, Copy, Debug)]
enum Role {
    NotLeader,
    /// `hard_deadline`: `sent + ttl - margin` of the last successful renew or take; the loop
    /// steps down there unless a renew succeeds first.
    Leader {
        epoch: i64,
        hard_deadline: Instant,
    },
}

/// Takes part in the election for one instance and publishes what it believes.
///
/// Build it with [`Elector::new`], hand the receiver to whatever must act only while leading,
/// and spawn [`Elector::run`]. Database errors are logged at warn and retried on the next tick;
/// the loop never gives up before it is cancelled.
#[derive(Debug)]
pub struct Elector {
    pool: PgPool,
    instance: String,
    ttl: Duration,
    tx: watch::Sender<Leadership>,
}

impl Elector {
    /// An elector for `cfg.instance`; the receiver starts at [`Leadership::Unknown`].
    pub fn new(pool: PgPool, cfg: LeaseConfig) -> (Self, watch::Receiver<Leadership>) {
        let (tx, rx) = watch::channel(Leadership::Unknown);
        let ttl = cfg.ttl.clamp(MIN_TTL, MAX_TTL);
        let elector = Self {
            pool,
            instance: cfg.instance,
            ttl,
            tx,
        };
        (elector, rx)
    }

    /// Runs until `cancel` fires. A leader then publishes [`Leadership::Unknown`] first (so
    /// its leader-only work stops) and releases the lease (deadline 0) so a follower takes
    /// over at its next poll. Dropping or aborting this future releases nothing: the lease
    /// then lapses within `ttl`. The same holds when `cancel` fires while an acquire is in
    /// flight (it is abandoned, and may have committed); a restart under the same instance
    /// name re-takes such a row at once.
    #[tracing::instrument(name = "lease", skip_all, fields(instance = %self.instance))]
    pub async fn run(self, cancel: CancellationToken) {
        let mut role = Role::NotLeader;
        let mut next = Instant::now();
        loop {
            let wake = match role {
                Role::Leader { hard_deadline, .. } => next.min(hard_deadline),
                Role::NotLeader => next,
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = sleep_until(wake) => {}
            }
            let now = Instant::now();
            if let Role::Leader { hard_deadline, .. } = role {
                if now >= hard_deadline {
                    role = self.step_down("no renew succeeded within ttl - margin");
                    next = now;
                    continue;
                }
            }
            if now < next {
                continue;
            }
            next = now + self.period();
            role = match role {
                Role::Leader {
                    epoch,
                    hard_deadline,
                } => self.renew(epoch, hard_deadline, &mut next).await,
                Role::NotLeader => tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    role = self.acquire(&mut next) => role,
                },
            };
        }
        self.shutdown(role).await;
    }

    /// Poll and renew period.
    fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// How long before the database deadline a leader stops believing it leads.
    fn margin(&self) -> Duration {
        (self.ttl / 4).min(Duration::from_secs(1))
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// One renew, bounded by `ttl / 3` and by the hard deadline.
    async fn renew(&self, epoch: i64, hard_deadline: Instant, next: &mut Instant) -> Role {
        let sent = Instant::now();
        let budget = self
            .period()
            .min(hard_deadline.saturating_duration_since(sent));
        let renewed = sql::renew(&self.pool, &self.instance, epoch, self.ttl_ms());
        match timeout(budget, renewed).await {
            Ok(Ok(true)) => Role::Leader {
                epoch,
                hard_deadline: sent + self.ttl - self.margin(),
            },
            Ok(Ok(false)) => {
                // Learn who holds it now at once.
                *next = Instant::now();
                self.step_down("renew found another holder or epoch")
            }
            Ok(Err(e)) => {
                warn!(error = %e, epoch, "lease renew failed");
                Role::Leader {
                    epoch,
                    hard_deadline,
                }
            }
            Err(_) => {
                warn!(error = %AttemptError::Timeout(budget), epoch, "lease renew timed out");
                Role::Leader {
                    epoch,
                    hard_deadline,
                }
            }
        }
    }

    /// One attempt to take the lease (or learn who holds it).
    async fn acquire(&self, next: &mut Instant) -> Role {
        // The row lock may wait for the old leader's fenced transactions; allow a ttl for
        // that (then retry on the next tick) and a period more for the round trips.
        let lock_timeout_ms = self.ttl_ms();
        let budget = self.ttl + self.period();
        let attempt = sql::acquire(&self.pool, &self.instance, self.ttl_ms(), lock_timeout_ms);
        let outcome = match timeout(budget, attempt).await {
            Ok(r) => r.map_err(AttemptError::from),
            Err(_) => Err(AttemptError::Timeout(budget)),
        };
        match outcome {
            Ok(Acquired::Leader {
                epoch,
                since_ms,
                sent,
            }) => {
                let hard_deadline = sent + self.ttl - self.margin();
                if Instant::now() >= hard_deadline {
                    // The commit came back too late to lead safely; the row still names us,
                    // so the next attempt re-takes it with a fresh epoch.
                    warn!(epoch, "lease taken too slowly to lead; retrying");
                    *next = Instant::now();
                    self.publish(Leadership::Unknown);
                    return Role::NotLeader;
                }
                self.publish(Leadership::Leader { epoch, since_ms });
                info!(instance = %self.instance, epoch, "became leader");
                Role::Leader {
                    epoch,
                    hard_deadline,
                }
            }
            Ok(Acquired::Follower {
                leader,
                since_ms,
                remaining,
            }) => {
                // Poll again right after the lease's deadline if that comes before the tick.
                *next = (*next).min(Instant::now() + remaining + AFTER_DEADLINE);
                let before = self.publish(Leadership::Follower {
                    leader: leader.clone(),
                    since_ms,
                });
                let same =
                    matches!(&before, Leadership::Follower { leader: l, .. } if *l == leader);
                if !same {
                    info!(leader = %leader, "following");
                }
                Role::NotLeader
            }
            Err(e) if e.is_lock_timeout() => {
                debug!("lease row still locked by the old leader's fenced write; retrying");
                self.publish(Leadership::Unknown);
                Role::NotLeader
            }
            Err(e) => {
                warn!(error = %e, "lease acquire failed");
                self.publish(Leadership::Unknown);
                Role::NotLeader
            }
        }
    }

    fn step_down(&self, reason: &'static str) -> Role {
        self.publish(Leadership::Unknown);
        info!(reason, "stepped down");
        Role::NotLeader
    }

    async fn shutdown(&self, role: Role) {
        let Role::Leader { epoch, .. } = role else {
            self.publish(Leadership::Unknown);
            return;
        };
        // Unknown first: leader-only work stops before the row is freed. (A fenced write still
        // open holds the successor off anyway, see `fence`.)
        self.step_down("shutdown");
        let released = sql::release(&self.pool, &self.instance, epoch);
        match timeout(self.period(), released).await {
            Ok(Ok(true)) => info!(epoch, "lease released"),
            Ok(Ok(false)) => info!(epoch, "lease had already passed on"),
            Ok(Err(e)) => warn!(error = %e, epoch, "lease release failed; it lapses within ttl"),
            Err(_) => warn!(
                error = %AttemptError::Timeout(self.period()),
                epoch,
                "lease release timed out; it lapses within ttl"
            ),
        }
    }

    /// Publishes `new` (receivers are woken only on a change); returns the previous value.
    fn publish(&self, new: Leadership) -> Leadership {
        let mut before = None;
        self.tx.send_if_modified(|cur| {
            if *cur == new {
                false
            } else {
                before = Some(std::mem::replace(cur, new));
                true
            }
        });
        before.unwrap_or_else(|| self.tx.borrow().clone())
    }
}
