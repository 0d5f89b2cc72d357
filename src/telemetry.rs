//! Tracing, set up once. Logs go to stderr (journald records it like stdout), so command output
//! such as `history --format csv` stays clean on stdout.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The filter is `RUST_LOG` if set, else `default_level` for
/// keywatch; the HTTP and SQL libraries are held at warnings unless `RUST_LOG` says otherwise.
/// With `json`, one JSON object per line (for log shippers).
pub fn init(default_level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,keywatch={default_level},sqlx=warn,reqwest=warn,hyper=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
