//! `paybatch demo` — the whole job on generated data: a temporary workspace, a realistic input
//! (20,000 transactions over 25 accounts by default, with declines, errors, and one account
//! whose gateway rejects every batch), gateway-sim in-process on local folders (or the test
//! SFTP/S3 servers), `submit --wait`, then the per-account summary and the paths.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::ValueEnum;
use orchestrator::demo::{DemoSpec, World, spawn_gateway};
use orchestrator::{Format, Orchestrator, OutputSpec, Settings, SubmitOptions, WaitMode};

use super::common::{self, Bars};
use super::{Global, usage_error};

/// Where the demo's drops live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoBackend {
    /// Local folders in the workspace.
    Local,
    /// The test SFTP server (`PAYBATCH_TEST_SFTP_*`, see tests/support/servers.sh).
    Sftp,
    /// The test S3 server (`PAYBATCH_TEST_S3_URL`, `AWS_*`).
    S3,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of batch accounts.
    #[arg(long, default_value_t = 25)]
    pub accounts: usize,
    /// Number of transactions.
    #[arg(long, default_value_t = 20_000)]
    pub txns: usize,
    /// Lines per batch.
    #[arg(long, default_value_t = 500)]
    pub batch_lines: usize,
    /// Where the drops live.
    #[arg(long, value_enum, default_value_t = DemoBackend::Local)]
    pub backend: DemoBackend,
    /// Workspace directory (default: a new folder under the system temp dir, kept afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Input (and output) format.
    #[arg(long, value_parser = common::parse_format, default_value = "csv")]
    pub format: Format,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Only write the workspace (config and input) and print how to run it by hand with
    /// `paybatch gateway-sim` and `paybatch submit`.
    #[arg(long)]
    pub generate_only: bool,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    if args.accounts == 0 || args.txns == 0 || args.batch_lines == 0 {
        return Err(usage_error(
            "--accounts, --txns and --batch-lines must be at least 1",
        ));
    }
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new()
            .prefix("paybatch-demo-")
            .tempdir()
            .context("cannot create a temporary workspace")?
            .keep(),
    };
    let spec = DemoSpec {
        accounts: args.accounts,
        transactions: args.txns,
        max_batch_lines: args.batch_lines,
        failing_accounts: usize::from(args.accounts > 1),
        seed: args.seed,
    };
    let mut targets = Vec::with_capacity(spec.accounts);
    if args.backend != DemoBackend::Local {
        let scheme = match args.backend {
            DemoBackend::Sftp => storage_backends::Scheme::Sftp,
            _ => storage_backends::Scheme::S3,
        };
        for _ in 0..spec.accounts {
            let target = storage_backends::test_env::target(scheme)?.ok_or_else(|| {
                usage_error(format!(
                    "the {:?} test server is not configured; start it with: {}",
                    args.backend,
                    storage_backends::test_env::HOW_TO_START
                ))
            })?;
            targets.push(target.parts());
        }
    }
    let started = Instant::now();
    let world = if targets.is_empty() {
        World::create(&root, spec.clone(), args.format)?
    } else {
        World::with_targets(&root, spec.clone(), args.format, targets)?
    };
    eprintln!(
        "paybatch demo: {} transactions over {} accounts ({} with a gateway that rejects its batches)",
        spec.transactions, spec.accounts, spec.failing_accounts
    );
    if args.generate_only {
        let out = world
            .root
            .join(format!("results.{}", args.format.extension()));
        eprintln!(
            "input:  {}\nconfig: {}",
            world.input.display(),
            world.config.display()
        );
        eprintln!(
            "run:    paybatch gateway-sim --config {c} --state-dir {s} &\n        paybatch submit --config {c} {i} --wait --output {o}",
            c = world.config.display(),
            s = world.gateway_state.display(),
            i = world.input.display(),
            o = out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), []).map_err(|e| usage_error(e.to_string()))?,
    );
    let job = common::load_job(&settings, &world.input, Some(args.format), false, None)?;
    let output = world
        .root
        .join(format!("results.{}", args.format.extension()));
    let rt = common::runtime()?;
    let report = rt.block_on(async {
        let (stop, gateway) = spawn_gateway(world.gateway(true).await?);
        let orch = Orchestrator::builder(settings.clone()).build()?;
        let options = SubmitOptions {
            wait: WaitMode::UntilCollected,
            collect_only: false,
            output: Some(OutputSpec {
                path: output.clone(),
                format: args.format,
            }),
        };
        let bars = Bars::start(orch.progress().clone(), global);
        let report = orch
            .submit(job, &options, common::shutdown_on_signal())
            .await;
        bars.finish();
        let _ = stop.send(());
        gateway.await.context("gateway task")??;
        anyhow::Ok(report?)
    })?;
    common::print_summary(&report);
    let summary = world.root.join("summary.json");
    common::write_summary(&report, &summary)?;
    eprintln!();
    eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
    eprintln!("input:    {}", world.input.display());
    eprintln!("results:  {}", output.display());
    eprintln!("summary:  {}", summary.display());
    eprintln!("ledger:   {}", world.ledger.display());
    eprintln!("config:   {}", world.config.display());
    eprintln!(
        "gateway journal: {}",
        world.gateway_state.join("journal.jsonl").display()
    );
    eprintln!(
        "try:      paybatch status --config {}",
        world.config.display()
    );
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
