//! `paybatch resolve` — an operator's decision on a batch that cannot finish by itself.
//!
//! - `--abandon`: the gateway confirmed it never processed the batch (typically Stuck: no
//!   COMPLETE by the deadline). Its transactions are reported `unknown` and released, so a
//!   later submit of the same refs puts them into a new batch. For a batch not final (Reserved
//!   included), the drop is inspected first and what is there is shown; a batch with any file
//!   of its answer in the drop (COMPLETE or RESPONSE, whole or not) is refused (the gateway
//!   answered: collect it instead).
//! - `--mark-unknown`: the gateway's answer cannot be had (a COMPLETE whose RESPONSE is
//!   missing or unusable, or no COMPLETE at all). The batch is closed; its transactions stay
//!   bound to it and are reported `unknown` for ever — never sent again — and the account's
//!   later batches go on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use paybatch_service::resolve::{ResolveAction, ResolveError, resolve};
use sequence_ledger::{Ledger, SequenceLedger, SledLedger};

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
    // Usage errors before the ledger is opened.
    sequence_ledger::AccountId::new(args.account.as_str())
        .map_err(|e| usage_error(e.to_string()))?;
    kvp_format::SequenceNumber::new(args.seq).map_err(|e| usage_error(e.to_string()))?;
    if args.reason.trim().is_empty() {
        return Err(usage_error("--reason must say why"));
    }
    let action = if args.abandon {
        ResolveAction::Abandon
    } else {
        ResolveAction::MarkUnknown
    };
    let rt = common::runtime(&settings.limits)?;
    let result = rt.block_on(async {
        let ledger: Arc<dyn SequenceLedger> = match common::shared_ledger(&settings).await? {
            Some(shared) => shared,
            None => {
                let path = common::ledger_path(&settings);
                Arc::new(SledLedger::new(Arc::new(
                    Ledger::open(&path)
                        .with_context(|| format!("cannot open the ledger at {}", path.display()))?,
                )))
            }
        };
        // The same function answers `POST /v1/accounts/{account}/batches/{seq}/resolve`.
        anyhow::Ok(
            resolve(
                &settings,
                ledger,
                &args.account,
                args.seq,
                action,
                &args.reason,
            )
            .await,
        )
    })?;
    match result {
        Ok(r) => {
            for note in &r.notes {
                eprintln!("paybatch: {note}");
            }
            println!(
                "account {} batch {}: {} -> {}",
                r.account, r.sequence, r.from, r.to
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (ResolveError::Invalid(_) | ResolveError::NoBatch { .. })) => {
            Err(usage_error(e.to_string()))
        }
        Err(ResolveError::Refused { message, notes }) => {
            for note in &notes {
                eprintln!("paybatch: {note}");
            }
            Err(super::Exit { code: 1, message }.into())
        }
        Err(e @ ResolveError::Inspect(_)) => Err(super::Exit {
            code: 3,
            message: e.to_string(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}
