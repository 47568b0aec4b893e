//! `paybatch ledger` — to be built (see the issue that owns it).

use std::process::ExitCode;

use anyhow::Result;

use super::Global;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Show.
    Show,
}

/// Runs the subcommand.
pub fn run(_args: LedgerCommand, _global: &Global) -> Result<ExitCode> {
    anyhow::bail!("`paybatch ledger` is not built yet")
}
