//! The database crashes (`pg_ctl -m immediate`: no checkpoint) and comes back while a process
//! writes: every write is acknowledged once the database is back, none is lost, none applied
//! twice. Alone in its test binary: it stops the test server for everyone using it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use ledger_postgres::PgLedger;
use ledger_postgres::test_support::{fresh_database, server_url};
use sequence_ledger::conformance::{account, batch, seq};
use sequence_ledger::{
    BatchState, LeaseAttempt, LeaseOwner, Reserve, SequenceLedger, SequenceLedgerExt, Transition,
};

fn pg(action: &str) {
    let dir = std::env::var("PAYBATCH_TEST_SERVERS_DIR").expect("PAYBATCH_TEST_SERVERS_DIR");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/support/servers.sh"
    );
    let status = Command::new("bash")
        .args([script, "pg", action])
        .env("PAYBATCH_TEST_SERVERS_DIR", dir)
        .status()
        .unwrap();
    assert!(status.success(), "servers.sh pg {action}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_run_loses_nothing() {
    let Some(url) = server_url("a_database_restart_mid_run_loses_nothing") else {
        return;
    };
    if std::env::var("PAYBATCH_TEST_SERVERS_DIR").is_err() {
        eprintln!(
            "skipped: PAYBATCH_TEST_SERVERS_DIR not set (servers.sh writes it into the env file)"
        );
        return;
    }
    let ledger = PgLedger::connect(fresh_database(&url, "restart").await)
        .await
        .unwrap();
    let owner = LeaseOwner::this_process();
    let lease = match ledger
        .acquire_lease(&account("acme"), &owner, Duration::from_secs(120))
        .await
        .unwrap()
    {
        LeaseAttempt::Acquired(l) => l,
        other => panic!("{other:?}"),
    };
    const N: u32 = 40;
    let crash_at = 15;
    let mut restarter = None;
    for n in 1..=N {
        if n == crash_at {
            // Crash it now; bring it back a moment later while the writes below retry.
            pg("crash");
            restarter = Some(std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(1500));
                pg("start");
            }));
        }
        match ledger
            .reserve(&lease, batch(n, &[&format!("r{n}")]))
            .await
            .unwrap()
        {
            Reserve::Reserved(b) => assert_eq!(b.sequence, seq(n)),
            other => panic!("batch {n}: {other:?}"),
        }
        ledger
            .transition(&lease, seq(n), Transition::RequestUploaded)
            .await
            .unwrap();
    }
    restarter.unwrap().join().unwrap();
    let acme = account("acme");
    let batches = ledger.batches(&acme).await.unwrap();
    assert_eq!(batches.len(), N as usize);
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b.sequence, seq(i as u32 + 1));
        assert_eq!(b.state, BatchState::RequestUploaded);
        // Each step once: a retried write was not applied twice.
        assert_eq!(b.transitions.len(), 2, "{b:?}");
    }
    assert_eq!(ledger.next_sequence(&acme).await.unwrap(), seq(N + 1));
    // A second process sees the same after the restart.
    let other = PgLedger::connect(ledger.options().clone()).await.unwrap();
    assert_eq!(other.batches(&acme).await.unwrap(), batches);
}
