//! `[storage]`: where keywatch keeps its history — a SQLite file (the embedded default) or a
//! PostgreSQL database that several `keywatch run` replicas share (#21).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::schema::RetentionSection;
use super::secret::{pair, Env};
use super::{ConfigError, HumanDuration};

type Result<T> = std::result::Result<T, ConfigError>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `sqlite://PATH` (relative paths resolve against the config file's folder) or
    /// `postgres://USER@HOST[:PORT]/DB[?sslmode=…]`. Default: `keywatch.db` in
    /// `$STATE_DIRECTORY` (systemd `StateDirectory=`) or beside the config.
    pub url: Option<String>,
    /// PostgreSQL only: the password, from an environment variable or a file (never the URL).
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Extension, PostgreSQL only: this replica's name in `/readyz`, `/metrics` and the logs.
    /// Default: the host name and six random hex digits.
    pub instance: Option<String>,
    /// Extension, PostgreSQL only: how long the leader's lease lasts without renewal (1s to
    /// 60s). A follower takes over at most this long plus a third of it after the leader dies.
    /// Default: half of `poll.interval`, between 5s and 30s.
    pub lease: Option<HumanDuration>,
    /// Extension, SQLite only: the largest the database file may grow, in MiB (1 to
    /// 10,000,000). Writes beyond it fail cleanly and are retried, as on a full disk.
    pub max_size_mb: Option<u64>,
    #[serde(default)]
    pub retention: RetentionSection,
}

/// Where the history lives, checked.
#[derive(Debug, Clone)]
pub enum Storage {
    Sqlite {
        path: PathBuf,
        /// `storage.max_size_mb` in bytes.
        max_bytes: Option<u64>,
    },
    Postgres(PostgresStorage),
}

/// A PostgreSQL database. The password is only turned into connect options by the store.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    /// `storage.url` as written (it never holds a password).
    pub url: String,
    pub password: Option<SecretString>,
    pub instance: Option<String>,
    pub lease: Option<Duration>,
}

impl Storage {
    /// What to call the database in messages: the file, or the URL (never a password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => path.display().to_string(),
            Self::Postgres(pg) => pg.url.clone(),
        }
    }

    /// The SQLite file, when that is the backend.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite { path, .. } => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

impl PostgresStorage {
    /// The URL parsed into sqlx's options (validated when the config was checked). TLS with a
    /// verified certificate is the default for every host but this machine.
    pub fn connect_options(&self) -> std::result::Result<PgConnectOptions, sqlx::Error> {
        let mut options = PgConnectOptions::from_str(&self.url)?;
        if !self.url.contains("sslmode=") && !is_local(&options) {
            options = options.ssl_mode(PgSslMode::VerifyFull);
        }
        if let Some(password) = &self.password {
            use secrecy::ExposeSecret;
            options = options.password(password.expose_secret());
        }
        if options.get_application_name().is_none() {
            options = options.application_name("keywatch");
        }
        Ok(options)
    }

    /// A database named on the command line (`migrate-storage --to`), checked as `storage.url`
    /// is; errors name `arg` and never echo the URL (it may hold a password). The password
    /// comes from elsewhere (`password_hint` says where).
    pub fn from_argument(
        arg: &str,
        url: &str,
        password: Option<SecretString>,
        password_hint: &str,
    ) -> Result<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            let scheme = url.split_once(':').map_or("no scheme", |(s, _)| s);
            return Err(ConfigError::invalid(
                arg,
                format!("must be a PostgreSQL URL, postgres://USER@HOST/DB (got {scheme:?})"),
            ));
        }
        check_postgres_url(url, arg, password_hint)?;
        Ok(Self {
            url: url.to_owned(),
            password,
            instance: None,
            lease: None,
        })
    }
}

/// A Unix socket or a loopback address: no network between keywatch and the server.
fn is_local(options: &PgConnectOptions) -> bool {
    options.get_socket().is_some()
        || options.get_host() == "localhost"
        || options.get_host().starts_with('/')
        || options
            .get_host()
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn build(section: &StorageSection, base_dir: &Path, env: &dyn Env) -> Result<Storage> {
    let url = section.url.as_deref();
    if url.is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://")) {
        return postgres(section, base_dir, env).map(Storage::Postgres);
    }
    for (set, key) in [
        (section.password_env.is_some(), "storage.password_env"),
        (section.password_file.is_some(), "storage.password_file"),
        (section.instance.is_some(), "storage.instance"),
        (section.lease.is_some(), "storage.lease"),
    ] {
        if set {
            return Err(ConfigError::invalid(
                key,
                "applies to a PostgreSQL storage.url only; remove it, or set storage.url = \
                 \"postgres://USER@HOST/DB\"",
            ));
        }
    }
    if let Some(mb) = section.max_size_mb {
        if !(1..=10_000_000).contains(&mb) {
            return Err(ConfigError::invalid(
                "storage.max_size_mb",
                format!(
                    "{mb} is out of range: give 1 to 10000000 MiB, or leave it out for no limit"
                ),
            ));
        }
    }
    Ok(Storage::Sqlite {
        path: sqlite_path(url, base_dir, env)?,
        max_bytes: section.max_size_mb.map(|mb| mb * 1_048_576),
    })
}

fn postgres(section: &StorageSection, base_dir: &Path, env: &dyn Env) -> Result<PostgresStorage> {
    let url = section.url.clone().unwrap_or_default();
    check_postgres_url(
        &url,
        "storage.url",
        "set storage.password_env = \"VARIABLE\" or storage.password_file = \"/path\"",
    )?;
    if section.max_size_mb.is_some() {
        return Err(ConfigError::invalid(
            "storage.max_size_mb",
            "applies to a SQLite file only; PostgreSQL's size is the server's to limit",
        ));
    }
    let password = pair(section.password_env.clone(), section.password_file.clone()).resolve(
        "storage.password",
        base_dir,
        env,
    )?;
    if let Some(name) = &section.instance {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(ConfigError::invalid(
                "storage.instance",
                format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
            ));
        }
    }
    let lease = section.lease.map(|d| d.0);
    if lease.is_some_and(|d| d < Duration::from_secs(1) || d > Duration::from_secs(60)) {
        return Err(ConfigError::invalid(
            "storage.lease",
            "must be between 1s and 60s",
        ));
    }
    Ok(PostgresStorage {
        url,
        password,
        instance: section.instance.clone(),
        lease,
    })
}

/// Checks a PostgreSQL URL as `storage.url` (or a command's argument, `key`) is checked: no
/// password in it (`password_hint` says where it goes instead), a database named, and no TLS
/// mode that skips the certificate for a remote host.
fn check_postgres_url(url: &str, key: &str, password_hint: &str) -> Result<()> {
    let invalid = |msg: String| ConfigError::invalid(key, msg);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(format!("is not a URL ({e}); write postgres://USER@HOST/DB")))?;
    if parsed.password().is_some() {
        return Err(invalid(format!(
            "holds a password; secrets are never written in the config file or the URL: \
                 remove it from the URL and {password_hint}"
        )));
    }
    if parsed.query_pairs().any(|(k, _)| k == "password") {
        return Err(invalid(format!(
            "holds a password parameter: remove it and {password_hint}"
        )));
    }
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        invalid(format!(
            "cannot be read as a PostgreSQL URL ({e}); write postgres://USER@HOST[:PORT]/DB"
        ))
    })?;
    if options.get_database().is_none() {
        return Err(invalid(
            "names no database; write postgres://USER@HOST/DB".to_owned(),
        ));
    }
    let weak_tls = matches!(
        options.get_ssl_mode(),
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer | PgSslMode::Require
    );
    if url.contains("sslmode=") && weak_tls && !is_local(&options) {
        return Err(invalid(
            "asks for a TLS mode that does not verify the server's certificate on a remote \
             host; remove sslmode (verify-full is the default) or write sslmode=verify-ca or \
             verify-full (add sslrootcert=/path/ca.pem for a private CA)"
                .to_owned(),
        ));
    }
    Ok(())
}

fn sqlite_path(url: Option<&str>, base_dir: &Path, env: &dyn Env) -> Result<PathBuf> {
    let Some(url) = url else {
        return Ok(match env.var("STATE_DIRECTORY") {
            // systemd may list several directories separated by ':'; the first is ours.
            Some(dir) if !dir.is_empty() => {
                PathBuf::from(dir.split(':').next().unwrap_or(&dir)).join("keywatch.db")
            }
            _ => base_dir.join("keywatch.db"),
        });
    };
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            ConfigError::invalid(
                "storage.url",
                format!(
                    "unsupported database URL {url:?}; write sqlite:///absolute/path.db, \
                     sqlite://relative.db or postgres://USER@HOST/DB"
                ),
            )
        })?;
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file == ":memory:" {
        return Err(ConfigError::invalid(
            "storage.url",
            format!("{url:?} names no database file; keywatch needs a file to keep history"),
        ));
    }
    let file = Path::new(file);
    Ok(if file.is_absolute() {
        file.to_path_buf()
    } else {
        base_dir.join(file)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn load(storage: &str) -> std::result::Result<Config, ConfigError> {
        let env = HashMap::from([
            ("ADMIN".to_owned(), "sk-ant-admin01-TEST".to_owned()),
            ("PGPASS".to_owned(), "correct horse battery".to_owned()),
        ]);
        let text = format!(
            "[storage]\n{storage}\n[[sources]]\nname = \"a\"\nprovider = \"anthropic\"\nadmin_key_env = \"ADMIN\"\n"
        );
        Config::from_str(&text, Path::new("/etc/keywatch/keywatch.toml"), &env)
    }

    fn error(storage: &str) -> String {
        load(storage).expect_err("refused").to_string()
    }

    #[test]
    fn a_postgres_url_takes_its_password_from_the_environment_and_verifies_tls() {
        let c = load(
            "url = \"postgres://keywatch@db.example/keywatch\"\npassword_env = \"PGPASS\"\ninstance = \"host-a\"",
        )
        .unwrap();
        let Storage::Postgres(pg) = &c.storage else {
            panic!("postgres expected")
        };
        assert_eq!(pg.instance.as_deref(), Some("host-a"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("correct horse"), "Debug leaks: {debug}");
        let options = pg.connect_options().unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(options.get_database(), Some("keywatch"));
        let local = load("url = \"postgres://postgres@127.0.0.1:5432/test\"").unwrap();
        let Storage::Postgres(local) = &local.storage else {
            panic!("postgres expected")
        };
        assert!(
            matches!(
                local.connect_options().unwrap().get_ssl_mode(),
                PgSslMode::Prefer
            ),
            "loopback needs no certificate"
        );
    }

    #[test]
    fn postgres_mistakes_name_their_key() {
        let e = error("url = \"postgres://keywatch:hunter22@db.example/keywatch\"");
        assert!(
            e.contains("storage.url") && e.contains("password_env"),
            "{e}"
        );
        assert!(!e.contains("hunter22"), "the password is echoed: {e}");
        let e = error("url = \"postgres://keywatch@db.example/keywatch?sslmode=require\"");
        assert!(
            e.contains("storage.url") && e.contains("verify-full"),
            "{e}"
        );
        let e = error("url = \"postgres://keywatch@db.example\"");
        assert!(e.contains("names no database"), "{e}");
        let e = error("url = \"postgres://k@db.example/k\"\nmax_size_mb = 10");
        assert!(e.contains("storage.max_size_mb"), "{e}");
        let e = error("url = \"postgres://k@db.example/k\"\npassword_env = \"NOPE\"");
        assert!(
            e.contains("storage.password_env") && e.contains("NOPE"),
            "{e}"
        );
        let e = error("url = \"postgres://k@db.example/k\"\ninstance = \"a b\"");
        assert!(e.contains("storage.instance"), "{e}");
        let e = error("url = \"postgres://k@db.example/k\"\nlease = \"5m\"");
        assert!(e.contains("storage.lease"), "{e}");
        let e = error("url = \"sqlite://kw.db\"\npassword_env = \"PGPASS\"");
        assert!(
            e.contains("storage.password_env") && e.contains("PostgreSQL"),
            "{e}"
        );
        let e = error("password = \"x\"");
        assert!(
            e.contains("storage.password") && e.contains("password_env"),
            "{e}"
        );
    }
}
