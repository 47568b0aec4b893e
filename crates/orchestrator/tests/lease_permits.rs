//! Accounts whose lease another process holds do not keep this process's free accounts
//! waiting: with one permit (`max_concurrent_accounts = 1`) and every account but the first
//! held elsewhere, the first one still runs to the end while the others wait, and they finish
//! once their leases are given back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use orchestrator::SubmitOptions;
use orchestrator::{Format, InputReader, InvalidPolicy, Job, Orchestrator, Settings, Shutdown};
use paybatch_demo::{DemoSpec, LocalWorld, spawn_gateway};
use sequence_ledger::{
    AccountId, BatchState, LeaseAttempt, LeaseOwner, Ledger, SequenceLedger, SledLedger,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_held_elsewhere_give_their_permit_back() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 6,
        transactions: 60,
        max_batch_lines: 10,
        failing_accounts: 0,
        seed: 7,
    };
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let env = [(
        "PAYBATCH__LIMITS__MAX_CONCURRENT_ACCOUNTS".to_string(),
        "1".to_string(),
    )];
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), env, &paybatch_demo::protocols()).unwrap(),
    );
    assert_eq!(settings.limits.max_concurrent_accounts, 1);
    let ledger: Arc<dyn SequenceLedger> = Arc::new(SledLedger::new(Arc::new(
        Ledger::open(&settings.ledger.path).unwrap(),
    )));
    // "Another process" holds every account but the first (tasks run roughly last-spawned
    // first, so a held account is the first to ask for the permit).
    let other = LeaseOwner::this_process().renamed();
    let names: Vec<String> = (0..spec.accounts).map(|i| spec.account_name(i)).collect();
    let mut held = Vec::new();
    for name in &names[1..] {
        let id = AccountId::new(name).unwrap();
        match ledger
            .acquire_lease(&id, &other, Duration::from_secs(600))
            .await
            .unwrap()
        {
            LeaseAttempt::Acquired(lease) => held.push(lease),
            LeaseAttempt::Held(h) => panic!("{h:?}"),
        }
    }
    let mut reader = InputReader::open(&world.input, None).unwrap();
    let job = Arc::new(
        Job::load(
            &mut reader,
            &settings,
            InvalidPolicy::RejectInput,
            &mut |p, _| panic!("{p}"),
        )
        .unwrap(),
    );
    let orch = Orchestrator::builder(settings.clone())
        .ledger(ledger.clone())
        .build()
        .unwrap();
    let run = tokio::spawn(async move {
        orch.submit(job, &SubmitOptions::default(), Shutdown::never())
            .await
    });
    // The free account finishes while the others wait for their leases.
    let free = AccountId::new(&names[0]).unwrap();
    let mut done = false;
    for _ in 0..600 {
        let batches = ledger.batches(&free).await.unwrap();
        if !batches.is_empty() && batches.iter().all(|b| b.state == BatchState::Cleaned) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done,
        "the free account never ran: the waiting accounts kept the only permit"
    );
    for name in &names[1..] {
        let id = AccountId::new(name).unwrap();
        assert!(
            ledger.batches(&id).await.unwrap().is_empty(),
            "{name} ran while another process held it"
        );
    }
    for lease in &held {
        ledger.release_lease(lease).await.unwrap();
    }
    let report = run.await.unwrap().unwrap();
    assert!(report.is_complete(), "{report:?}");
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}
