//! The daemon's signals, as decisions: SIGTERM and SIGINT stop it (the current step finishes),
//! SIGHUP asks it to re-read its configuration, and the other signals a person or a tool may
//! send by mistake (SIGUSR1, SIGUSR2) are logged and ignored — their default action would kill
//! every task at once.

/// What a received signal asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: finish the current step and exit 0.
    Stop,
    /// SIGHUP: re-read the configuration and restart the tasks with it if it is valid.
    Reload,
}

/// The installed signal handlers. Install them before anything long-running starts: until
/// then a stray signal takes its default action (for SIGHUP and SIGUSR1: terminate).
pub struct Signals {
    #[cfg(unix)]
    unix: UnixSignals,
}

#[cfg(unix)]
struct UnixSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside a tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                unix: UnixSignals {
                    term: signal(SignalKind::terminate())?,
                    int: signal(SignalKind::interrupt())?,
                    hup: signal(SignalKind::hangup())?,
                    usr1: signal(SignalKind::user_defined1())?,
                    usr2: signal(SignalKind::user_defined2())?,
                },
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next signal that asks for something; ignored ones are logged here.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        loop {
            let s = &mut self.unix;
            tokio::select! {
                _ = s.term.recv() => {
                    tracing::info!("SIGTERM received");
                    return Signal::Stop;
                }
                _ = s.int.recv() => {
                    tracing::info!("SIGINT received");
                    return Signal::Stop;
                }
                _ = s.hup.recv() => {
                    tracing::info!("SIGHUP received: re-reading the configuration");
                    return Signal::Reload;
                }
                _ = s.usr1.recv() => {
                    tracing::warn!("SIGUSR1 received: ignored (SIGHUP re-reads the configuration, SIGTERM stops)");
                }
                _ = s.usr2.recv() => {
                    tracing::warn!("SIGUSR2 received: ignored (SIGHUP re-reads the configuration, SIGTERM stops)");
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}
