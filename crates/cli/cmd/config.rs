//! `paybatch config` — to be built (see the issue that owns it).

use std::process::ExitCode;

use anyhow::Result;

use super::Global;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Show.
    Show,
}

/// Runs the subcommand.
pub fn run(_args: ConfigCommand, _global: &Global) -> Result<ExitCode> {
    anyhow::bail!("`paybatch config` is not built yet")
}
