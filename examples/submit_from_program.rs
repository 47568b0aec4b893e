//! Submit transactions from another program: settings, a job, the orchestrator, a report.
//!
//! Runs self-contained: a generated world on local folders with gateway-sim in-process.
//! `cargo run --example submit_from_program`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, OutputSpec, Settings, Shutdown,
    SubmitOptions, WaitMode,
};
use paybatch_demo::{DemoSpec, World, spawn_gateway};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let spec = DemoSpec {
        accounts: 3,
        transactions: 500,
        max_batch_lines: 100,
        ..DemoSpec::default()
    };
    let world = World::create(dir.path(), spec, Format::Csv)?;
    // The gateway side, only because this example has no real gateway to talk to.
    let (stop, gateway) = spawn_gateway(world.gateway(false).await?);

    // 1. Settings: compiled-in defaults + a config file + PAYBATCH__… variables.
    let settings = Arc::new(Settings::load(
        Some(&world.config),
        &paybatch_demo::protocols(),
    )?);
    // 2. Read and validate the whole input before anything is reserved or uploaded.
    let mut reader = InputReader::open(&world.input, None)?;
    let job = Job::load(
        &mut reader,
        &settings,
        InvalidPolicy::RejectInput,
        &mut |problem, _| {
            eprintln!("{problem}");
        },
    )?;
    // 3. Submit, wait for every batch, merge into one output in input order.
    let orchestrator = Orchestrator::builder(settings.clone()).build()?;
    let output = world.root.join("results.jsonl");
    let options = SubmitOptions {
        wait: WaitMode::UntilCollected,
        collect_only: false,
        output: Some(OutputSpec {
            path: output.clone(),
            format: Format::Jsonl,
        }),
    };
    let report = orchestrator
        .submit(Arc::new(job), &options, Shutdown::never())
        .await?;

    for (account, r) in &report.accounts {
        println!(
            "{account}: {} approved, {} declined, {} not processed, approved amount {}",
            r.summary.count(orchestrator::LineOutcome::Approved),
            r.summary.count(orchestrator::LineOutcome::Declined),
            r.summary.count(orchestrator::LineOutcome::NotProcessed),
            r.summary.approved_text(),
        );
    }
    println!("transactions: {}", report.transactions);
    println!("complete: {}", report.is_complete());
    let _ = stop.send(());
    gateway.await??;
    Ok(())
}
