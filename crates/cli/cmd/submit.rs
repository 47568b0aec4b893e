//! `paybatch submit` — validate the whole input, fan it out into per-account batches, upload
//! them crash-safely, and (with `--wait`) collect and merge the results.
//!
//! Exit codes: 0 every batch reached a final state (or, without `--wait`, was triggered);
//! 1 invalid input (nothing reserved or uploaded), a Stuck batch or a failed account;
//! 2 configuration/usage; 3 I/O or backend failure. Re-running the same command resumes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use orchestrator::{Format, Masking, OutputSpec, RejectedBatches, SubmitOptions, WaitMode};

use super::common::{self, Bars};
use super::{Global, usage_error};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The input: `.kvp`, `.csv` or `.jsonl` (or say which with --format).
    pub input: PathBuf,
    /// Config file (over the compiled-in defaults; `PAYBATCH__…` variables override both).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where to write the merged results (one record per input record, in input order).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Input format, when the extension does not say.
    #[arg(long, value_parser = common::parse_format)]
    pub format: Option<Format>,
    /// Output format (default: the input's format, whatever the output's extension).
    #[arg(long, value_parser = common::parse_format)]
    pub output_format: Option<Format>,
    /// Wait for every batch's COMPLETE and write the output. Without it, submit returns once
    /// each account's last batch is triggered; `paybatch collect` finishes the job.
    #[arg(long)]
    pub wait: bool,
    /// Write the files each account's gateway would get (Sola REQUEST/PROCESS, APS CSV) into
    /// this folder instead, card data and keys masked; reserve nothing, upload nothing.
    #[arg(long, value_name = "DIR")]
    pub dry_run: Option<PathBuf>,
    /// With --dry-run: write the exact bytes, real card numbers and keys included. Treat that
    /// folder like the drop itself (the files are owner-only; delete them when done).
    #[arg(long, requires = "dry_run")]
    pub unmasked: bool,
    /// Submit the valid records and report the invalid ones instead of refusing the input.
    #[arg(long)]
    pub skip_invalid: bool,
    /// With --skip-invalid: write the rejected records (masked) and their reasons here.
    #[arg(long, requires = "skip_invalid")]
    pub rejects: Option<PathBuf>,
    /// Also write the per-account summary as JSON here.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Send again the transactions of batches the gateway rejected (COMPLETE with an error,
    /// nothing processed), under new numbers. Without it a re-run reports them as
    /// `not_processed` with the gateway's xError and uploads nothing. (Batches abandoned with
    /// `paybatch resolve --abandon` are always re-submitted.)
    #[arg(long)]
    pub resubmit_rejected: bool,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    let settings = Arc::new(common::load_settings(args.config.as_deref())?);
    if args.dry_run.is_none() && args.output.is_none() && args.wait {
        return Err(usage_error("--wait needs --output FILE"));
    }
    let job = common::load_job(
        &settings,
        &args.input,
        args.format,
        args.skip_invalid,
        args.rejects.as_deref(),
    )?;
    let rt = common::runtime(&settings.limits)?;
    rt.block_on(async {
        let rejected = if args.resubmit_rejected {
            RejectedBatches::Resubmit
        } else {
            RejectedBatches::Report
        };
        let orch = common::engine_builder(&settings).await?.rejected_batches(rejected).build()?;
        if let Some(dir) = &args.dry_run {
            let masking = if args.unmasked { Masking::Unmasked } else { Masking::Masked };
            // Planning reads the ledger synchronously (a shared ledger blocks on its runtime).
            let batches = tokio::task::block_in_place(|| orch.dry_run(job.clone(), dir, masking).map_err(anyhow::Error::from))?;
            for b in &batches {
                println!("{}\t{}\t{} lines\t{}", b.account, b.sequence, b.lines, b.request.display());
            }
            eprintln!("paybatch: dry run wrote {} batch(es) under {}; nothing was reserved or uploaded", batches.len(), dir.display());
            if args.unmasked {
                eprintln!("paybatch: these files hold real card data and keys: treat the folder like the drop and delete it when done");
            }
            return Ok(ExitCode::SUCCESS);
        }
        let output = args.output.as_ref().filter(|_| args.wait).map(|path| OutputSpec {
            path: path.clone(),
            format: Format::for_output(args.output_format, args.format, &args.input, path),
        });
        let options = SubmitOptions {
            wait: if args.wait { WaitMode::UntilCollected } else { WaitMode::UntilTriggered },
            collect_only: false,
            output,
        };
        if args.output.is_some() && !args.wait {
            eprintln!(
                "paybatch: --output is written by `paybatch collect` (or submit --wait); ignoring it"
            );
        }
        let shutdown = common::shutdown_on_signal();
        let bars = Bars::start(orch.progress().clone(), global);
        let report = orch.submit(job.clone(), &options, shutdown).await;
        bars.finish();
        let report = report?;
        if !global.quiet {
            common::print_summary(&report);
        }
        if let Some(path) = &args.summary {
            common::write_summary(&report, path)?;
        }
        if let Some(out) = &report.output {
            eprintln!("paybatch: results written to {}", out.display());
        } else if !args.wait {
            eprintln!("paybatch: submitted; run `paybatch collect` with the same input and --output to finish");
        }
        let failed = report.accounts.values().any(|a| a.summary.failure.is_some() || !a.stuck.is_empty());
        let incomplete = args.wait && !report.is_complete();
        Ok(if failed || incomplete { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}
