//! Durable reservations per second through the `SequenceLedger` interface, on sled and on
//! PostgreSQL side by side: one account reserving one batch after another, and several
//! accounts at once (sled's group commit; PostgreSQL's concurrent commits).
//!
//! `cargo bench -p ledger-postgres --bench reserve` (PostgreSQL from `PAYBATCH_TEST_PG_URL`,
//! e.g. after `bash tests/support/servers.sh start && source target/test-servers/env`; without
//! it only sled is measured). Sizes: `LEDGER_BENCH_RESERVATIONS` (default 400 per account),
//! `LEDGER_BENCH_LINES` (lines per batch, default 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_postgres::test_support::fresh_ledger;
use sequence_ledger::conformance::{account, seq};
use sequence_ledger::{
    DEFAULT_LEASE_TTL, LeaseOwner, Ledger, NewBatch, NewBinding, Reserve, SequenceLedger,
    SequenceLedgerExt, SledLedger, content_digest,
};

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(
    ledger: Arc<dyn SequenceLedger>,
    accounts: u32,
    per_account: u32,
    lines: u32,
) -> Duration {
    let owner = LeaseOwner::this_process();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..accounts {
        let ledger = ledger.clone();
        let owner = owner.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("acct-{a}");
            let lease = ledger
                .lease_now(&account(&name), &owner, DEFAULT_LEASE_TTL)
                .await
                .unwrap();
            for n in 1..=per_account {
                let new = NewBatch {
                    sequence: seq(n),
                    request_len: 100,
                    external_reference: None,
                    lines: (0..lines)
                        .map(|i| NewBinding {
                            client_ref: format!("r-{n}-{i}"),
                            index: u64::from(i),
                            content_digest: content_digest([("n", format!("{n}-{i}").as_str())]),
                        })
                        .collect(),
                };
                match ledger.reserve(&lease, new).await.unwrap() {
                    Reserve::Reserved(_) => {}
                    other => panic!("{other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn report(backend: &str, accounts: u32, per_account: u32, lines: u32, took: Duration) {
    let n = f64::from(accounts * per_account);
    println!(
        "{backend:<10} {accounts} account(s) x {per_account} reservations of {lines} line(s): {:>8.0} reservations/s ({:.2} ms each, {:.1} s)",
        n / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n * f64::from(accounts),
        took.as_secs_f64()
    );
}

fn main() {
    let per_account = env("LEDGER_BENCH_RESERVATIONS", 400);
    let lines = env("LEDGER_BENCH_LINES", 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for accounts in [1, 4] {
            let dir = tempfile::tempdir().unwrap();
            let sled: Arc<dyn SequenceLedger> = Arc::new(SledLedger::new(Arc::new(
                Ledger::open(dir.path().join("ledger")).unwrap(),
            )));
            let took = run(sled, accounts, per_account, lines).await;
            report("sled", accounts, per_account, lines, took);
            match std::env::var("PAYBATCH_TEST_PG_URL") {
                Ok(url) => {
                    let pg: Arc<dyn SequenceLedger> =
                        Arc::new(fresh_ledger(&url, "bench_reserve").await);
                    let took = run(pg, accounts, per_account, lines).await;
                    report("postgres", accounts, per_account, lines, took);
                }
                Err(_) => println!("postgres   skipped: PAYBATCH_TEST_PG_URL is not set"),
            }
        }
    });
}
