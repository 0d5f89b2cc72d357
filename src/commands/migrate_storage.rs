//! `keywatch migrate-storage --from sqlite://… --to postgres://…`: moves a SQLite deployment
//! to PostgreSQL with its whole history (#21). Reads no config: both databases are named here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::secret::SecretRef;
use crate::config::{ConfigError, PostgresStorage, ProcessEnv, Storage};
use crate::exit;
use crate::store::{InstanceLock, MigrateError, Migration, Progress, Store, StoreError};

/// Where the target's password comes from, for the messages.
const PASSWORD_HINT: &str =
    "give the password with --to-password-env VAR or --to-password-file PATH";

/// Tables with at least this many rows report their progress on stderr.
const BIG_TABLE: u64 = 10_000;
/// How often a big table's progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Args {
    pub from: String,
    pub to: String,
    pub to_password_env: Option<String>,
    pub to_password_file: Option<PathBuf>,
}

/// Copies, checks and prints the table; 0 when every table matches, 1 otherwise, 78 for a bad
/// argument.
pub async fn run(args: Args) -> anyhow::Result<u8> {
    let (path, target) = match check(&args) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!(
                "keywatch migrate-storage: {}",
                crate::text::clean(&e.to_string())
            );
            return Ok(exit::CONFIG);
        }
    };
    if !path.exists() {
        anyhow::bail!(
            "--from: no database at {}: give the SQLite file `keywatch run` used (its storage.url)",
            path.display()
        );
    }
    // Held until the copy is committed: no `keywatch run` may write to the source meanwhile.
    let _lock = InstanceLock::acquire(&path).map_err(|e| match e {
        StoreError::Locked { lock, .. } => anyhow::anyhow!(
            "{} is in use by a running keywatch (it holds {}): stop `keywatch run` first \
             (e.g. systemctl stop keywatch), then migrate",
            path.display(),
            lock.display()
        ),
        other => anyhow::Error::from(other),
    })?;
    let source = Store::open_existing(&path)
        .await
        .context("the source (--from)")?;
    let url = target.url.clone();
    let target = Store::connect(&Storage::Postgres(target))
        .await
        .context("the target (--to)")?;
    eprintln!("copying {} into {url}", path.display());
    let mut meter = Meter::default();
    let copied = source.copy_into(&target, &mut |p| meter.report(p)).await;
    source.close().await;
    target.close().await;
    let migration = copied.map_err(|e| match e {
        // Its own StoreError, so that a busy database still exits 75.
        MigrateError::Store(e) => anyhow::Error::from(e),
        other => anyhow::Error::from(other),
    })?;
    print!("{}", render(&migration, &path, &url));
    Ok(if migration.matches() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

/// The source file and the target, or the argument that is wrong.
fn check(args: &Args) -> Result<(PathBuf, PostgresStorage), ConfigError> {
    let path = sqlite_file(&args.from)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let password = SecretRef {
        env: args.to_password_env.clone(),
        // Relative to where the command runs (never $CREDENTIALS_DIRECTORY).
        file: args.to_password_file.as_ref().map(|f| cwd.join(f)),
    }
    .resolve_as("--to-password-env", "--to-password-file", &cwd, &ProcessEnv)?;
    let target = PostgresStorage::from_argument("--to", &args.to, password, PASSWORD_HINT)?;
    Ok((path, target))
}

/// The file a `sqlite://` URL names (relative to the working directory).
fn sqlite_file(url: &str) -> Result<PathBuf, ConfigError> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        let scheme = url.split_once(':').map_or("no scheme", |(s, _)| s);
        return Err(ConfigError::invalid(
            "--from",
            format!("must be a SQLite URL, sqlite:///path/keywatch.db (got {scheme:?})"),
        ));
    };
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file == ":memory:" {
        return Err(ConfigError::invalid(
            "--from",
            "names no database file: write sqlite:///path/keywatch.db",
        ));
    }
    Ok(PathBuf::from(file))
}

/// Reports big tables' progress on stderr: rows copied and the rate.
#[derive(Default)]
struct Meter {
    table: String,
    started: Option<Instant>,
    last: Option<Instant>,
}

impl Meter {
    fn report(&mut self, p: Progress<'_>) {
        let now = Instant::now();
        if self.table != p.table {
            self.table = p.table.to_owned();
            self.started = Some(now);
            self.last = Some(now);
        }
        if p.total < BIG_TABLE {
            return;
        }
        let finished = p.done >= p.total;
        if !finished && self.last.is_some_and(|l| now - l < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(now);
        let secs = self.started.map_or(0.0, |s| (now - s).as_secs_f64());
        eprintln!(
            "{}: {} of {} rows copied ({} rows/s)",
            p.table,
            p.done,
            p.total,
            rate(p.done, secs)
        );
    }
}

fn rate(rows: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".to_owned();
    }
    format!("{:.0}", rows as f64 / secs)
}

/// The table (table, rows, checks, ok), the notes and problems, and the final line.
fn render(m: &Migration, from: &Path, to: &str) -> String {
    use std::fmt::Write as _;
    let width = m
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:<width$}  {:>10}  {:>6}  ok\n", "table", "rows", "checks");
    for t in &m.tables {
        let ok = if t.problems.is_empty() {
            "ok"
        } else {
            "DIFFERS"
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:>6}  {ok}",
            t.table, t.rows, t.checks
        );
    }
    for line in m
        .tables
        .iter()
        .flat_map(|t| t.notes.iter().chain(&t.problems))
    {
        let _ = writeln!(out, "{}", crate::text::clean(line));
    }
    let secs = m.elapsed.as_secs_f64();
    let differing: Vec<&str> = m
        .tables
        .iter()
        .filter(|t| !t.problems.is_empty())
        .map(|t| t.table.as_str())
        .collect();
    let floats: usize = m.tables.iter().map(|t| t.floats).sum();
    let close: usize = m.tables.iter().map(|t| t.notes.len()).sum();
    if differing.is_empty() {
        let _ = writeln!(
            out,
            "every table matches ({} float sums equal to the bit, {close} within 1e-9 relative): \
             {} rows copied from {} to {to} in {secs:.1} s ({} rows/s); set storage.url = \
             \"{to}\" and start keywatch run",
            floats - close,
            m.rows,
            from.display(),
            rate(m.rows, secs)
        );
    } else {
        let _ = writeln!(
            out,
            "MISMATCH in {}: nothing was committed, {to} holds no rows",
            differing.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TableReport;

    fn table(name: &str, problems: &[&str], notes: &[&str]) -> TableReport {
        TableReport {
            table: name.to_owned(),
            rows: 12,
            checks: 3,
            floats: 1,
            notes: notes.iter().map(|s| s.to_string()).collect(),
            problems: problems.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_difference_names_its_table_and_column() {
        let m = Migration {
            tables: vec![
                table("alerts", &[], &["alerts.observed: the sums agree within 1e-9 relative (1.1e-16), not to the bit"]),
                table("usage_daily", &["usage_daily.cost_usd: sum 1.5 in the source, 1.25 in the target"], &[]),
            ],
            rows: 24,
            elapsed: Duration::from_secs(2),
        };
        let out = render(
            &m,
            Path::new("/var/lib/keywatch/keywatch.db"),
            "postgres://k@db/k",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["alerts", "12", "3", "ok"]
        );
        assert_eq!(lines[2].split_whitespace().last(), Some("DIFFERS"));
        assert!(
            lines[3].starts_with("alerts.observed: the sums agree"),
            "{out}"
        );
        assert!(
            lines[4].starts_with("usage_daily.cost_usd: sum 1.5"),
            "{out}"
        );
        assert_eq!(
            lines[5],
            "MISMATCH in usage_daily: nothing was committed, postgres://k@db/k holds no rows"
        );
    }

    #[test]
    fn arguments_name_themselves() {
        let e = sqlite_file("postgres://x@y/z").unwrap_err().to_string();
        assert!(
            e.starts_with("--from: ") && e.contains("\"postgres\""),
            "{e}"
        );
        assert!(sqlite_file("sqlite://").is_err());
        assert_eq!(
            sqlite_file("sqlite:///var/lib/kw.db?mode=ro").unwrap(),
            Path::new("/var/lib/kw.db")
        );
        assert_eq!(sqlite_file("sqlite://kw.db").unwrap(), Path::new("kw.db"));
    }

    #[test]
    fn a_command_line_url_is_checked_as_storage_url_is() {
        let hint = "use --to-password-env";
        let arg = |url: &str| {
            PostgresStorage::from_argument("--to", url, None, hint)
                .expect_err("refused")
                .to_string()
        };
        let e = arg("mysql://root:hunter22@db/k");
        assert!(e.starts_with("--to: ") && e.contains("\"mysql\""), "{e}");
        let e = arg("postgres://k:hunter22@db.example/k");
        assert!(e.starts_with("--to: ") && e.contains(hint), "{e}");
        assert!(!e.contains("hunter22"), "the password is echoed: {e}");
        let e = arg("postgres://k@db.example/k?sslmode=disable");
        assert!(e.contains("verify-full"), "{e}");
        let ok = PostgresStorage::from_argument("--to", "postgresql://k@127.0.0.1/k", None, hint);
        assert!(ok.is_ok_and(|pg| pg.instance.is_none() && pg.lease.is_none()));
    }
}
