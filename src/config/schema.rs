//! The TOML schema of docs/contract.md, as strict serde structs: unknown keys are errors, defaults
//! live in code. Parsing is step one; `super::check` sense-checks the parsed values.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use super::storage::StorageSection;
use crate::detect::SpikeConfig;
use crate::model::parse_bounded;
pub use crate::model::{HumanDuration, Severity};

/// The resolution usage is stored and judged at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum BucketWidth {
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
}

impl BucketWidth {
    /// Every width usage can be stored at.
    pub const ALL: [BucketWidth; 3] = [Self::Minute, Self::Hour, Self::Day];

    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    /// The provider's spelling, e.g. `1h`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "1m",
            Self::Hour => "1h",
            Self::Day => "1d",
        }
    }

    /// The largest page the providers accept for this width (buckets per page).
    pub fn max_page(self) -> u32 {
        match self {
            Self::Minute => 1_440,
            Self::Hour => 168,
            Self::Day => 31,
        }
    }

    pub fn from_seconds(secs: i64) -> Option<Self> {
        match secs {
            60 => Some(Self::Minute),
            3_600 => Some(Self::Hour),
            86_400 => Some(Self::Day),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub poll: PollSection,
    pub http: Option<HttpSection>,
    #[serde(default)]
    pub sources: Vec<SourceSection>,
    #[serde(default)]
    pub prices: BTreeMap<String, PriceSection>,
    #[serde(default)]
    pub detect: DetectSection,
    #[serde(default)]
    pub rotation: RotationSection,
    #[serde(default)]
    pub budgets: Vec<BudgetSection>,
    #[serde(default)]
    pub notifiers: Vec<NotifierSection>,
    #[serde(default)]
    pub delivery: DeliverySection,
    #[serde(default)]
    pub digests: Vec<DigestSection>,
    #[serde(default)]
    pub containment: Vec<ContainmentSection>,
}

/// `[[containment]]`: an opt-in policy that changes a key at its provider when one of `rules`
/// fires for it (#18).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainmentSection {
    pub name: String,
    pub source: Option<String>,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub workspace_id: Option<String>,
    pub rules: Option<Vec<String>>,
    pub action: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestSchedule {
    Daily,
    Weekly,
}

/// `[[digests]]`: a spend summary sent on a schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSection {
    pub name: String,
    pub schedule: DigestSchedule,
    /// Local time of day, `HH:MM`; weekly digests go out on Mondays. Default "08:00".
    #[serde(default = "default_digest_at")]
    pub at: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub notifiers: Vec<String>,
}

fn default_digest_at() -> String {
    "08:00".to_owned()
}

/// Extension: `[delivery]`, how long the outbox keeps trying.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    /// A notification not delivered within this age is given up (logged at error). 1m to 30d;
    /// default 24h.
    pub expire_after: HumanDuration,
    /// Extension: how long one delivery attempt (an SMTP session, a webhook POST) may take
    /// before it counts as failed and is retried later. 1s to 5m; default 20s.
    pub timeout: HumanDuration,
}

impl Default for DeliverySection {
    fn default() -> Self {
        Self {
            expire_after: HumanDuration(Duration::from_secs(86_400)),
            timeout: HumanDuration(Duration::from_secs(20)),
        }
    }
}

/// How long something is kept: a duration, or `"forever"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    For(Duration),
    Forever,
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "forever" {
            return Ok(Self::Forever);
        }
        parse_bounded(&text).map(Self::For).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid retention {text:?} ({e}); write a duration such as \"14d\" or \"forever\""
            ))
        })
    }
}

/// `[storage.retention]`: how long usage is kept per bucket width, and alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Default 14 days when `poll.bucket_width = "1m"`; otherwise the minute stream is only the
    /// recent one of the fast spike check and is kept 2 days.
    #[serde(rename = "1m")]
    pub minute: Option<Keep>,
    #[serde(rename = "1h")]
    pub hour: Keep,
    #[serde(rename = "1d")]
    pub day: Keep,
    /// Resolved alerts, their state changes and finished deliveries.
    pub alerts: Keep,
}

impl Default for RetentionSection {
    fn default() -> Self {
        let days = |n: u64| Keep::For(Duration::from_secs(n * 86_400));
        Self {
            minute: None,
            hour: days(400),
            day: Keep::Forever,
            alerts: days(400),
        }
    }
}

impl RetentionSection {
    /// How long usage of `width` is kept.
    pub fn for_width(&self, width: BucketWidth) -> Keep {
        match width {
            BucketWidth::Minute => self
                .minute
                .unwrap_or(Keep::For(Duration::from_secs(14 * 86_400))),
            BucketWidth::Hour => self.hour,
            BucketWidth::Day => self.day,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollSection {
    pub interval: HumanDuration,
    pub bucket_width: BucketWidth,
    pub lookback: HumanDuration,
    pub settle: HumanDuration,
    /// Extension: the timeout of one HTTP request to a provider.
    pub timeout: HumanDuration,
    /// Extension: retries of one failing request within a poll (429, 5xx, timeouts, bad bodies).
    pub retries: u32,
    /// Extension: the first retry's delay; doubled on each further retry, with jitter.
    pub retry_backoff: HumanDuration,
    /// Extension: the largest response body read from a provider, in MiB (1 to 512). A usage
    /// page over it is asked again with fewer buckets; other listings fail the poll.
    pub max_page_mib: u32,
    /// Extension: how far back usage is read again now and then, so rows a provider publishes
    /// after `settle` still land (#17). `0s` turns the re-read off. At most 7 days.
    pub late_window: HumanDuration,
    /// Extension: how often that re-read happens (at least `interval`, at most 7 days).
    pub late_every: HumanDuration,
    /// How far back the recent minute stream is read each poll, when the fast spike check is on
    /// (`[detect.spike.fast]` with `bucket_width = "1h"`). Set from `detect.spike.fast.lookback`
    /// when the configuration is checked; not a key of `[poll]`.
    #[serde(skip)]
    pub recent: Option<HumanDuration>,
}

impl Default for PollSection {
    fn default() -> Self {
        Self {
            interval: HumanDuration(Duration::from_secs(120)),
            bucket_width: BucketWidth::Hour,
            lookback: HumanDuration(Duration::from_secs(8 * 86_400)),
            settle: HumanDuration(Duration::from_secs(600)),
            timeout: HumanDuration(Duration::from_secs(30)),
            retries: 3,
            retry_backoff: HumanDuration(Duration::from_secs(1)),
            max_page_mib: 32,
            late_window: HumanDuration(Duration::from_secs(48 * 3_600)),
            late_every: HumanDuration(Duration::from_secs(6 * 3_600)),
            recent: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: String,
    /// Extension: the IANA time zone the dashboard shows times in (UTC on hover). Default UTC.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Extension: host names served besides the listen address (e.g. a reverse proxy's name).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Extension: connections served at once, 1 to 10,000. Default 256.
    pub max_connections: Option<u32>,
    /// Extension: how long a connection may wait before sending a complete request head
    /// (idle keep-alive included), 1s to 10m. Default 30s.
    pub idle_timeout: Option<HumanDuration>,
    /// Where people reach the dashboard (e.g. behind a reverse proxy): links in every
    /// notification point here. Its host is served as if listed in `allowed_hosts`.
    pub external_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Anthropic,
    Openai,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Openai => "openai",
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Anthropic => "https://api.anthropic.com",
            Self::Openai => "https://api.openai.com",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    pub name: String,
    pub provider: Provider,
    pub admin_key_env: Option<String>,
    pub admin_key_file: Option<PathBuf>,
    pub base_url: Option<String>,
}

/// USD per million tokens. `input` and `output` are required; the cache classes default to
/// Anthropic's multipliers of the input price (5-minute write 1.25x, 1-hour write 2x, read 0.1x).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSection {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: Option<f64>,
    pub cache_write_1h: Option<f64>,
    pub cache_read: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSection {
    #[serde(default)]
    pub spike: SpikeConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationSection {
    /// Active keys older than this many days alert once. 1 to 3650; default 90.
    pub max_key_age_days: u32,
}

impl Default for RotationSection {
    fn default() -> Self {
        Self {
            max_key_age_days: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    pub name: String,
    /// Extension: only this source's spend (default: every source).
    pub source: Option<String>,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub workspace_id: Option<String>,
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<u32>,
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_thresholds() -> Vec<u32> {
    vec![50, 75, 90, 100]
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    None,
    #[default]
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
    Pagerduty,
    /// Alertmanager's API v2: `url` is the Alertmanager's base URL.
    Alertmanager,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotifierSection {
    Email(EmailSection),
    Webhook(WebhookSection),
}

impl NotifierSection {
    pub fn name(&self) -> &str {
        match self {
            Self::Email(e) => &e.name,
            Self::Webhook(w) => &w.name,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    pub name: String,
    pub smtp_host: String,
    /// Default by `tls`: 587 for starttls, 465 for tls, 25 for none.
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    pub username_env: Option<String>,
    pub username_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub min_severity: Severity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub name: String,
    /// The receiver. Extension: `url_env`/`url_file` instead, for URLs that embed a token
    /// (Slack incoming webhooks).
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub format: WebhookFormat,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub routing_key_env: Option<String>,
    pub routing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub min_severity: Severity,
    /// Extension, `format = "alertmanager"` only: every Alertmanager of an HA cluster, instead
    /// of `url`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Extension, `format = "alertmanager"` only: how often firing alerts are posted again,
    /// 1s to 10m. Default 1m.
    pub resend_every: Option<HumanDuration>,
    /// Extension, `format = "alertmanager"` only: the `runbook_url` annotation; `{rule}` is
    /// replaced by the alert's rule.
    pub runbook_url: Option<String>,
}
