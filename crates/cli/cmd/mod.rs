//! Subcommands. Each file: a clap `Args` (or subcommand enum) and `run(.., &Global) -> Result<ExitCode>`.

use anyhow::Result;
use clap::ArgAction;

use crate::logging::LogFormat;

pub mod collect;
pub mod common;
pub mod config;
pub mod demo;
pub mod gateway_sim;
pub mod kvp;
pub mod ledger;
pub mod ledger_shared;
pub mod resolve;
pub mod serve;
pub mod status;
pub mod store;
pub mod submit;
pub mod validate;

/// Options every subcommand accepts.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// More log output (-v info, -vv debug, -vvv trace). Logs go to stderr.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: errors only, no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Set up logging on stderr according to `-v/-q/--log-format` (`RUST_LOG` overrides the
/// level); see [`crate::logging::init_logging`].
pub fn init_logging(global: &Global) -> Result<()> {
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    Ok(crate::logging::init_logging(level, global.log_format)?)
}

/// Errors that should end with a specific exit code wrap it in [`Exit`].
#[derive(Debug)]
pub struct Exit {
    /// The process exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// A usage/configuration error (exit code 2).
pub fn usage_error(message: impl Into<String>) -> anyhow::Error {
    Exit {
        code: 2,
        message: message.into(),
    }
    .into()
}

/// The exit code for an error that escaped a subcommand: its [`Exit`] code if it carries one,
/// else 3 (an I/O or backend failure).
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<Exit>().map_or(3, |e| e.code)
}
