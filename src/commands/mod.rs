//! What each subcommand does, and how its result maps to an exit code.

mod alerts;
mod backtest;
mod check_config;
mod export;
mod history;
mod keys;
mod migrate_storage;
mod report;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::{Cli, Command};
use crate::config::{Config, ConfigError};
use crate::exit;

/// Prints the manual page `keywatch(1)`, or writes it and one page per command
/// (`keywatch-run(1)`, …) into `out`.
fn man(out: Option<&std::path::Path>) -> u8 {
    let cmd = <Cli as clap::CommandFactory>::command().version(crate::cli::VERSION);
    let mut page = Vec::new();
    let written = match out {
        None => clap_mangen::Man::new(cmd).render(&mut page),
        Some(dir) => write_pages(cmd, dir, &mut page),
    };
    match written {
        Ok(()) => print_bytes("man", &page),
        Err(e) => {
            eprintln!("keywatch man: {e}");
            exit::FAILURE
        }
    }
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error.
fn print_bytes(command: &str, bytes: &[u8]) -> u8 {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("keywatch {command}: {e}");
            exit::FAILURE
        }
    }
}

/// Writes the pages into `dir`, listing their paths in `listing`.
fn write_pages(
    cmd: clap::Command,
    dir: &std::path::Path,
    listing: &mut Vec<u8>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut pages = vec![("keywatch".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("keywatch-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        clap_mangen::Man::new(page).render(&mut std::fs::File::create(&path)?)?;
        listing.extend_from_slice(format!("{}\n", path.display()).as_bytes());
    }
    Ok(())
}

/// Loads the config and runs the command; returns the process exit code.
pub async fn execute(cli: Cli) -> u8 {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "keywatch", &mut script);
            return print_bytes("completions", &script);
        }
        Command::Man { out } => return man(out.as_deref()),
        _ => {}
    }
    if let Command::Demo { json } = cli.command {
        return crate::demo::run(json).await.unwrap_or_else(|e| {
            eprintln!("keywatch demo: {e:#}");
            exit::FAILURE
        });
    }
    // Names both databases itself: no config is read.
    if let Command::MigrateStorage {
        from,
        to,
        to_password_env,
        to_password_file,
    } = cli.command
    {
        let args = migrate_storage::Args {
            from,
            to,
            to_password_env,
            to_password_file,
        };
        return migrate_storage::run(args).await.unwrap_or_else(failed);
    }
    // Commands that only read the database load the config without its secrets.
    let read_only = !matches!(
        cli.command,
        Command::Run { .. }
            | Command::CheckConfig
            | Command::TestNotify { .. }
            | Command::Keys {
                action: Some(_),
                ..
            }
    );
    let loaded = if read_only {
        Config::load_read_only(&cli.config)
    } else {
        Config::load(&cli.config)
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            report_config_error(&cli.config, &e);
            return exit::CONFIG;
        }
    };
    let result = match cli.command {
        Command::Run { once } => run(config, &cli.config, once).await,
        Command::CheckConfig => check_config::print(&config).await,
        Command::History {
            key,
            source,
            since,
            until,
            format,
        } => history::print(&config, &key, source.as_deref(), since, until, format).await,
        Command::Alerts {
            all,
            filter,
            format,
        } => alerts::list(&config, all, &filter, format).await,
        Command::Silence {
            key,
            rule,
            duration,
            reason,
        } => alerts::silence(&config, key, rule, duration, reason).await,
        Command::Silences { format } => alerts::silences(&config, format).await,
        Command::Unsilence { id } => alerts::unsilence(&config, &id).await,
        Command::Backtest { since, format } => backtest::run(&config, since, format).await,
        Command::TestNotify { notifier } => test_notify(config, notifier.as_deref()).await,
        Command::Report {
            forecast: true,
            format,
            ..
        } => report::forecast(&config, format).await,
        Command::Report {
            reconcile: true,
            tolerance,
            since,
            last,
            format,
            ..
        } => report::reconcile(&config, since, last, tolerance, format).await,
        Command::Report {
            period,
            timezone,
            since,
            until,
            last,
            by,
            format,
            ..
        } => {
            let args = report::ReportArgs {
                period,
                timezone,
                since,
                until,
                last,
                by,
                format,
            };
            report::run(&config, args).await
        }
        Command::Export {
            key,
            source,
            since,
            until,
            out,
        } => export::run(&config, &key, source.as_deref(), since, until, &out).await,
        Command::Demo { json } => crate::demo::run(json).await,
        // Answered above, before any config is read.
        Command::Completions { .. } | Command::Man { .. } | Command::MigrateStorage { .. } => {
            Ok(exit::OK)
        }
        Command::Keys {
            action: Some(action),
            ..
        } => keys::change(&config, action).await,
        Command::Keys {
            action: None,
            source,
            status,
            lint,
            format,
        } => keys::list(&config, source.as_deref(), status.as_deref(), lint, format).await,
    };
    result.unwrap_or_else(failed)
}

/// Reports a command's error (secrets redacted) and returns its exit code: 75 for a locked or
/// full database (try again later, as for a failed poll), else 1.
fn failed(e: anyhow::Error) -> u8 {
    tracing::error!(error = %format!("{e:#}"), "command failed");
    let message = format!("{e:#}");
    let message = crate::config::secret::redact(&message);
    eprintln!("keywatch: {}", crate::text::clean(&message));
    let temporary = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::store::StoreError>(),
            Some(crate::store::StoreError::Busy | crate::store::StoreError::Full)
        )
    });
    if temporary {
        exit::TEMPFAIL
    } else {
        exit::FAILURE
    }
}

/// One shape for every config error, `keywatch: config error in FILE: …`, with provider-free
/// but user-written text shown safely (a control or bidi character in a name is escaped).
fn report_config_error(path: &std::path::Path, e: &ConfigError) {
    let message = match e {
        // These already name their file.
        ConfigError::Read { .. } => format!("keywatch: config error: {e}"),
        ConfigError::Parse { message, .. } => {
            format!("keywatch: config error in {}: {message}", path.display())
        }
        ConfigError::Invalid { .. } => {
            format!("keywatch: config error in {}: {e}", path.display())
        }
    };
    eprintln!("{}", crate::text::clean(&message));
}

/// `keywatch run`: the daemon until SIGTERM/SIGINT, re-reading the config on SIGHUP (the
/// tasks finish their current step and start again with the new config; an invalid config is
/// logged naming the key and the running one is kept). `--once`: one cycle.
async fn run(mut config: Config, path: &std::path::Path, once: bool) -> anyhow::Result<u8> {
    use crate::signals::{Signal, Signals};
    // Installed first: until then SIGHUP or SIGUSR1 would kill the process.
    let mut signals = Signals::install().context("installing the signal handlers")?;
    loop {
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let shared = std::sync::Arc::new(config);
        let app = App::build(std::sync::Arc::clone(&shared)).await?;
        let cancel = CancellationToken::new();
        if once {
            if let Some(pool) = app.store().pg_pool() {
                // Replicas on PostgreSQL: one cycle beside a live leader would poll and deliver
                // twice; the leader does that work already.
                if let Some(lease) = crate::lease::current(pool).await?.filter(|l| l.is_live()) {
                    app.store().close().await;
                    eprintln!(
                        "keywatch: replica {} leads (epoch {}, since {}): `run --once` would poll and \
                         deliver beside it; leave the work to the replicas, or stop them first",
                        lease.holder,
                        lease.epoch,
                        crate::text::rfc3339(lease.since_ms.div_euclid(1000))
                    );
                    return Ok(exit::TEMPFAIL);
                }
            }
            let work = app.run_once(&cancel);
            tokio::pin!(work);
            let report = loop {
                tokio::select! {
                    r = &mut work => break r,
                    s = signals.next() => match s {
                        Signal::Stop => cancel.cancel(),
                        Signal::Reload => tracing::info!("SIGHUP ignored: run --once reads the config once"),
                    },
                }
            };
            app.store().close().await;
            if report.all_done() {
                return Ok(exit::OK);
            }
            tracing::warn!(sources = ?report.failed_sources, undelivered = report.undelivered,
                "something failed and was kept; it is retried on the next run");
            return Ok(exit::TEMPFAIL);
        }
        tracing::info!(sources = shared.sources.len(), interval = %humantime::format_duration(shared.poll.interval.0), "keywatch running");
        let daemon = app.run_until_stopped(cancel.clone());
        tokio::pin!(daemon);
        let mut next = None;
        loop {
            tokio::select! {
                r = &mut daemon => {
                    r?;
                    break;
                }
                s = signals.next(), if !cancel.is_cancelled() => match s {
                    Signal::Stop => cancel.cancel(),
                    Signal::Reload => match Config::load(path) {
                        Ok(c) => {
                            tracing::info!(config = %path.display(), "configuration re-read: restarting the tasks with it");
                            let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                            next = Some(c);
                            cancel.cancel();
                        }
                        Err(e) => tracing::error!(config = %path.display(), error = %e,
                            "the new configuration is invalid; keeping the running one"),
                    },
                },
            }
        }
        match next {
            Some(c) => config = c,
            None => return Ok(exit::OK),
        }
    }
}

async fn test_notify(config: Config, only: Option<&str>) -> anyhow::Result<u8> {
    let config = std::sync::Arc::new(config);
    let outbox = crate::notify::Outbox::new(std::sync::Arc::clone(&config));
    let chosen: Vec<_> = config
        .notifiers
        .iter()
        .filter(|n| only.is_none_or(|o| n.name() == o))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = config.notifiers.iter().map(|n| n.name()).collect();
        anyhow::bail!(
            "no notifier {} in the config (configured: {})",
            only.map(|o| format!("{o:?}")).unwrap_or_default(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    let mut failed = 0;
    for n in chosen {
        match outbox.send_test(n).await {
            Ok(answer) => println!("{}: ok ({})", n.name(), crate::text::clean(&answer)),
            Err(e) => {
                failed += 1;
                let e = crate::config::secret::redact(&e.to_string()).into_owned();
                println!("{}: FAILED: {}", n.name(), crate::text::clean(&e));
            }
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILURE })
}
