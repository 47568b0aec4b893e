//! Lines per second through the simulator on the local backend: per iteration one batch of
//! 10,000 card sales on one account, or one batch of 1,250 on each of 8 accounts (writing the
//! request files is not timed; listing, reading, checking, processing, journaling with fsync
//! and writing RESPONSE/COMPLETE is).
//!
//! `cargo bench -p gateway-sim --bench throughput`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway_sim::{GatewaySim, SimAccount, SimOptions};
use storage_backends::{Backend, LocalBackend, Location};

const LINES: u64 = 10_000;

fn request(seq: u32, lines: u64) -> (Vec<u8>, Vec<u8>) {
    let mut w = kvp_format::Writer::new(Vec::new());
    let cards = [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
    ];
    for i in 0..lines {
        let amount = format!("{}.{:02}", 1 + i % 500, i % 100);
        let invoice = format!("B{seq}-{i}");
        w.write_pairs([
            ("xIndex", i.to_string().as_str()),
            ("xSequenceNumber", &seq.to_string()),
            ("xKey", "merchant-key"),
            ("xVersion", "5.0.0"),
            ("xSoftwareName", "bench"),
            ("xSoftwareVersion", "1"),
            ("xCommand", "cc:sale"),
            ("xCardNum", cards[(i % 4) as usize]),
            ("xExp", "1299"),
            ("xAmount", &amount),
            ("xName", "Jo Bench"),
            ("xInvoice", &invoice),
            ("xAllowDuplicate", "True"),
        ])
        .unwrap();
    }
    let process =
        format!("xKey=batch-key&xSubmittedCount={lines}&xFormat=KVP&xSequenceNumber={seq}\n");
    (w.into_inner(), process.into_bytes())
}

fn bench_accounts(c: &mut Criterion, accounts: usize) {
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
    let mut group = c.benchmark_group("gateway_sim");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(LINES));
    let name = format!("{accounts}_accounts_x_{per_account}_sales");
    group.bench_function(name.as_str(), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seq += 1;
                let (req, process) = request(seq, per_account);
                rt.block_on(async {
                    for backend in &backends {
                        backend
                            .put(&format!("Request/REQUEST_{seq}.KVP"), req.clone().into())
                            .await
                            .unwrap();
                        backend
                            .put(
                                &format!("Request/PROCESS_{seq}.KVP"),
                                process.clone().into(),
                            )
                            .await
                            .unwrap();
                    }
                    let start = Instant::now();
                    let stats = sim.run_once().await.unwrap();
                    total += start.elapsed();
                    assert_eq!(stats.approved, LINES);
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
    bench_accounts(c, 1);
    bench_accounts(c, 8);
    bench_idle_poll(c);
}

criterion_group!(benches, bench);
criterion_main!(benches);
