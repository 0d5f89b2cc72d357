//! The accept loop: HTTP/1.1 with a header-read timeout that also ends idle keep-alive
//! connections, and a cap on connections served at once, kept well below the process's
//! descriptor limit so that the pollers, the SMTP client and the database always have theirs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::replica::Replica;
use crate::store::Store;

/// Descriptors kept free of HTTP connections for the database, the pollers and notifiers.
const RESERVED_FDS: u64 = 128;
/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// Raises the soft descriptor limit to the hard one (where the platform allows) and returns
/// the soft limit now in force, if known.
fn descriptor_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read or raise the descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// `configured`, lowered so that HTTP can never take the descriptors the rest needs.
pub fn connection_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return configured.max(1);
    };
    let room = limit.saturating_sub(RESERVED_FDS).max(limit / 4);
    configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Serves until `cancel` fires, then lets requests in flight finish (for a few seconds).
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    config: Arc<Config>,
    replica: Option<Replica>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let (configured, idle) = config.http.as_ref().map_or(
        (
            crate::config::DEFAULT_MAX_CONNECTIONS as usize,
            crate::config::DEFAULT_IDLE_TIMEOUT,
        ),
        |h| (h.max_connections, h.idle_timeout),
    );
    let fd_limit = descriptor_limit();
    let cap = connection_cap(configured, fd_limit);
    if cap < configured {
        tracing::warn!(
            configured,
            cap,
            fd_limit,
            "http.max_connections lowered to keep descriptors for the database and the pollers; raise the descriptor limit (LimitNOFILE=) to serve more"
        );
    }
    let app = super::router_for(store, config, replica);
    let slots = Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .keep_alive(true);
    let mut warned: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: the
                    // listener itself is fine; wait a moment instead of spinning.
                    tracing::warn!(error = %e, "http: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                warned = Some(Instant::now());
                tracing::warn!(
                    cap,
                    "http: {cap} connections are open (http.max_connections); new ones are closed until some end"
                );
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "http: connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("http: requests still in flight at shutdown were cut");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::connection_cap;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(connection_cap(256, Some(20_000)), 256);
        assert_eq!(connection_cap(256, Some(1_024)), 256);
        assert_eq!(connection_cap(256, Some(256)), 128);
        assert_eq!(connection_cap(256, Some(100)), 25);
        assert_eq!(connection_cap(256, Some(0)), 1);
        assert_eq!(connection_cap(256, None), 256);
    }
}
