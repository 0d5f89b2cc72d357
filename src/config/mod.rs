//! The configuration: a strict TOML file (`schema`), sense-checked (`check`), with secrets
//! resolved from the environment or files (`secret`). Errors name the key and exit with 78.

mod check;
mod http;
mod locate;
pub use http::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
mod schema;
pub mod secret;
mod secret_file;
mod storage;
pub use storage::{PostgresStorage, Storage};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use secrecy::SecretString;

pub use schema::{
    BucketWidth, DeliverySection as DeliveryConfig, DigestSchedule, HumanDuration, Keep,
    PollSection as PollConfig, Provider, RetentionSection as RetentionConfig,
    RotationSection as RotationConfig, Severity, TlsMode, WebhookFormat,
};
pub use secret::{Env, ProcessEnv};

use crate::detect::SpikeConfig;
use crate::prices::PriceTable;

/// A configuration problem. Every variant names the key (or file) so the operator knows what to
/// change; the process exits with code 78 (EX_CONFIG).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (give the path with --config or $KEYWATCH_CONFIG)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{}{key}: {message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Invalid {
        key: String,
        message: String,
        /// Where the key is written, when it is (a missing key has no line).
        line: Option<usize>,
    },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
            line: None,
        }
    }
}

/// The validated configuration, secrets resolved.
#[derive(Debug)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    /// Where the history lives: a SQLite file or a PostgreSQL database.
    pub storage: Storage,
    pub retention: RetentionConfig,
    pub poll: PollConfig,
    pub http: Option<HttpConfig>,
    pub sources: Vec<SourceConfig>,
    pub prices: PriceTable,
    pub spike: SpikeConfig,
    pub rotation: RotationConfig,
    pub budgets: Vec<Budget>,
    pub notifiers: Vec<Notifier>,
    pub delivery: DeliveryConfig,
    pub digests: Vec<Digest>,
    /// Containment policies, in the order written (the first that matches an alert acts).
    pub containment: Vec<ContainmentPolicy>,
    /// Values that parse and are allowed but are probably not what the operator meant.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The zone the dashboard shows times in.
    pub timezone: Tz,
    pub token: Option<SecretString>,
    /// Host names (lowercase, no port) served besides the listen address and, on loopback,
    /// `localhost`: any other `Host` header is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// A connection that sends no complete request head for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// `http.external_url` without a trailing slash: the base of the links in notifications.
    pub external_url: Option<String>,
}

/// One provider account to poll.
#[derive(Debug)]
pub struct SourceConfig {
    /// Unique; appears in alerts and in the store.
    pub name: String,
    pub provider: Provider,
    /// The organisation admin key. Exposed only where the request header is built.
    pub admin_key: SecretString,
    /// Where the admin key comes from (`env $X` / `file P`), for summaries.
    pub admin_key_origin: String,
    pub base_url: reqwest::Url,
}

#[derive(Debug, Clone)]
pub enum BudgetScope {
    Organisation,
    Key(String),
    KeyName(glob::Pattern),
    Workspace(String),
}

/// What a containment policy does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Set the key inactive at its provider (Anthropic).
    Deactivate,
    /// Record what would be done; call nothing.
    DryRun,
}

/// `[[containment]]`, checked.
#[derive(Debug, Clone)]
pub struct ContainmentPolicy {
    pub name: String,
    /// Only this source's keys; `None` for every source.
    pub source: Option<String>,
    /// Never the whole organisation.
    pub scope: BudgetScope,
    pub rules: Vec<crate::model::Rule>,
    pub action: PolicyAction,
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub name: String,
    /// Only this source's spend; `None` for every source.
    pub source: Option<String>,
    pub scope: BudgetScope,
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    /// Percentages, ascending.
    pub thresholds: Vec<u32>,
    pub timezone: Tz,
}

/// A scheduled spend digest.
#[derive(Debug, Clone)]
pub struct Digest {
    pub name: String,
    pub schedule: DigestSchedule,
    /// Local time of day it goes out.
    pub at: chrono::NaiveTime,
    pub timezone: Tz,
    /// Names of `[[notifiers]]` entries.
    pub notifiers: Vec<String>,
}

#[derive(Debug)]
pub enum Notifier {
    Email(EmailNotifier),
    Webhook(WebhookNotifier),
}

impl Notifier {
    pub fn name(&self) -> &str {
        match self {
            Self::Email(e) => &e.name,
            Self::Webhook(w) => &w.name,
        }
    }

    pub fn min_severity(&self) -> Severity {
        match self {
            Self::Email(e) => e.min_severity,
            Self::Webhook(w) => w.min_severity,
        }
    }
}

#[derive(Debug)]
pub struct EmailNotifier {
    pub name: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: TlsMode,
    pub username: Option<SecretString>,
    pub password: Option<SecretString>,
    pub from: String,
    pub to: Vec<String>,
    pub min_severity: Severity,
    /// `delivery.timeout`: one SMTP session.
    pub timeout: std::time::Duration,
}

#[derive(Debug)]
pub struct WebhookNotifier {
    pub name: String,
    /// Secret because Slack-style URLs embed a token.
    pub url: SecretString,
    /// What summaries print for the URL: the literal URL, or where it comes from.
    pub url_display: String,
    pub format: WebhookFormat,
    pub secret: Option<SecretString>,
    pub routing_key: Option<SecretString>,
    pub min_severity: Severity,
    /// `delivery.timeout`: one POST.
    pub timeout: std::time::Duration,
    /// Set for `format = "alertmanager"`.
    pub alertmanager: Option<AlertmanagerOptions>,
}

/// What an `alertmanager` notifier needs beyond a webhook's settings.
#[derive(Debug)]
pub struct AlertmanagerOptions {
    /// Every Alertmanager's base URL (no trailing slash); `url` is the first.
    pub urls: Vec<SecretString>,
    /// How often firing alerts are posted again; a firing alert is posted valid for four
    /// times this, so Alertmanager ends it if keywatch stops posting.
    pub resend_every: std::time::Duration,
    /// The `runbook_url` annotation, `{rule}` replaced.
    pub runbook_url: Option<String>,
}

impl Config {
    /// `http.external_url`: the base of the links in notifications, if configured.
    pub fn external_url(&self) -> Option<&str> {
        self.http.as_ref().and_then(|h| h.external_url.as_deref())
    }

    /// The time zones whose daily usage the store rolls up: UTC (the API's days), the
    /// dashboard's, every budget's and every digest's.
    pub fn rollup_zones(&self) -> Vec<chrono_tz::Tz> {
        let mut zones = vec![chrono_tz::Tz::UTC];
        zones.extend(self.http.as_ref().map(|h| h.timezone));
        zones.extend(self.budgets.iter().map(|b| b.timezone));
        zones.extend(self.digests.iter().map(|d| d.timezone));
        zones.sort_by_key(|z| z.name());
        zones.dedup();
        zones
    }

    /// Reads, parses and checks the file at `path`, resolving secrets from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &ProcessEnv)
    }

    /// As [`Config::load`] for the commands that only read the database: secrets that are not
    /// set are left out instead of refused (such commands never use one).
    pub fn load_read_only(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &secret::ReadOnlyEnv(ProcessEnv))
    }

    fn load_with(path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_str(&text, path, env)?;
        for w in permission_warnings(path) {
            config.warnings.push(w);
        }
        Ok(config)
    }

    /// Parses and checks config text as if read from `path` (relative paths resolve against
    /// its folder), resolving secrets through `env`.
    pub fn from_str(text: &str, path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        parse(text, path)
            .and_then(|raw| check::build(raw, path, &base_dir, env))
            .map_err(|e| match e {
                ConfigError::Invalid { key, message, .. } => ConfigError::Invalid {
                    line: locate::line_of(text, &key),
                    key,
                    message,
                },
                other => other,
            })
    }
}

/// Step one: TOML to the raw schema. Literal secrets are refused before serde sees them, so the
/// message can say what to write instead.
fn parse(text: &str, path: &Path) -> Result<schema::RawConfig, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let value: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| parse_error(describe_toml_error(text, &e, None)))?;
    if let Some(key) = find_literal_secret(&value, "") {
        let name = key.rsplit('.').next().unwrap_or(&key).to_owned();
        return Err(ConfigError::invalid(
            key,
            format!(
                "secrets are never written in the config file; use {name}_env = \"VARIABLE\" \
                 (an environment variable) or {name}_file = \"/path\" (a file, e.g. a systemd \
                 credential) instead"
            ),
        ));
    }
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        parse_error(describe_toml_error(text, e.inner(), Some(&key)))
    })
}

/// One line: `line N: key: message`, without toml's multi-line source excerpt.
fn describe_toml_error(text: &str, e: &toml::de::Error, key: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(span) = e.span() {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        out.push_str(&format!("line {line}: "));
    }
    if let Some(key) = key.filter(|k| !k.is_empty() && *k != ".") {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(e.message().trim());
    out
}

fn find_literal_secret(table: &toml::Table, prefix: &str) -> Option<String> {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if secret::LITERAL_SECRET_KEYS.contains(&k.as_str()) && !v.is_table() {
            return Some(path);
        }
        let found = match v {
            toml::Value::Table(t) => find_literal_secret(t, &path),
            toml::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                item.as_table()
                    .and_then(|t| find_literal_secret(t, &format!("{path}[{i}]")))
            }),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(unix)]
fn permission_warnings(path: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let mode = meta.permissions().mode();
    let mut out = Vec::new();
    if mode & 0o002 != 0 {
        out.push(format!(
            "{} is writable by every user: anyone on this machine can redirect alerts (chmod o-w)",
            path.display()
        ));
    }
    if mode & 0o004 != 0 {
        out.push(format!(
            "{} is readable by every user: it holds no secrets, but it shows where they are kept and where alerts go (chmod o-r, e.g. 0640 root:keywatch)",
            path.display()
        ));
    }
    out
}

#[cfg(not(unix))]
fn permission_warnings(_: &Path) -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests;
