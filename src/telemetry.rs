//! Tracing, set up once. Logs go to stderr (journald records it like stdout), so command output
//! such as `history --format csv` stays clean on stdout.
//!
//! Every record passes through [`SafeStderr`] on its way out: configured secrets are redacted
//! (whatever quoted them: a provider's error body, a proxy, a receiver's answer) and control
//! characters in it are escaped, so outside text in a field (a model name with a newline, an
//! ESC sequence in a key name) can neither forge a log line nor drive the terminal. For that
//! reason the text format has no colours: the writer cannot tell the formatter's escape
//! sequences from injected ones.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The filter is `RUST_LOG` if set, else `default_level` for
/// keywatch; the HTTP and SQL libraries are held at warnings unless `RUST_LOG` says otherwise.
/// With `json`, one JSON object per line (for log shippers).
pub fn init(default_level: &str, json: bool) {
    init_with(default_level, "warn", json);
}

/// As [`init`], with sqlx held at `sql_level` unless `RUST_LOG` says otherwise (`error` for
/// `migrate-storage`, whose long statements would each be logged as slow, with their text).
pub fn init_with(default_level: &str, sql_level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,keywatch={default_level},sqlx={sql_level},reqwest=warn,hyper=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SafeStderr { json })
        .with_target(false)
        .with_ansi(false);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}

/// Standard error, one record at a time, redacted and with control characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct SafeStderr {
    /// Records are JSON objects: escapes must be JSON escapes.
    pub json: bool,
}

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = SafeStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl SafeStderr {
    /// One formatted record (its final newline kept) as it may be written.
    pub fn neutralise(&self, record: &str) -> String {
        let (body, end) = match record.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (record, ""),
        };
        let body = crate::config::secret::redact(body);
        let mut out = if self.json {
            // serde_json already escaped C0; what it leaves raw (DEL, C1, bidi) gets \uXXXX.
            let mut o = String::with_capacity(body.len());
            for c in body.chars() {
                if crate::text::is_unsafe(c) {
                    o.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    o.push(c);
                }
            }
            o
        } else {
            crate::text::clean(&body).into_owned()
        };
        out.push_str(end);
        out
    }
}

impl Write for SafeStderr {
    /// The formatter hands over each record whole, in one call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let safe = self.neutralise(&String::from_utf8_lossy(buf));
        io::stderr().lock().write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::SafeStderr;

    #[test]
    fn a_record_cannot_forge_a_line_or_drive_the_terminal() {
        let text = SafeStderr { json: false };
        assert_eq!(
            text.neutralise("WARN model=\"x\nINFO forged\u{1b}[2J\" ok\n"),
            "WARN model=\"x\\nINFO forged\\x1b[2J\" ok\n"
        );
        let json = SafeStderr { json: true };
        let out = json.neutralise("{\"model\":\"a\u{202e}b\u{7f}\"}\n");
        assert_eq!(out, "{\"model\":\"a\\u202eb\\u007f\"}\n");
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    }
}
