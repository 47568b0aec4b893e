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
