//! The engine reads time through tokio's clock, so waiting is tested without waiting: under
//! `tokio::time::pause()` a batch nobody answers becomes Stuck at its deadline in (real)
//! milliseconds, having been polled with the documented backoff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, LineOutcome, Orchestrator, Settings, Shutdown,
    SubmitOptions,
};
use paybatch_demo::{DemoSpec, LocalWorld};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unanswered_batch_is_stuck_at_the_deadline_without_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 1,
        transactions: 12,
        max_batch_lines: 5,
        failing_accounts: 0,
        seed: 41,
    };
    let world = LocalWorld::create(dir.path(), spec, Format::Kvp).unwrap();
    // Polled every 2 s doubling to 30 s; Stuck after two hours.
    let env = [
        ("TIMEOUT", "2h"),
        ("INTERVAL", "2s"),
        ("MAX_INTERVAL", "30s"),
    ]
    .map(|(k, v)| (format!("PAYBATCH__POLL__{k}"), v.to_owned()));
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), env, &paybatch_demo::protocols()).unwrap(),
    );
    assert_eq!(settings.poll.timeout, Duration::from_secs(7200));
    let mut reader = InputReader::open(&world.input, None).unwrap();
    let job = Job::load(
        &mut reader,
        &settings,
        InvalidPolicy::RejectInput,
        &mut |p, _| panic!("{p}"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let virtual_start = tokio::time::Instant::now();
    let orch = Orchestrator::builder(settings).seed(7).build().unwrap();
    let report = orch
        .submit(Arc::new(job), &SubmitOptions::default(), Shutdown::never())
        .await
        .unwrap();
    let account = report.accounts.values().next().unwrap();
    assert_eq!(account.stuck, [1], "{report:?}");
    assert!(
        account
            .summary
            .failure
            .as_deref()
            .unwrap()
            .contains("is Stuck")
    );
    // Batch 1's five lines are unknown; the seven behind it were never sent.
    let totals = report.totals();
    assert_eq!(
        (
            totals.count(LineOutcome::Unknown),
            totals.count(LineOutcome::NotProcessed)
        ),
        (5, 7)
    );
    let waited = virtual_start.elapsed();
    assert!(waited >= Duration::from_secs(7200), "{waited:?}");
    assert!(waited < Duration::from_secs(7200 + 60), "{waited:?}");
    // Not a timing assertion on the machine: two virtual hours cannot have passed for real.
    assert!(started.elapsed() < Duration::from_secs(7200));
}
