//! Durable reservations and transitions per second, with and without the fsync.
//!
//! `cargo bench -p sequence-ledger --bench ledger` (numbers in the crate README).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, Commit, Durability, Ledger, LedgerOptions, NewBatch, NewBinding, Reserve, Transition,
};

fn new_batch(seq: SequenceNumber, lines: u64, tag: u64) -> NewBatch {
    NewBatch {
        sequence: seq,
        request_len: 240 * lines,
        external_reference: None,
        lines: (0..lines)
            .map(|i| NewBinding {
                client_ref: format!("ref-{tag}-{i}"),
                index: i,
                content_digest: [i as u8; 32],
            })
            .collect(),
    }
}

fn open(durability: Durability) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ledger = Ledger::open_with(
        dir.path().join("l"),
        LedgerOptions::with_durability(durability),
    )
    .unwrap();
    (dir, ledger)
}

fn reserve_one(ledger: &Ledger, account: &AccountId, lines: u64, tag: u64) -> SequenceNumber {
    let seq = ledger.next_sequence(account).unwrap();
    match ledger.reserve(account, new_batch(seq, lines, tag)).unwrap() {
        Reserve::Reserved(_) => seq,
        other => panic!("{other:?}"),
    }
}

fn reservations(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (name, durability) in [
        ("fsync", Durability::Fsync),
        ("flush_only", Durability::FlushOnly),
    ] {
        for lines in [1u64, 100] {
            let (_dir, ledger) = open(durability);
            let account = AccountId::new("bench").unwrap();
            let mut tag = 0u64;
            group.bench_function(format!("{name}/{lines}_lines"), |b| {
                b.iter(|| {
                    tag += 1;
                    reserve_one(&ledger, &account, lines, tag)
                })
            });
        }
    }
    group.finish();
}

/// Four threads reserving for four accounts at once: concurrent writers share flushes (group
/// commit), so the rate per reservation goes up.
fn concurrent_reservations(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_4_threads");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    let (_dir, ledger) = open(Durability::Fsync);
    let accounts: Vec<AccountId> = (0..4)
        .map(|i| AccountId::new(format!("bench-{i}")).unwrap())
        .collect();
    let mut tag = 0u64;
    group.bench_function("fsync/1_lines", |b| {
        b.iter_custom(|iters| {
            tag += 1;
            let start = Instant::now();
            std::thread::scope(|s| {
                for (t, account) in (0u64..).zip(&accounts) {
                    let (ledger, tag) = (&ledger, tag * 1_000_000 + t * 100_000);
                    let n = iters / 4 + u64::from(t < iters % 4);
                    s.spawn(move || {
                        for i in 0..n {
                            reserve_one(ledger, account, 1, tag + i);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

fn transitions(c: &mut Criterion) {
    let mut group = c.benchmark_group("transition");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (name, durability) in [
        ("fsync", Durability::Fsync),
        ("flush_only", Durability::FlushOnly),
    ] {
        let (_dir, ledger) = open(durability);
        let account = AccountId::new("bench").unwrap();
        let mut tag = 0u64;
        // Each iteration: one reservation outside the clock, then RequestUploaded timed.
        group.bench_function(format!("{name}/request_uploaded"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    tag += 1;
                    let seq = reserve_one(&ledger, &account, 1, tag);
                    let start = Instant::now();
                    ledger
                        .transition(&account, seq, Transition::RequestUploaded)
                        .unwrap();
                    total += start.elapsed();
                    ledger
                        .transition(
                            &account,
                            seq,
                            Transition::Abandoned {
                                reason: "bench".into(),
                            },
                        )
                        .unwrap();
                }
                total
            })
        });
    }
    // A step that can be repeated after a crash, without an fsync of its own
    // (`Commit::Deferred`): what `Triggered` and `Cleaned` cost in a run.
    let (_dir, ledger) = open(Durability::Fsync);
    let account = AccountId::new("bench").unwrap();
    let mut tag = 0u64;
    group.bench_function("deferred/triggered", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                tag += 1;
                let seq = reserve_one(&ledger, &account, 1, tag);
                ledger
                    .transition(&account, seq, Transition::RequestUploaded)
                    .unwrap();
                let start = Instant::now();
                ledger
                    .transition_with(&account, seq, Transition::Triggered, Commit::Deferred)
                    .unwrap();
                total += start.elapsed();
                ledger
                    .transition(
                        &account,
                        seq,
                        Transition::Abandoned {
                            reason: "bench".into(),
                        },
                    )
                    .unwrap();
            }
            total
        })
    });
    group.finish();
}

/// The one JSON value per batch: is serde_json fast and small enough? (A batch's references
/// and results are binary blobs.)
fn batch_record_json(c: &mut Criterion) {
    let (_dir, ledger) = open(Durability::FlushOnly);
    let account = AccountId::new("bench").unwrap();
    let seq = reserve_one(&ledger, &account, 1, 0);
    for t in [
        Transition::RequestUploaded,
        Transition::Triggered,
        Transition::Stuck,
    ] {
        ledger.transition(&account, seq, t).unwrap();
    }
    let record = ledger.batch(&account, seq).unwrap().unwrap();
    let bytes = serde_json::to_vec(&record).unwrap();
    eprintln!("batch record as JSON: {} bytes", bytes.len());
    let mut group = c.benchmark_group("batch_record_json");
    group.bench_function("encode", |b| {
        b.iter(|| serde_json::to_vec(&record).unwrap())
    });
    group.bench_function("decode", |b| {
        b.iter(|| serde_json::from_slice::<sequence_ledger::BatchRecord>(&bytes).unwrap())
    });
    group.finish();
}

criterion_group!(
    benches,
    reservations,
    concurrent_reservations,
    transitions,
    batch_record_json
);
criterion_main!(benches);
