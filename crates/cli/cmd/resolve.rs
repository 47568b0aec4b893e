//! `paybatch resolve` — an operator's decision on a batch that cannot finish by itself.
//!
//! - `--abandon`: the gateway confirmed it never processed the batch (typically Stuck: no
//!   COMPLETE by the deadline). Its transactions are reported `unknown` and released, so a
//!   later submit of the same refs puts them into a new batch. For a batch that may have been
//!   triggered, the drop is inspected first and what is there is shown; a batch whose
//!   COMPLETE is in the drop is refused (the gateway answered: collect it instead).
//! - `--mark-unknown`: the gateway's answer cannot be had (a COMPLETE whose RESPONSE is
//!   missing or unusable, or no COMPLETE at all). The batch is closed; its transactions stay
//!   bound to it and are reported `unknown` for ever — never sent again — and the account's
//!   later batches go on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, BatchRecord, Ledger, Transition};

use super::{Global, common, usage_error};

/// Arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["abandon", "mark_unknown"])))]
pub struct Args {
    /// Config file (for the ledger path and the account's drop).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The account.
    #[arg(long)]
    pub account: String,
    /// The batch's sequence number.
    #[arg(long)]
    pub seq: u32,
    /// Abandon the batch: the gateway confirmed it never processed it; its transactions are
    /// released for a new batch.
    #[arg(long)]
    pub abandon: bool,
    /// Close the batch without its answer: its transactions stay `unknown` and are never sent
    /// again; the account's later batches go on.
    #[arg(long)]
    pub mark_unknown: bool,
    /// Why (kept in the ledger with the decision).
    #[arg(long)]
    pub reason: String,
}

/// Runs the subcommand.
pub fn run(args: Args, _global: &Global) -> Result<ExitCode> {
    let settings = Arc::new(common::load_settings(args.config.as_deref())?);
    let account = AccountId::new(args.account.as_str()).map_err(|e| usage_error(e.to_string()))?;
    let seq = SequenceNumber::new(args.seq).map_err(|e| usage_error(e.to_string()))?;
    if args.reason.trim().is_empty() {
        return Err(usage_error("--reason must say why"));
    }
    let path = common::ledger_path(&settings);
    let ledger = Arc::new(
        Ledger::open(&path)
            .with_context(|| format!("cannot open the ledger at {}", path.display()))?,
    );
    let before = ledger
        .batch(&account, seq)?
        .ok_or_else(|| usage_error(format!("account {account} has no batch {seq}")))?;
    let transition = if args.abandon {
        if before.state.may_have_been_triggered() && !before.state.is_final() {
            look_in_the_drop(&settings, &before)?;
        }
        Transition::Abandoned {
            reason: args.reason.clone(),
        }
    } else {
        Transition::MarkedUnknown {
            reason: args.reason.clone(),
        }
    };
    let after = ledger
        .resolve(&account, seq, transition, args.reason.clone())
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

/// Before abandoning a batch that may have been triggered: shows what the gateway side holds
/// of it, and refuses when the gateway's verdict is there (its transactions may have been
/// processed; abandoning would release them for a second send).
fn look_in_the_drop(settings: &orchestrator::Settings, batch: &BatchRecord) -> Result<()> {
    let account = batch.account.as_str();
    let seq = batch.sequence;
    let rt = common::runtime(&settings.limits)?;
    let inspection = rt.block_on(async {
        let protocol = settings
            .account(account)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        protocol.inspect(seq).await.map_err(|e| e.to_string())
    });
    let inspection = inspection.map_err(|e| super::Exit {
        code: 3,
        message: format!(
            "batch {seq} of account {account} may have been triggered ({}), so the drop must be inspected before abandoning it, and that failed: {e}",
            batch.state.name()
        ),
    })?;
    if inspection.found.is_empty() {
        eprintln!("paybatch: account {account} batch {seq}: nothing of it is in the drop");
    } else {
        eprintln!(
            "paybatch: account {account} batch {seq}: in the drop: {}",
            inspection.found.join(", ")
        );
    }
    if inspection.answered == Some(true) {
        return Err(super::Exit {
            code: 1,
            message: format!(
                "not abandoned: the gateway answered batch {seq} (its COMPLETE is in the drop), so its transactions may have been processed. Run `paybatch collect` to record the answer, or `paybatch resolve --account {account} --seq {seq} --mark-unknown` if it cannot be read"
            ),
        }
        .into());
    }
    if inspection.triggered == Some(true) {
        eprintln!(
            "paybatch: warning: PROCESS_{seq} is in the drop: the gateway was asked to process this batch. Abandoning releases its transactions to be sent again — right only if the gateway confirmed it never processed them (otherwise use --mark-unknown)"
        );
    }
    Ok(())
}
