//! `paybatch validate` — to be built (see the issue that owns it).

use std::process::ExitCode;

use anyhow::Result;

use super::Global;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args, _global: &Global) -> Result<ExitCode> {
    anyhow::bail!("`paybatch validate` is not built yet")
}
