//! The SQLite file itself: refusing a file that is not keywatch's, and the lock that keeps a
//! second `keywatch run` off the same file.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;

use super::{StoreError, BUSY_TIMEOUT};

/// The path a database is locked under: symlinks and relative parts resolved, so two names for
/// one file take one lock. A file not created yet resolves through its folder.
fn canonical(database: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(database) {
        return path;
    }
    match (database.parent(), database.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| database.to_path_buf())
        }
        _ => database.to_path_buf(),
    }
}

/// Held by the process that polls and delivers for a database (`keywatch run`): a second one
/// would send every notification twice. An advisory lock on `<database>.lock` next to the real
/// file (through any symlink), released by the kernel when the process ends, however it ends.
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
}

impl InstanceLock {
    pub fn acquire(database: &Path) -> Result<Self, StoreError> {
        let mut name = canonical(database).into_os_string();
        name.push(".lock");
        let lock = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| StoreError::Foreign {
                path: lock.display().to_string(),
                reason: format!("cannot be created or opened ({e})"),
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: database.to_path_buf(),
                lock,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Foreign {
                path: lock.display().to_string(),
                reason: format!("cannot be locked ({e})"),
            }),
        }
    }
}

/// Refuses a file that is not keywatch's before anything writes to it: not an SQLite database
/// at all, unreadable as one, or another application's (tables but no keywatch migrations).
/// The check reads through its own read-only connection, so even the switch to WAL waits.
pub(super) async fn check_is_ours(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let foreign = |reason: String| StoreError::Foreign {
        path: path.display().to_string(),
        reason,
    };
    let mut head = [0u8; 16];
    let n = match std::fs::File::open(path) {
        Ok(mut f) => f.read(&mut head).unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(foreign(format!("cannot be read ({e})"))),
    };
    if n == 0 {
        return Ok(());
    }
    if &head[..n] == b"SQLite format 3\0" {
        return check_tables(path).await;
    }
    let shown: String = String::from_utf8_lossy(&head[..n])
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '.'
            }
        })
        .collect();
    Err(foreign(format!(
        "is not an SQLite database (it starts with {shown:?})"
    )))
}

async fn check_tables(path: &Path) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions, Connection};
    let unreadable = |e: sqlx::Error| StoreError::Foreign {
        path: path.display().to_string(),
        reason: format!("cannot be read as a database ({e})"),
    };
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await
        .map_err(unreadable)?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(unreadable)?;
    let _ = conn.close().await;
    ours_or_foreign(&path.display().to_string(), &tables)
}

/// The verdict on a database holding `tables` (either backend): empty, or with keywatch's
/// migrations, is ours; anything else is another application's and is refused, naming a few.
pub(super) fn ours_or_foreign(at: &str, tables: &[String]) -> Result<(), StoreError> {
    if tables.is_empty() || tables.iter().any(|t| t == "_sqlx_migrations") {
        return Ok(());
    }
    let mut listed = tables
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if tables.len() > 5 {
        listed.push_str(", …");
    }
    Err(StoreError::Foreign {
        path: at.to_owned(),
        reason: format!("is another application's database (tables: {listed})"),
    })
}
