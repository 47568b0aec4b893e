//! `paybatch resolve` — an operator's decision on a batch that cannot finish by itself
//! (typically Stuck: no COMPLETE by the deadline). `--abandon` records that the batch will not
//! be finished; its transactions are reported `unknown` and released, so a later submit of
//! the same refs puts them into a new batch. Only do that once the gateway confirmed it never
//! processed the batch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, Ledger, Transition};

use super::{Global, common, usage_error};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file (for the ledger path).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The account.
    #[arg(long)]
    pub account: String,
    /// The batch's sequence number.
    #[arg(long)]
    pub seq: u32,
    /// Abandon the batch.
    #[arg(long, required = true)]
    pub abandon: bool,
    /// Why (kept in the ledger with the decision).
    #[arg(long)]
    pub reason: String,
}

/// Runs the subcommand.
pub fn run(args: Args, _global: &Global) -> Result<ExitCode> {
    let settings = common::load_settings(args.config.as_deref())?;
    let account = AccountId::new(args.account.as_str()).map_err(|e| usage_error(e.to_string()))?;
    let seq = SequenceNumber::new(args.seq).map_err(|e| usage_error(e.to_string()))?;
    if args.reason.trim().is_empty() {
        return Err(usage_error("--reason must say why"));
    }
    let path = common::ledger_path(&settings);
    let ledger = Ledger::open(&path)
        .with_context(|| format!("cannot open the ledger at {}", path.display()))?;
    let before = ledger
        .batch(&account, seq)?
        .ok_or_else(|| usage_error(format!("account {account} has no batch {seq}")))?;
    let after = ledger
        .resolve(
            &account,
            seq,
            Transition::Abandoned {
                reason: args.reason.clone(),
            },
            args.reason.clone(),
        )
        .map_err(|e| super::Exit {
            code: 1,
            message: e.to_string(),
        })?;
    println!(
        "account {account} batch {seq}: {} -> {}",
        before.state.name(),
        after.state.name()
    );
    Ok(ExitCode::SUCCESS)
}
