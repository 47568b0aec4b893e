//! `paybatch collect` — finish the batches a `submit` without `--wait` left in flight (poll,
//! store results, clean up) and write the merged output. Creates no batches. With the input
//! that was submitted, the output has one record per input record in input order; without
//! it, one record per transaction of the batches that were in flight, by account, batch, line.
//!
//! Exit codes as `submit --wait`: 0 every batch final; 1 Stuck batches or a failed account.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use orchestrator::{Format, OutputSpec, SubmitOptions, WaitMode};

use super::Global;
use super::common::{self, Bars};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The input that was submitted (its refs select and order the results); optional.
    pub input: Option<PathBuf>,
    /// Config file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where to write the merged results.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Input format, when the extension does not say.
    #[arg(long, value_parser = common::parse_format)]
    pub format: Option<Format>,
    /// Output format (default: the input's format; without the input, the output's extension,
    /// else JSON Lines).
    #[arg(long, value_parser = common::parse_format)]
    pub output_format: Option<Format>,
    /// Also write the per-account summary as JSON here.
    #[arg(long)]
    pub summary: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    let settings = Arc::new(common::load_settings(args.config.as_deref())?);
    let job = match &args.input {
        Some(input) => Some(common::load_job(
            &settings,
            input,
            args.format,
            false,
            None,
        )?),
        None => None,
    };
    let rt = common::runtime(&settings.limits)?;
    rt.block_on(async {
        let orch = common::engine_builder(&settings).await?.build()?;
        let output = OutputSpec {
            path: args.output.clone(),
            // Without the input only `--output-format` and the output's extension can say.
            format: match &args.input {
                Some(input) => {
                    Format::for_output(args.output_format, args.format, input, &args.output)
                }
                None => Format::for_output(args.output_format, None, &args.output, &args.output),
            },
        };
        let bars = Bars::start(orch.progress().clone(), global);
        let shutdown = common::shutdown_on_signal();
        let report = match job {
            Some(job) => {
                let options = SubmitOptions {
                    wait: WaitMode::UntilCollected,
                    collect_only: true,
                    output: Some(output),
                };
                orch.submit(job, &options, shutdown).await
            }
            None => orch.collect_in_flight(Some(&output), shutdown).await,
        };
        bars.finish();
        let report = report?;
        if !global.quiet {
            common::print_summary(&report);
        }
        if let Some(path) = &args.summary {
            common::write_summary(&report, path)?;
        }
        eprintln!("paybatch: results written to {}", args.output.display());
        Ok(if report.is_complete() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
