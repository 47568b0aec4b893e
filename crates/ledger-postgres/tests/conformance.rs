//! The `SequenceLedger` conformance suite on PostgreSQL: every case on a fresh database of the
//! test server (`PAYBATCH_TEST_PG_URL`; skipped with a message without it, a failure with
//! `PAYBATCH_REQUIRE_SERVERS=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use ledger_postgres::test_support::{fresh_ledger, server_url};
use sequence_ledger::SequenceLedger;
use sequence_ledger::conformance::CASES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_on_postgres() {
    let Some(url) = server_url("every_case_on_postgres") else {
        return;
    };
    for (name, case) in CASES {
        let ledger: Arc<dyn SequenceLedger> = Arc::new(fresh_ledger(&url, name).await);
        eprintln!("case {name}");
        case(ledger).await;
    }
}
