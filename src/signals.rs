//! The daemon's signals, as decisions: SIGTERM and SIGINT stop it (the current step finishes),
//! SIGHUP asks it to re-read its configuration, and the other signals a person or a tool may
//! send by mistake (SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR) are logged and
//! ignored — their default action would kill every task at once. SIGQUIT and SIGKILL keep
//! theirs: they are never sent by mistake.

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
    /// Signals whose default action terminates, received only by mistake: logged, ignored.
    ignored: Vec<(&'static str, tokio::signal::unix::Signal)>,
}

/// The stray signals, by name and number (Linux numbering for those tokio does not name).
#[cfg(unix)]
fn stray() -> Vec<(&'static str, tokio::signal::unix::SignalKind)> {
    use tokio::signal::unix::SignalKind;
    #[allow(unused_mut)]
    let mut list = vec![
        ("SIGUSR1", SignalKind::user_defined1()),
        ("SIGUSR2", SignalKind::user_defined2()),
        ("SIGALRM", SignalKind::alarm()),
        ("SIGIO", SignalKind::io()),
    ];
    #[cfg(target_os = "linux")]
    list.extend([
        ("SIGVTALRM", SignalKind::from_raw(26)),
        ("SIGPROF", SignalKind::from_raw(27)),
        ("SIGPWR", SignalKind::from_raw(30)),
    ]);
    list
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
                    ignored: stray()
                        .into_iter()
                        .map(|(name, kind)| signal(kind).map(|s| (name, s)))
                        .collect::<std::io::Result<_>>()?,
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
                name = stray_received(&mut s.ignored) => {
                    tracing::warn!("{name} received: ignored (SIGHUP re-reads the configuration, SIGTERM stops)");
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

/// The name of the next stray signal received.
#[cfg(unix)]
async fn stray_received(
    ignored: &mut [(&'static str, tokio::signal::unix::Signal)],
) -> &'static str {
    if ignored.is_empty() {
        return std::future::pending().await;
    }
    let waits = ignored.iter_mut().map(|(name, s)| {
        Box::pin(async move {
            s.recv().await;
            *name
        })
    });
    futures_util::future::select_all(waits).await.0
}
