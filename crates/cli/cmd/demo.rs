//! `paybatch demo` — the whole job on generated data: a temporary workspace, a realistic input
//! (20,000 transactions over 25 accounts by default, with declines, errors, and one account
//! whose gateway rejects every batch), gateway-sim in-process on local folders (or the test
//! SFTP/S3 servers), `submit --wait`, then the per-account summary and the paths.
//!
//! `--mixed` adds a few Amazon Payment Services accounts served by the APS simulator
//! in-process on 127.0.0.1 (a free port): one KVP input mixing both kinds of accounts, one
//! merged output in input order, one summary covering both gateways.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::ValueEnum;
use gateway_sim::aps::{ApsSim, ApsSimOptions};
use orchestrator::{Format, Orchestrator, OutputSpec, Settings, SubmitOptions, WaitMode};
use paybatch_demo::aps::{ApsDemoAccount, demo_accounts};
use paybatch_demo::{DemoSpec, World, spawn_gateway};

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
    /// Input and output format (default csv; with --mixed the input is always KVP and the
    /// output defaults to KVP too).
    #[arg(long, value_parser = common::parse_format)]
    pub format: Option<Format>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Only write the workspace (config and input) and print how to run it by hand with
    /// `paybatch gateway-sim` and `paybatch submit`.
    #[arg(long)]
    pub generate_only: bool,
    /// Also run Amazon Payment Services accounts (the APS batch simulator on 127.0.0.1) in the
    /// same input, output and summary.
    #[arg(long)]
    pub mixed: bool,
    /// With --mixed: number of APS accounts (`aps-1`, ...).
    #[arg(long, default_value_t = 3, requires = "mixed")]
    pub aps_accounts: usize,
    /// With --mixed: transactions per APS account.
    #[arg(long, default_value_t = 200, requires = "mixed")]
    pub aps_txns: usize,
}

/// The mixed input's APS part, and where its simulator keeps its journal.
struct ApsPart {
    accounts: Vec<ApsDemoAccount>,
    journal: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    if args.accounts == 0 || args.txns == 0 || args.batch_lines == 0 {
        return Err(usage_error(
            "--accounts, --txns and --batch-lines must be at least 1",
        ));
    }
    if args.mixed && (args.aps_accounts == 0 || args.aps_txns == 0) {
        return Err(usage_error(
            "--aps-accounts and --aps-txns must be at least 1",
        ));
    }
    // The mixed input is built by interleaving lines, so its Sola part is KVP.
    let input_format = if args.mixed {
        Format::Kvp
    } else {
        args.format.unwrap_or(Format::Csv)
    };
    let output_format = args.format.unwrap_or(input_format);
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new()
            .prefix("paybatch-demo-")
            .permissions(kvp_format::owner_only::dir_permissions())
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
        World::create(&root, spec.clone(), input_format)?
    } else {
        World::with_targets(&root, spec.clone(), input_format, targets)?
    };
    eprintln!(
        "paybatch demo: {} transactions over {} accounts ({} with a gateway that rejects its batches)",
        spec.transactions, spec.accounts, spec.failing_accounts
    );
    let aps = args.mixed.then(|| {
        eprintln!(
            "               + {} APS transactions over {} APS accounts (APS batch simulator on 127.0.0.1)",
            args.aps_txns * args.aps_accounts,
            args.aps_accounts
        );
        ApsPart {
            accounts: demo_accounts(args.aps_accounts),
            journal: world.root.join("aps-journal.jsonl"),
        }
    });
    let output = world
        .root
        .join(format!("results.{}", output_format.extension()));
    if args.generate_only {
        let input = match &aps {
            // `paybatch gateway-sim` serves APS accounts on their endpoint: pick a free port
            // now and name it in the config.
            Some(part) => {
                let port = std::net::TcpListener::bind(("127.0.0.1", 0))
                    .and_then(|l| l.local_addr())
                    .context("cannot find a free port for the APS simulator")?
                    .port();
                world.add_aps(
                    &format!("http://127.0.0.1:{port}"),
                    &part.accounts,
                    args.aps_txns,
                    args.batch_lines,
                )?
            }
            None => world.input.clone(),
        };
        eprintln!(
            "input:  {}\nconfig: {}",
            input.display(),
            world.config.display()
        );
        eprintln!(
            "run:    paybatch gateway-sim --config {c} --state-dir {s} &\n        paybatch submit --config {c} {i} --wait --output {o}",
            c = world.config.display(),
            s = world.gateway_state.display(),
            i = input.display(),
            o = output.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rt = common::default_runtime()?;
    let (report, input) = rt.block_on(async {
        let (input, aps_sim) = match &aps {
            Some(part) => {
                let sim = ApsSim::start(ApsSimOptions {
                    merchants: part.accounts.iter().map(|a| a.merchant.clone()).collect(),
                    journal: Some(part.journal.clone()),
                    validation_polls: 1,
                    processing_polls: 1,
                    seed: args.seed,
                    ..ApsSimOptions::default()
                })
                .await
                .context("cannot start the APS simulator")?;
                let input = world.add_aps(
                    &sim.endpoint(),
                    &part.accounts,
                    args.aps_txns,
                    args.batch_lines,
                )?;
                (input, Some(sim))
            }
            None => (world.input.clone(), None),
        };
        let settings = Arc::new(
            Settings::load_with_env(Some(&world.config), [], &common::protocols())
                .map_err(|e| usage_error(e.to_string()))?,
        );
        let job = common::load_job(&settings, &input, Some(input_format), false, None)?;
        let (stop, gateway) = spawn_gateway(world.gateway(true).await?);
        let orch = Orchestrator::builder(settings.clone()).build()?;
        let options = SubmitOptions {
            wait: WaitMode::UntilCollected,
            collect_only: false,
            output: Some(OutputSpec {
                path: output.clone(),
                format: output_format,
            }),
        };
        let bars = Bars::start(orch.progress().clone(), global);
        let report = orch
            .submit(job, &options, common::shutdown_on_signal())
            .await;
        bars.finish();
        let _ = stop.send(());
        gateway.await.context("gateway task")??;
        if let Some(sim) = aps_sim {
            sim.shutdown().await;
        }
        anyhow::Ok((report?, input))
    })?;
    common::print_summary(&report);
    let summary = world.root.join("summary.json");
    common::write_summary(&report, &summary)?;
    eprintln!();
    eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
    eprintln!("input:    {}", input.display());
    eprintln!("results:  {}", output.display());
    eprintln!("summary:  {}", summary.display());
    eprintln!("ledger:   {}", world.ledger.display());
    eprintln!("config:   {}", world.config.display());
    eprintln!(
        "gateway journal: {}",
        world.gateway_state.join("journal.jsonl").display()
    );
    if let Some(part) = &aps {
        eprintln!("APS journal:     {}", part.journal.display());
    }
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
