//! This process's place among `keywatch run` replicas. On PostgreSQL an elector holds or follows
//! the lease ([`crate::lease`]) and [`Replica`] carries its name and verdict to the tasks, the
//! HTTP endpoint and the metrics; on SQLite there is no election (the one process leads).

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Storage};
use crate::lease::{self, Elector, Leadership, LeaseConfig};

/// A PostgreSQL replica: its instance name, what its elector believes, and the lease's ttl.
#[derive(Debug, Clone)]
pub struct Replica {
    pub instance: String,
    pub role: watch::Receiver<Leadership>,
    pub ttl: Duration,
}

impl Replica {
    /// Starts the elector on its own two connections (so renewals never queue behind the
    /// dashboard's reads) on `tracker`, stopped by `cancel`. `None` on SQLite, where this
    /// process leads and `keywatch_leader{instance=HOST}` is 1 from the start.
    pub async fn start(
        config: &Config,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Option<Self>> {
        let Storage::Postgres(pg) = &config.storage else {
            crate::metrics::leader(&lease::host_name(), true);
            return Ok(None);
        };
        let pool = crate::store::pg_pool(pg, 2).await?;
        let instance = pg.instance.clone().unwrap_or_else(lease::default_instance);
        let ttl = pg
            .lease
            .unwrap_or_else(|| lease::ttl_for_poll_interval(config.poll.interval.0));
        tracing::info!(%instance, ?ttl, "joining the leader election");
        let (elector, role) = Elector::new(
            pool,
            LeaseConfig {
                instance: instance.clone(),
                ttl,
            },
        );
        crate::metrics::leader(&instance, false);
        tracker.spawn(elector.run(cancel.clone()));
        tracker.spawn(mirror(role.clone(), instance.clone()));
        Ok(Some(Self {
            instance,
            role,
            ttl,
        }))
    }
}

/// Keeps `keywatch_leader{instance}` equal to the elector's verdict until it stops.
async fn mirror(mut role: watch::Receiver<Leadership>, instance: String) {
    while role.changed().await.is_ok() {
        let leading = role.borrow_and_update().is_leader();
        crate::metrics::leader(&instance, leading);
    }
    crate::metrics::leader(&instance, false);
}
