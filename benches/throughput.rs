//! What one `paybatch submit --wait` process costs, measured from outside as an operator would
//! (the figures of issue 12): the real binary against `paybatch gateway-sim` in another
//! process, on local drops, release build.
//!
//! `cargo bench --bench throughput` runs two workloads and prints one table:
//! - 1,000,000 transactions over 1,000 accounts (`max_batch_lines` 5,000): CPU (user + sys)
//!   per transaction, peak RSS, ledger bytes on disk per transaction;
//! - 200,000 transactions over 10,000 accounts (20 each, one batch per account): CPU per batch,
//!   after the per-transaction cost of the first run.
//!
//! Also 200,000 transactions over the 1,000 accounts, for the memory slope (peak RSS per added
//! transaction between 200,000 and 1,000,000).
//!
//! Each submit is measured by `getrusage(RUSAGE_CHILDREN)` in a process of its own (this bench
//! re-executed), so its CPU and peak RSS are the submit child's alone; the simulator is another
//! process. Scale with `PAYBATCH_BENCH_SCALE` (a divisor: `10` runs a tenth of every
//! workload). Plain `cargo test --benches` runs it at a tiny scale.
//!
//! `PAYBATCH_BENCH_LEDGER=postgres` puts the ledger on PostgreSQL instead of sled: a fresh
//! database per workload on the server of `PAYBATCH_TEST_PG_URL` (the test server of
//! `tests/support/servers.sh`). The CPU and peak RSS are still the submit's alone (not the
//! database server's); "ledger bytes" is then `pg_database_size` after the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use orchestrator::Format;
use paybatch_demo::{DemoSpec, World};

struct Run {
    transactions: u64,
    accounts: u64,
    batches: u64,
    cpu: Duration,
    user: Duration,
    sys: Duration,
    peak_rss_mib: f64,
    ledger_bytes: u64,
    wall: Duration,
}

fn children_cpu() -> (Duration, Duration, i64) {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    (
        tv(usage.user_time()),
        tv(usage.system_time()),
        usage.max_rss(),
    )
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn paybatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybatch"));
    cmd.env_remove("PAYBATCH_CRASH_AT").env_remove("RUST_LOG");
    cmd
}

fn start_simulator(world: &World) -> Child {
    paybatch()
        .args(["-q", "gateway-sim", "--config"])
        .arg(&world.config)
        .arg("--state-dir")
        .arg(&world.gateway_state)
        .args(["--poll-interval", "20ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// In the re-executed measuring process: runs the submit given in `PAYBATCH_BENCH_SUBMIT`
/// (config, input, output separated by newlines) and prints its user and system CPU in
/// microseconds and its peak RSS in KiB.
fn measure_submit(spec: &str) {
    let mut parts = spec.split('\n');
    let (config, input, out) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let status = paybatch()
        .args([
            "-q", "submit", "--config", config, input, "--wait", "--output", out,
        ])
        .env("PAYBATCH__POLL__INTERVAL", "20ms")
        .env("PAYBATCH__POLL__MAX_INTERVAL", "100ms")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "submit failed: {status}");
    let (user, sys, max_rss_kib) = children_cpu();
    println!("{} {} {max_rss_kib}", user.as_micros(), sys.as_micros());
}

/// The PostgreSQL server to put the ledgers on, when `PAYBATCH_BENCH_LEDGER=postgres`.
fn postgres() -> Option<String> {
    match std::env::var("PAYBATCH_BENCH_LEDGER").as_deref() {
        Ok("postgres") => Some(
            std::env::var("PAYBATCH_TEST_PG_URL")
                .expect("PAYBATCH_BENCH_LEDGER=postgres needs PAYBATCH_TEST_PG_URL"),
        ),
        Ok("sled") | Err(_) => None,
        Ok(other) => panic!("PAYBATCH_BENCH_LEDGER={other}: sled or postgres"),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn run(dir: &Path, transactions: usize, accounts: usize, max_batch_lines: usize) -> Run {
    let spec = DemoSpec {
        accounts,
        transactions,
        max_batch_lines,
        failing_accounts: 0,
        seed: 12,
    };
    let world = World::create(dir, spec, Format::Kvp).unwrap();
    let sim = start_simulator(&world);
    let out = dir.join("out.kvp");
    let started = Instant::now();
    let spec = format!(
        "{}\n{}\n{}",
        world.config.display(),
        world.input.display(),
        out.display()
    );
    let database = postgres().map(|server| {
        let label = format!("bench_{transactions}_{accounts}");
        block_on(ledger_postgres::test_support::fresh_database_url(
            &server, &label,
        ))
    });
    let mut measure = Command::new(std::env::current_exe().unwrap());
    measure.env("PAYBATCH_BENCH_SUBMIT", spec);
    if let Some(url) = &database {
        measure.env("PAYBATCH__LEDGER__URL", url);
    }
    let measured = measure.stderr(Stdio::inherit()).output().unwrap();
    let wall = started.elapsed();
    stop(sim);
    assert!(measured.status.success(), "measuring process failed");
    let figures: Vec<u64> = String::from_utf8_lossy(&measured.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (user, sys, max_rss_kib) = (
        Duration::from_micros(figures[0]),
        Duration::from_micros(figures[1]),
        figures[2],
    );
    let ledger_bytes = match &database {
        Some(url) => block_on(async {
            let options = ledger_postgres::PgOptions::new(url).unwrap();
            let client = ledger_postgres::test_support::sql(&options).await;
            let row = client
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0) as u64
        }),
        None => dir_bytes(&world.root.join("ledger")),
    };
    Run {
        transactions: transactions as u64,
        accounts: accounts as u64,
        batches: (0..accounts)
            .map(|i| {
                let lines = transactions / accounts + usize::from(i < transactions % accounts);
                lines.div_ceil(max_batch_lines) as u64
            })
            .sum(),
        cpu: user + sys,
        user,
        sys,
        peak_rss_mib: max_rss_kib as f64 / 1024.0,
        ledger_bytes,
        wall,
    }
}

fn main() {
    if let Ok(spec) = std::env::var("PAYBATCH_BENCH_SUBMIT") {
        measure_submit(&spec);
        return;
    }
    // `cargo test --benches` runs this without `--bench`: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let scale: usize = std::env::var("PAYBATCH_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 500 } else { 1 });
    let root = tempfile::tempdir().unwrap();
    let accounts = (1_000 / scale).max(1);
    let big = run(&root.path().join("big"), 1_000_000 / scale, accounts, 5_000);
    let fifth = run(&root.path().join("fifth"), 200_000 / scale, accounts, 5_000);
    let small = run(
        &root.path().join("small"),
        200_000 / scale,
        (10_000 / scale).max(1),
        5_000,
    );
    let per_tx = big.cpu.as_secs_f64() / big.transactions as f64;
    let per_batch =
        (small.cpu.as_secs_f64() - per_tx * small.transactions as f64) / small.batches as f64;
    let build = if cfg!(debug_assertions) {
        "debug build: figures not comparable"
    } else {
        "release build"
    };
    let on = if postgres().is_some() {
        "ledger on PostgreSQL"
    } else {
        "ledger on sled"
    };
    println!("paybatch submit --wait, {build}, {on}, gateway-sim in another process, local drops");
    for (name, r) in [
        ("many lines", &big),
        ("a fifth of the lines", &fifth),
        ("many accounts", &small),
    ] {
        println!(
            "{name}: {} transactions over {} accounts ({} batches): CPU {:.2} s (user {:.2}, sys {:.2}), \
             {:.2} µs/transaction, peak RSS {:.0} MiB, ledger {} bytes ({:.0} per transaction), wall {:.1} s",
            r.transactions,
            r.accounts,
            r.batches,
            r.cpu.as_secs_f64(),
            r.user.as_secs_f64(),
            r.sys.as_secs_f64(),
            r.cpu.as_secs_f64() * 1e6 / r.transactions as f64,
            r.peak_rss_mib,
            r.ledger_bytes,
            r.ledger_bytes as f64 / r.transactions as f64,
            r.wall.as_secs_f64(),
        );
    }
    println!(
        "per batch (many accounts, after {:.2} µs per transaction): {:.3} ms of CPU",
        per_tx * 1e6,
        per_batch * 1e3
    );
    let slope = (big.peak_rss_mib - fifth.peak_rss_mib) * 1024.0 * 1024.0
        / (big.transactions - fifth.transactions).max(1) as f64;
    println!(
        "memory slope: peak RSS {:.0} MiB at {} and {:.0} MiB at {} transactions: {slope:.0} bytes per added transaction",
        fifth.peak_rss_mib, fifth.transactions, big.peak_rss_mib, big.transactions
    );
}
