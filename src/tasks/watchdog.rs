//! systemd's watchdog.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Pings systemd's watchdog every `every` while the runtime is responsive. A hung runtime (the
/// thing the watchdog exists to catch) stops the pings and systemd restarts the service.
pub struct WatchdogTask {
    pub every: Duration,
}

impl WatchdogTask {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
                tracing::warn!(error = %e, "could not ping the systemd watchdog");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }
}
