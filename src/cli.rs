//! The command line (docs/contract.md, "Command line").

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The version with the commit it was built from, e.g. `0.1.0 (3f2a1c9e0b7d)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KEYWATCH_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "keywatch",
    version = VERSION,
    about = "Watches each LLM API key's usage and spend, and alerts on leaks, spikes and budgets"
)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        env = "KEYWATCH_CONFIG",
        default_value = "keywatch.toml"
    )]
    pub config: PathBuf,
    /// Log lines as human-readable text, or as JSON objects for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll, detect and notify every poll.interval until SIGTERM/SIGINT.
    Run {
        /// One full cycle, then exit (0 all done; 75 when something failed and was kept).
        #[arg(long)]
        once: bool,
    },
    /// Parse and sense-check the config; print a summary without secrets.
    CheckConfig,
    /// A key's stored usage buckets: start, model, token classes, cost.
    History {
        /// The key id, e.g. apikey_01…, or "workbench" for Console usage without a key.
        #[arg(long)]
        key: String,
        /// Only this source's rows (default: every source that has the key).
        #[arg(long)]
        source: Option<String>,
        /// Start: a duration ago ("48h", "7d") or an RFC 3339 time, at most 400 days back.
        #[arg(long, default_value = "48h", value_parser = parse_time)]
        since: TimeArg,
        /// End (exclusive): a duration ago or an RFC 3339 time; default now.
        #[arg(long, value_parser = parse_time)]
        until: Option<TimeArg>,
        /// table (for people), csv (for spreadsheets) or json (for scripts).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Open alerts (all with --all), newest first.
    Alerts {
        /// Resolved alerts too.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: AlertFilter,
        /// table (for people, 80 columns) or json (an array of alert objects, for scripts).
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Suppress notifications (not detection) for a key or a rule until the silence expires.
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["key", "rule"])))]
    Silence {
        /// The key id to silence.
        #[arg(long)]
        key: Option<String>,
        // The help names every rule of `Rule::ALL` (rule_help).
        #[arg(long, value_parser = parse_rule, help = rule_help())]
        rule: Option<String>,
        /// How long, e.g. "2h", "3d".
        #[arg(long = "for", default_value = "2h", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Why: recorded with the silence.
        #[arg(long)]
        reason: String,
    },
    /// List silences, active and past.
    Silences {
        /// table (for people) or json (an array of silence objects, for scripts).
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// End a silence now.
    Unsilence {
        /// The silence id, as `keywatch silences` shows it.
        id: String,
    },
    /// Spend per period, grouped by key, workspace, model and/or source.
    Report {
        /// day, week (Monday to Sunday) or month.
        #[arg(long, value_enum, default_value_t = crate::report::PeriodKind::Day)]
        period: crate::report::PeriodKind,
        /// IANA time zone of the period boundaries (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// First period: the one containing this time (a duration ago or RFC 3339, at most 3650
        /// days back).
        #[arg(long, value_parser = crate::window::parse_report_time)]
        since: Option<TimeArg>,
        /// End (exclusive): a duration ago or RFC 3339; default now.
        #[arg(long, value_parser = crate::window::parse_report_time)]
        until: Option<TimeArg>,
        /// The last N periods up to now (default 7 days, 4 weeks or 3 months; at most 400 days,
        /// 260 weeks or 120 months).
        #[arg(long, conflicts_with = "since")]
        last: Option<u32>,
        /// Per budget: month-to-date spend, limit, month-end projection and when the limit is
        /// crossed at the current pace (instead of the spend rows).
        #[arg(long)]
        forecast: bool,
        /// Per source and UTC day: the estimate against the provider's own billed figures.
        #[arg(long, conflicts_with = "forecast")]
        reconcile: bool,
        /// With --reconcile: flag days whose difference exceeds this many percent.
        #[arg(long, default_value_t = 5.0)]
        tolerance: f64,
        /// Group by any of key, workspace, model, tier, source (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "key")]
        by: Vec<crate::report::Dim>,
        /// table (for people), csv (for spreadsheets) or json (for scripts).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write an evidence folder about one key: inventory record, usage CSV, alerts, summary,
    /// SHA256SUMS.
    Export {
        /// The key id.
        #[arg(long)]
        key: String,
        /// Only this source's records.
        #[arg(long)]
        source: Option<String>,
        /// Start of the window: a duration ago or an RFC 3339 time, at most 400 days back.
        #[arg(long, value_parser = parse_time)]
        since: TimeArg,
        /// End of the window (exclusive); default now.
        #[arg(long, value_parser = parse_time)]
        until: Option<TimeArg>,
        /// The folder to create (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a shell completion script, e.g. `keywatch completions bash > /etc/bash_completion.d/keywatch`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `keywatch man | man -l -`; with --out, write
    /// keywatch.1 and one keywatch-COMMAND.1 per command into a directory.
    Man {
        /// The directory to write the pages into (e.g. /usr/local/share/man/man1).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the whole path against a simulated provider: no account, no network beyond loopback.
    Demo {
        /// Print the alerts as the JSON a webhook would receive.
        #[arg(long)]
        json: bool,
    },
    /// Send a clearly marked test alert through each notifier and report what happened.
    TestNotify {
        /// Only this notifier.
        #[arg(long)]
        notifier: Option<String>,
    },
    /// The key inventory: status, age, last use, spend, open alerts; and changing a key at its
    /// provider (deactivate, activate, delete), recorded.
    #[command(args_conflicts_with_subcommands = true)]
    Keys {
        #[command(subcommand)]
        action: Option<KeysAction>,
        /// Only this source's keys.
        #[arg(long)]
        source: Option<String>,
        /// Only keys with this status (active, inactive, archived, expired, deleted, …).
        #[arg(long)]
        status: Option<String>,
        /// List the key names that break the naming convention (environment-service-date,
        /// e.g. prod-api-gateway-2026-04-25) and why.
        #[arg(long)]
        lint: bool,
        /// table (for people) or json (for scripts).
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Copy a SQLite database into a new, empty PostgreSQL one and check every table against
    /// the source (stop `keywatch run` first). Reads no config. Exit 0 every table matches;
    /// 1 a table differs (nothing committed), the target holds rows, or the source is in use;
    /// 78 a bad argument.
    MigrateStorage {
        /// The SQLite database to copy, e.g. sqlite:///var/lib/keywatch/keywatch.db (only read).
        #[arg(long)]
        from: String,
        /// The PostgreSQL database to copy into, postgres://USER@HOST[:PORT]/DB (no password in
        /// it): migrated here, and refused if any table holds a row.
        #[arg(long)]
        to: String,
        /// The environment variable that holds the target database's password.
        #[arg(long, value_name = "VAR", conflicts_with = "to_password_file")]
        to_password_env: Option<String>,
        /// A file that holds the target database's password (a trailing newline is dropped).
        #[arg(long, value_name = "PATH")]
        to_password_file: Option<PathBuf>,
    },
    /// Replay the spike rule over stored history: what would have fired, when.
    Backtest {
        /// How far back to replay: a duration ago or an RFC 3339 time, at most 400 days back.
        #[arg(long, default_value = "30d", value_parser = parse_time)]
        since: TimeArg,
        /// table (for people) or json (for scripts).
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

/// Which alerts `keywatch alerts` lists; each filter narrows the list, all must match.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AlertFilter {
    // The help names every rule of `Rule::ALL` (rule_help).
    #[arg(long, value_parser = parse_rule, help = rule_filter_help())]
    pub rule: Option<String>,
    /// Only alerts about this key id.
    #[arg(long)]
    pub key: Option<String>,
    /// Only alerts of this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only alerts of at least this severity: info, warning or critical.
    #[arg(long, value_parser = parse_severity)]
    pub severity: Option<crate::model::Severity>,
}

impl AlertFilter {
    /// Whether `a` passes every filter given.
    pub fn keeps(&self, a: &crate::model::Alert) -> bool {
        self.rule.as_deref().is_none_or(|r| a.rule.as_str() == r)
            && self
                .key
                .as_deref()
                .is_none_or(|k| a.key_id.as_deref() == Some(k))
            && self
                .source
                .as_deref()
                .is_none_or(|s| a.source.as_deref() == Some(s))
            && self.severity.is_none_or(|s| a.severity >= s)
    }
}

fn parse_severity(s: &str) -> Result<crate::model::Severity, String> {
    use crate::model::Severity;
    [Severity::Info, Severity::Warning, Severity::Critical]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| format!("unknown severity {s:?}: one of info, warning, critical"))
}

fn rule_filter_help() -> String {
    format!("Only alerts of this rule: {}", rule_names())
}

/// A change to one key at its provider. Exit 0 done; 1 refused, failed or unknown key; 75 when
/// the provider could not be reached (try again).
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Set an Anthropic key inactive: it stops working at once. Undo with `keys activate`.
    Deactivate(KeyChangeArgs),
    /// Set an Anthropic key active again (undoes `keys deactivate`).
    Activate(KeyChangeArgs),
    /// Delete an OpenAI project key. Cannot be undone: refused without --yes and --source.
    Delete {
        #[command(flatten)]
        change: KeyChangeArgs,
        /// Confirm the deletion, which cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct KeyChangeArgs {
    /// The key id, as `keywatch keys` lists it.
    #[arg(long)]
    pub key: String,
    /// The source the key belongs to (needed when several sources have the id).
    #[arg(long)]
    pub source: Option<String>,
    /// Why: recorded with the action.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is not a duration such as \"2h\" or \"3d\""))
}

/// Every rule's name, comma-separated, from the one list of rules.
fn rule_names() -> String {
    let names: Vec<&str> = crate::model::Rule::ALL.iter().map(|r| r.as_str()).collect();
    names.join(", ")
}

/// `silence --rule`'s help: built from `Rule::ALL`, so a new rule is listed without editing it.
fn rule_help() -> String {
    format!("The rule to silence: {}", rule_names())
}

fn parse_rule(s: &str) -> Result<String, String> {
    crate::model::Rule::parse(s)
        .map(|r| r.as_str().to_owned())
        .ok_or_else(|| format!("unknown rule {s:?}: one of {}", rule_names()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub use crate::window::{parse_time, TimeArg};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn silence_help_names_every_rule() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("silence")
            .unwrap()
            .render_help()
            .to_string();
        assert!(
            help.contains("The rule to silence: spike, budget, budget_forecast, key_age, inactive_key_usage, source_unhealthy, unpriced_usage, rotation_stalled\n"),
            "{help}"
        );
        for rule in crate::model::Rule::ALL {
            assert!(help.contains(rule.as_str()), "{rule:?}: {help}");
        }
    }
}
