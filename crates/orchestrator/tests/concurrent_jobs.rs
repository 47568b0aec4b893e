//! Two jobs submitted at once through one orchestrator, sharing their account: the account's
//! lock makes the second queue behind the first (one batch per account in flight), both finish,
//! the account's numbers strictly increase with the order of triggers, the gateway ignores no
//! PROCESS and processes every transaction exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use orchestrator::{
    Format, InputReader, InputRecord, InvalidPolicy, Job, Orchestrator, RecordSource, Settings,
    Shutdown, SubmitOptions,
};
use paybatch_demo::{DemoSpec, LocalWorld, spawn_gateway};
use sequence_ledger::{AccountId, BatchState};

fn load_job(path: &std::path::Path, settings: &Settings) -> Arc<Job> {
    let mut reader = InputReader::open(path, None).unwrap();
    Arc::new(
        Job::load(
            &mut reader,
            settings,
            InvalidPolicy::RejectInput,
            &mut |p, _| panic!("{p}"),
        )
        .unwrap(),
    )
}

/// A copy of `input` whose refs and invoices carry `tag`: the same account, other transactions.
fn retagged(input: &std::path::Path, out: &std::path::Path, tag: &str) {
    let mut reader = InputReader::open(input, None).unwrap();
    let mut rec = InputRecord::default();
    let mut text = Vec::new();
    while reader.read_record(&mut rec).unwrap() {
        for (i, (k, v)) in rec.fields.iter().enumerate() {
            if i > 0 {
                text.push(b'&');
            }
            let v = if k == "ref" || k == "xInvoice" {
                format!("{tag}{v}")
            } else {
                v.clone()
            };
            kvp_format::encode_pair(k, &v, &mut text);
        }
        text.push(b'\n');
    }
    std::fs::write(out, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_on_one_account_queue_and_both_finish_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 1,
        transactions: 60,
        max_batch_lines: 10,
        failing_accounts: 0,
        seed: 11,
    };
    let world = LocalWorld::create(dir.path(), spec, Format::Kvp).unwrap();
    let second = dir.path().join("second.kvp");
    retagged(&world.input, &second, "B");
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), [], &paybatch_demo::protocols()).unwrap(),
    );
    let (first, other) = (
        load_job(&world.input, &settings),
        load_job(&second, &settings),
    );
    let orch = Orchestrator::builder(settings.clone()).build().unwrap();
    let options = SubmitOptions::default();
    let (a, b) = tokio::join!(
        orch.submit(first, &options, Shutdown::never()),
        orch.submit(other, &options, Shutdown::never()),
    );
    for report in [a.unwrap(), b.unwrap()] {
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(report.totals().total(), 60);
    }

    // Twelve batches, numbered 1..=12, every one finished, and triggered in number order.
    let account = AccountId::new("acct-001").unwrap();
    let batches = orch.ledger().batches(&account).await.unwrap();
    let numbers: Vec<u32> = batches.iter().map(|b| b.sequence.get()).collect();
    assert_eq!(numbers, (1..=12).collect::<Vec<_>>());
    assert!(batches.iter().all(|b| b.state == BatchState::Cleaned));
    let triggered_at = |b: &sequence_ledger::BatchRecord| {
        b.transitions
            .iter()
            .find(|s| s.state == BatchState::Triggered)
            .unwrap()
            .at_unix_ms
    };
    for pair in batches.windows(2) {
        let completed = pair[0]
            .transitions
            .iter()
            .find(|s| matches!(s.state, BatchState::Completed(_)))
            .unwrap()
            .at_unix_ms;
        assert!(
            completed <= triggered_at(&pair[1]),
            "batch {} was triggered before batch {} completed",
            pair[1].sequence,
            pair[0].sequence
        );
    }

    let _ = stop.send(());
    let stats = gateway.await.unwrap().unwrap();
    assert_eq!(stats.batches_ignored, 0, "no PROCESS out of order");
    let journal = gateway_sim::Journal::read(world.gateway_state.join("journal.jsonl")).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in journal {
        *seen.entry(e.invoice.unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), 120);
    assert!(
        seen.values().all(|n| *n == 1),
        "each processed exactly once"
    );
}
