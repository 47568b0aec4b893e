//! `paybatch store` — to be built (see the issue that owns it).

use std::process::ExitCode;

use anyhow::Result;

use super::Global;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Check.
    Check,
}

/// Runs the subcommand.
pub fn run(_args: StoreCommand, _global: &Global) -> Result<ExitCode> {
    anyhow::bail!("`paybatch store` is not built yet")
}
