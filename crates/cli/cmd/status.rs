//! `paybatch status` — per account: the last sequence number, batches by state, anything
//! Stuck. Reads a private copy of the ledger (never changes it). Sola and APS accounts alike:
//! an APS account's batches are numbered in the ledger too (its `batch_reference`s derive from
//! them).
//!
//! Exit codes: 0 nothing Stuck; 1 some batch is Stuck; 2 configuration; 3 ledger unreadable
//! (e.g. a submit holds it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use sequence_ledger::{Ledger, SequenceLedger, SledLedger};

use super::Global;
use super::common;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file (for the ledger path and the account list).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print JSON: `{"accounts": [{"account", "protocol", "last_sequence", "batches", "stuck",
    /// "in_flight", "lease"}]}` (`protocol`: `sola`, `aps`, or null for an account only in the
    /// ledger; `lease`: `{"holder", "until", "epoch"}` while a process holds the account on a
    /// shared ledger, else absent).
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args, _global: &Global) -> Result<ExitCode> {
    let settings = common::load_settings(args.config.as_deref())?;
    let path = common::ledger_path(&settings);
    let rt = common::runtime(&settings.limits)?;
    let (ledger, status) = rt.block_on(async {
        let ledger: Option<Arc<dyn SequenceLedger>> = match common::shared_ledger(&settings).await?
        {
            Some(shared) => Some(shared),
            None => match Ledger::open_read_only(&path) {
                Ok(l) => Some(Arc::new(SledLedger::new(Arc::new(l)))),
                Err(sequence_ledger::Error::NotFound { .. }) => None,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read the ledger at {}", path.display()));
                }
            },
        };
        // The same function answers `GET /v1/accounts` of `paybatch serve`.
        let status = paybatch_service::status::status(&settings, ledger.as_deref()).await?;
        anyhow::Ok((ledger, status))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        if ledger.is_none() {
            println!("no ledger at {} yet", path.display());
        }
        let mut leases = Vec::new();
        for a in &status.accounts {
            let batches: Vec<String> = a.batches.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{:<20} {:<5} last={:<10} {}{}{}",
                a.account,
                a.protocol.as_deref().unwrap_or("-"),
                a.last_sequence
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                if batches.is_empty() {
                    "no batches".to_owned()
                } else {
                    batches.join(" ")
                },
                if a.in_flight.is_empty() {
                    String::new()
                } else {
                    format!("  in flight: {:?}", a.in_flight)
                },
                if a.stuck.is_empty() {
                    String::new()
                } else {
                    format!("  STUCK: {:?}", a.stuck)
                },
            );
            if let Some(l) = &a.lease {
                leases.push(format!(
                    "{:<20} lease held by {} until {} (epoch {})",
                    a.account, l.holder, l.until, l.epoch
                ));
            }
        }
        for line in &leases {
            println!("{line}");
        }
    }
    Ok(if status.any_stuck() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
