//! Lines per second through the simulator on the local backend. Per iteration, 10,000 lines:
//! one batch on one account, or one batch of 1,250 on each of 8 accounts. Writing the request
//! files is not timed; listing, reading, checking, processing, journaling with fsync and
//! writing RESPONSE/COMPLETE is.
//!
//! Shapes of the lines:
//! - `sales`: card sales over four cards, `xAllowDuplicate=True` (the original benchmark);
//! - `mixed`: what `paybatch demo` sends — mostly sales over four cards with unique invoices,
//!   a few declines, issuer errors and credits, names and custom fields that need escaping;
//! - `new_cards`: card sales on a card never seen before, so every line issues a token.
//!
//! Besides criterion's wall-clock figures, each case prints the CPU time the process spent in
//! the timed part (user + system, all threads, from `/proc/self/stat`) per line, and the lines
//! per CPU-second it gives: what one core sustains, whatever else the machine runs.
//!
//! `cargo bench -p gateway-sim --bench throughput`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway_sim::{GatewaySim, SimAccount, SimOptions};
use storage_backends::{Backend, LocalBackend, Location};

const LINES: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Sales,
    Mixed,
    NewCards,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Sales => "sales",
            Shape::Mixed => "mixed",
            Shape::NewCards => "new_cards",
        }
    }
}

const CARDS: [&str; 4] = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
];

/// A Luhn-valid 16-digit Visa number unique to `n`.
fn card_number(n: u64) -> String {
    let body = format!("4{:014}", n % 100_000_000_000_000);
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn request(seq: u32, account: usize, lines: u64, shape: Shape) -> (Vec<u8>, Vec<u8>) {
    let mut w = kvp_format::Writer::new(Vec::new());
    let names = [
        "Ada Lovelace",
        "José Müller & Søn",
        "李 小龍",
        "O'Brien+Co",
        "Zoë 100% = ok",
        "Jean-Luc Picard",
    ];
    let mut rng = fastrand::Rng::with_seed(u64::from(seq) * 1_000 + account as u64);
    for i in 0..lines {
        let index = i.to_string();
        let sequence = seq.to_string();
        let mut pairs: Vec<(&str, String)> = vec![
            ("xIndex", index),
            ("xSequenceNumber", sequence),
            ("xKey", "merchant-key".into()),
            ("xVersion", "5.0.0".into()),
            ("xSoftwareName", "bench".into()),
            ("xSoftwareVersion", "1".into()),
        ];
        let amount = format!("{}.{:02}", 1 + i % 500, i % 100);
        let invoice = format!("B{seq}-{account}-{i}");
        match shape {
            Shape::Sales => pairs.extend([
                ("xCommand", "cc:sale".into()),
                ("xCardNum", CARDS[(i % 4) as usize].into()),
                ("xExp", "1299".into()),
                ("xAmount", amount),
                ("xName", "Jo Bench".into()),
                ("xInvoice", invoice),
                ("xAllowDuplicate", "True".into()),
            ]),
            Shape::Mixed => {
                let (command, card, amount) = match rng.u32(..1000) {
                    0..=14 => ("cc:sale", "4000000000000002", amount),
                    15..=24 => ("cc:sale", "4111111111111111", "13.13".to_owned()),
                    25..=39 => ("cc:sale", "4000000000000119", amount),
                    40..=89 => ("cc:credit", "5555555555554444", amount),
                    _ => ("cc:sale", CARDS[rng.usize(..4)], amount),
                };
                pairs.extend([
                    ("xCommand", command.into()),
                    ("xCardNum", card.into()),
                    ("xExp", "1230".into()),
                    ("xAmount", amount),
                    ("xName", names[rng.usize(..names.len())].into()),
                    ("xInvoice", invoice),
                    ("xCustom01", format!("order {i} a+b=c&d%")),
                ]);
            }
            Shape::NewCards => pairs.extend([
                ("xCommand", "cc:sale".into()),
                (
                    "xCardNum",
                    card_number((u64::from(seq) * 64 + account as u64) * LINES + i),
                ),
                ("xExp", "1299".into()),
                ("xAmount", amount),
                ("xName", "Jo Bench".into()),
                ("xInvoice", invoice),
            ]),
        }
        w.write_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
            .unwrap();
    }
    let process =
        format!("xKey=batch-key&xSubmittedCount={lines}&xFormat=KVP&xSequenceNumber={seq}\n");
    (w.into_inner(), process.into_bytes())
}

/// CPU time (user + system) of this process so far, all threads included.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th, stime the 13th; both in clock ticks (USER_HZ, 100 on Linux).
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn bench_accounts(c: &mut Criterion, accounts: usize, shape: Shape) {
    let per_account = LINES / accounts as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    let mut sim_accounts = Vec::new();
    for i in 0..accounts {
        let loc = Location::parse(&format!("file://{}/drop{i}", dir.path().display())).unwrap();
        let backend: Arc<dyn Backend> = Arc::new(rt.block_on(LocalBackend::new(&loc)).unwrap());
        sim_accounts.push(SimAccount::new(
            format!("a{i}"),
            backend.clone(),
            "batch-key",
            ["merchant-key"],
        ));
        backends.push(backend);
    }
    let sim = GatewaySim::new(sim_accounts, SimOptions::new(dir.path().join("state"))).unwrap();
    let mut seq = 0u32;
    let mut cpu = Duration::ZERO;
    let mut lines = 0u64;
    let mut group = c.benchmark_group("gateway_sim");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(LINES));
    let name = format!("{accounts}_accounts_x_{per_account}_{}", shape.name());
    group.bench_function(name.as_str(), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seq += 1;
                let files: Vec<_> = (0..accounts)
                    .map(|i| request(seq, i, per_account, shape))
                    .collect();
                rt.block_on(async {
                    for (backend, (req, process)) in backends.iter().zip(files) {
                        backend
                            .put(&format!("Request/REQUEST_{seq}.KVP"), req.into())
                            .await
                            .unwrap();
                        backend
                            .put(&format!("Request/PROCESS_{seq}.KVP"), process.into())
                            .await
                            .unwrap();
                    }
                    let (start, start_cpu) = (Instant::now(), process_cpu());
                    let stats = sim.run_once().await.unwrap();
                    total += start.elapsed();
                    cpu += process_cpu() - start_cpu;
                    lines += stats.lines;
                    assert_eq!(stats.lines, LINES);
                    if shape != Shape::Mixed {
                        assert_eq!(stats.approved, LINES);
                    }
                    for backend in &backends {
                        backend
                            .delete(&format!("Response/RESPONSE_{seq}.KVP"))
                            .await
                            .unwrap();
                        backend
                            .delete(&format!("Response/COMPLETE_{seq}.KVP"))
                            .await
                            .unwrap();
                    }
                });
            }
            total
        });
    });
    group.finish();
    let per_line = cpu.as_secs_f64() / lines as f64;
    println!(
        "gateway_sim/{name}: CPU {:.2} µs/line, {:.0} lines per CPU-second ({lines} lines, {:.2} s CPU)",
        per_line * 1e6,
        1.0 / per_line,
        cpu.as_secs_f64()
    );
}

/// The cost of one poll that finds nothing, over 1,000 accounts (what a busy client pays for
/// a short poll interval).
fn bench_idle_poll(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let accounts = (0..1_000)
        .map(|i| {
            let loc = Location::parse(&format!("file://{}/drop{i}", dir.path().display())).unwrap();
            let backend: Arc<dyn Backend> = Arc::new(rt.block_on(LocalBackend::new(&loc)).unwrap());
            SimAccount::new(format!("a{i}"), backend, "batch-key", ["merchant-key"])
        })
        .collect();
    let sim = GatewaySim::new(accounts, SimOptions::new(dir.path().join("state"))).unwrap();
    let mut group = c.benchmark_group("gateway_sim");
    group.sample_size(10);
    group.bench_function("idle_poll_1000_accounts", |b| {
        b.iter(|| rt.block_on(sim.run_once()).unwrap());
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    for shape in [Shape::Sales, Shape::Mixed, Shape::NewCards] {
        bench_accounts(c, 1, shape);
    }
    bench_accounts(c, 8, Shape::Sales);
    bench_idle_poll(c);
}

criterion_group!(benches, bench);
criterion_main!(benches);
