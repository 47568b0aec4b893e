//! `paybatch config` — the effective configuration (compiled-in defaults, the `--config` file,
//! `PAYBATCH__…` variables), with every secret masked.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::{Global, common};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML, secrets masked.
    Show {
        /// Config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the compiled-in defaults (the text of config/default.toml).
    Defaults,
}

/// Runs the subcommand.
pub fn run(command: ConfigCommand, _global: &Global) -> Result<ExitCode> {
    match command {
        ConfigCommand::Show { config } => {
            let settings = common::load_settings(config.as_deref())?;
            print!("{}", settings.to_masked_toml());
        }
        ConfigCommand::Defaults => print!("{}", orchestrator::DEFAULT_CONFIG),
    }
    Ok(ExitCode::SUCCESS)
}
