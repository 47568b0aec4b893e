//! `paybatch kvp` — to be built (see the issue that owns it).

use std::process::ExitCode;

use anyhow::Result;

use super::Global;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KvpCommand {
    /// Decode.
    Decode,
}

/// Runs the subcommand.
pub fn run(_args: KvpCommand, _global: &Global) -> Result<ExitCode> {
    anyhow::bail!("`paybatch kvp` is not built yet")
}
