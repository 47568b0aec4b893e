//! The `SequenceLedger` conformance suite on the sled backend (`SledLedger`), one test per case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use sequence_ledger::conformance::CASES;
use sequence_ledger::{Ledger, SequenceLedger, SledLedger};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_on_sled() {
    for (name, case) in CASES {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path().join("ledger")).unwrap();
        let ledger: Arc<dyn SequenceLedger> = Arc::new(SledLedger::new(Arc::new(ledger)));
        eprintln!("case {name}");
        case(ledger).await;
    }
}

/// The sled backend drops an account's reference index once no one works on it (lease given
/// back, a view of it dropped) and the index is over its budget; the account's bindings still
/// hold, built again from the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_accounts_index_is_dropped_and_its_bindings_hold() {
    use sequence_ledger::conformance::{account, batch, digest, lease, reserve, seq};
    use sequence_ledger::{Durability, LedgerOptions};

    let dir = tempfile::tempdir().unwrap();
    let options = LedgerOptions::with_durability(Durability::FlushOnly).index_budget(0);
    let sync = Arc::new(Ledger::open_with(dir.path().join("ledger"), options).unwrap());
    let ledger = SledLedger::new(Arc::clone(&sync));
    let held = lease(&ledger, "a").await;
    reserve(&ledger, &held, batch(1, &["r-1", "r-2"])).await;
    assert!(sync.index_bytes() > 0, "loaded by the reservation");

    // A view dropped while the lease is held keeps the index: the account is being worked on.
    let view = ledger.blocking_view(&account("a")).unwrap();
    let bound = view.binding_with("r-2", &digest("1.00")).unwrap();
    drop(view);
    assert_eq!(bound.map(|b| (b.sequence, b.index)), Some((seq(1), 1)));
    assert!(sync.index_bytes() > 0, "kept while the lease is held");

    ledger.release_lease(&held).await.unwrap();
    assert_eq!(sync.index_bytes(), 0, "dropped with the lease");

    // Asked again (a merge after the run): built from the ledger, dropped with the view.
    let view = ledger.blocking_view(&account("a")).unwrap();
    let bound = view.binding_with("r-1", &digest("1.00")).unwrap();
    assert_eq!(bound.map(|b| (b.sequence, b.index)), Some((seq(1), 0)));
    assert!(sync.index_bytes() > 0);
    drop(view);
    assert_eq!(sync.index_bytes(), 0, "dropped with the view");

    // A new holder cannot bind the same reference again.
    let again = lease(&ledger, "a").await;
    let conflict = ledger.reserve(&again, batch(2, &["r-1"])).await.unwrap();
    assert!(
        matches!(conflict, sequence_ledger::Reserve::Conflict { .. }),
        "{conflict:?}"
    );
}
