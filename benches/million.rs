//! The throughput benchmark: N transactions (default 1,000,000) over 1,000 accounts on local
//! folders with gateway-sim in-process, through the whole pipeline (validate + spill, plan,
//! reserve, upload, trigger, gateway processing, poll, collect, merge, output).
//!
//! `cargo bench --bench million` (set `PAYBATCH_BENCH_TXNS` / `PAYBATCH_BENCH_ACCOUNTS` to
//! scale). Prints transactions per second and the process's peak RSS (VmHWM; it includes the
//! in-process gateway simulator).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, OutputSpec, Settings, Shutdown,
    SubmitOptions, WaitMode,
};
use paybatch_demo::{DemoSpec, World, spawn_gateway};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // `cargo test --benches` runs benches with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let txns = env_usize("PAYBATCH_BENCH_TXNS", if quick { 2_000 } else { 1_000_000 });
    let accounts = env_usize("PAYBATCH_BENCH_ACCOUNTS", if quick { 10 } else { 1_000 });
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts,
        transactions: txns,
        max_batch_lines: 5_000,
        failing_accounts: 0,
        seed: 1,
    };
    let t0 = Instant::now();
    let world = World::create(dir.path(), spec, Format::Kvp).unwrap();
    let generated = t0.elapsed();
    let input_bytes = std::fs::metadata(&world.input).unwrap().len();
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), [], &paybatch_demo::protocols()).unwrap(),
    );
    // The same runtime limits as `paybatch submit` (`[limits] blocking_threads`).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(settings.limits.blocking_threads)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
        let start = Instant::now();
        let mut reader = InputReader::open(&world.input, None).unwrap();
        let job = Job::load(&mut reader, &settings, InvalidPolicy::RejectInput, &mut |p, _| panic!("{p}")).unwrap();
        let validated = start.elapsed();
        let rss_after_load = peak_rss_mib();
        let orch = Orchestrator::builder(settings.clone()).build().unwrap();
        let options = SubmitOptions {
            wait: WaitMode::UntilCollected,
            collect_only: false,
            output: Some(OutputSpec { path: world.root.join("out.kvp"), format: Format::Kvp }),
        };
        let report = orch.submit(Arc::new(job), &options, Shutdown::never()).await.unwrap();
        let total = start.elapsed();
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(report.transactions as usize, txns);
        let _ = stop.send(());
        gateway.await.unwrap().unwrap();
        println!("paybatch benchmark: {txns} transactions over {accounts} accounts, local drops, gateway-sim in-process");
        println!("  input: {:.1} MiB generated in {:.1} s", input_bytes as f64 / 1048576.0, generated.as_secs_f64());
        println!("  validate + spill: {:.2} s", validated.as_secs_f64());
        println!("  end to end (validate .. merged output): {:.2} s = {:.0} transactions/s", total.as_secs_f64(), txns as f64 / total.as_secs_f64());
        println!("  peak RSS: {:.0} MiB after loading the input, {:.0} MiB at the end (includes the simulator)", rss_after_load, peak_rss_mib());
    });
}
