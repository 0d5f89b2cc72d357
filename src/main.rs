#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use keywatch::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors; a bad argument is exit 1 (docs/contract.md).
            return ExitCode::from(if e.use_stderr() {
                keywatch::exit::FAILURE
            } else {
                0
            });
        }
    };
    let json_logs = cli.log_format == keywatch::cli::LogFormat::Json;
    // The demo prints what a person reads; its logs stay quiet unless RUST_LOG asks.
    let level = match cli.command {
        keywatch::cli::Command::Demo { .. } => "warn",
        _ => "info",
    };
    // migrate-storage's batches and checks are long statements by design, not slow ones.
    let sql_level = match cli.command {
        keywatch::cli::Command::MigrateStorage { .. } => "error",
        _ => "warn",
    };
    keywatch::telemetry::init_with(level, sql_level, json_logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keywatch: cannot start the async runtime: {e}");
            return ExitCode::from(keywatch::exit::FAILURE);
        }
    };
    ExitCode::from(runtime.block_on(keywatch::commands::execute(cli)))
}
