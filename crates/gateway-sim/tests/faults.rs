//! The knobs: crash points, gateway-error accounts, failing storage, latency, the run loop,
//! and that no secret reaches logs, journal or state files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{ACCOUNT, BATCH_KEY, Env, MK, sale};
use gateway_sim::{
    AccountMode, CrashAfter, CrashPoint, Error, GatewaySim, Journal, Knobs, SimAccount,
    StorageFaults,
};
use storage_backends::{Backend, LocalBackend, Location};

per_backend!(crash_points, response_before_complete_under_failing_storage);

/// After each crash point: what the client can see, that the simulator stays down, and that a
/// new simulator over the same state never processes the batch again.
async fn crash_points(env: Env) {
    for (round, point) in [
        CrashPoint::AfterAccept,
        CrashPoint::AfterJournal,
        CrashPoint::AfterResponse,
    ]
    .into_iter()
    .enumerate()
    {
        let base = 10 * round as u32;
        let knobs = Knobs::default().with_crash(CrashAfter { batches: 1, point });
        let sim = env.sim(knobs);
        env.submit(base + 1, &[sale("1.00", &format!("c{base}-1"))])
            .await;
        sim.run_once().await.unwrap();
        assert!(env.complete(base + 1).await.unwrap().is_success());
        let batch2 = [
            sale("2.00", &format!("c{base}-2")),
            sale("3.00", &format!("c{base}-3")),
        ];
        env.submit(base + 2, &batch2).await;
        let err = sim.run_once().await.unwrap_err();
        assert!(
            matches!(err, Error::SimulatedCrash { sequence, point: p, .. } if sequence == base + 2 && p == point),
            "{err}"
        );
        assert!(
            env.complete(base + 2).await.is_none(),
            "{point:?}: COMPLETE written"
        );
        let has_response = env.response_bytes(base + 2).await.is_some();
        assert_eq!(
            has_response,
            point == CrashPoint::AfterResponse,
            "{point:?}"
        );
        assert!(
            env.files("Request").await.is_empty(),
            "{point:?}: request files left"
        );
        let journaled = env
            .journal()
            .iter()
            .filter(|e| e.sequence == base + 2)
            .count();
        assert_eq!(
            journaled,
            if point == CrashPoint::AfterAccept {
                0
            } else {
                2
            },
            "{point:?}"
        );
        // Dead until replaced.
        assert!(matches!(
            sim.run_once().await,
            Err(Error::SimulatedCrash { .. })
        ));
        drop(sim);

        // The client re-uploads the same batch (PROTOCOL 2.6): ignored by the new instance.
        let sim = env.sim(Knobs::default());
        env.submit(base + 2, &batch2).await;
        let stats = sim.run_once().await.unwrap();
        assert_eq!((stats.batches_ignored, stats.lines), (1, 0), "{point:?}");
        assert!(env.complete(base + 2).await.is_none());
        env.submit(base + 3, &[sale("4.00", &format!("c{base}-4"))])
            .await;
        assert_eq!(sim.run_once().await.unwrap().batches_succeeded, 1);
        for f in env.files("Response").await {
            env.backend.delete(&format!("Response/{f}")).await.unwrap();
        }
    }
    let mut seen = HashMap::new();
    for e in env.journal() {
        *seen.entry((e.sequence, e.index)).or_insert(0) += 1;
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "processed more than once: {seen:?}"
    );
}

/// A third of all storage operations fail: batches still complete, RESPONSE always exists when
/// COMPLETE does, and every line is processed exactly once.
async fn response_before_complete_under_failing_storage(env: Env) {
    let faults = StorageFaults {
        latency: Duration::ZERO,
        fail_one_in: NonZeroU32::new(3),
        seed: 7,
    };
    let sim = env.sim(Knobs::default().with_storage(faults));
    let mut storage_errors = 0;
    for seq in 1..=4u32 {
        let lines: Vec<_> = (0..3)
            .map(|i| sale(&format!("{seq}.0{i}"), &format!("f{seq}-{i}")))
            .collect();
        env.submit(seq, &lines).await;
        let mut polls = 0;
        while env.complete(seq).await.is_none() {
            polls += 1;
            assert!(polls < 30, "batch {seq} never completed");
            storage_errors += sim.run_once().await.unwrap().storage_errors;
        }
        assert!(
            env.response(seq).await.is_some(),
            "COMPLETE_{seq} without RESPONSE"
        );
        assert_eq!(env.response(seq).await.unwrap().len(), 3);
    }
    assert!(storage_errors > 0, "no injected failure hit");
    let keys: Vec<(u32, u64)> = env
        .journal()
        .iter()
        .map(|e| (e.sequence, e.index))
        .collect();
    let want: Vec<(u32, u64)> = (1..=4).flat_map(|s| (0..3).map(move |i| (s, i))).collect();
    assert_eq!(keys, want);
}

async fn local_backend(dir: &std::path::Path, name: &str) -> Arc<dyn Backend> {
    let loc = Location::parse(&format!("file://{}/{name}", dir.display())).unwrap();
    Arc::new(LocalBackend::new(&loc).await.unwrap())
}

async fn put_batch(b: &dyn Backend, seq: u32, line: &str) {
    let req = format!("xIndex=0&xSequenceNumber={seq}&{line}\n");
    b.put(&format!("Request/REQUEST_{seq}.KVP"), req.into())
        .await
        .unwrap();
    let p = format!("xKey={BATCH_KEY}&xSubmittedCount=1&xFormat=KVP&xSequenceNumber={seq}\n");
    b.put(&format!("Request/PROCESS_{seq}.KVP"), p.into())
        .await
        .unwrap();
}

const SALE_LINE: &str = "xKey=merchant-key-Pw3Jd&xVersion=5.0.0&xSoftwareName=t&xSoftwareVersion=1\
                         &xCommand=cc%3Asale&xCardNum=4111111111111111&xExp=1230&xAmount=5.00";

#[tokio::test]
async fn gateway_error_account_next_to_a_normal_one() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        local_backend(dir.path(), "a").await,
        local_backend(dir.path(), "b").await,
    );
    let down = AccountMode::GatewayError {
        message: "Gateway Unavailable".into(),
    };
    let accounts = vec![
        SimAccount::new("down", a.clone(), BATCH_KEY, [MK])
            .with_knobs(Knobs::default().with_mode(down)),
        SimAccount::new("up", b.clone(), BATCH_KEY, [MK]),
    ];
    let sim = GatewaySim::new(
        accounts,
        gateway_sim::SimOptions::new(dir.path().join("state")),
    )
    .unwrap();
    put_batch(&*a, 1, SALE_LINE).await;
    put_batch(&*b, 1, SALE_LINE).await;
    let stats = sim.run_once().await.unwrap();
    assert_eq!((stats.batches_failed, stats.batches_succeeded), (1, 1));
    let c =
        kvp_format::CompleteFile::parse(&a.get("Response/COMPLETE_1.KVP").await.unwrap()).unwrap();
    assert_eq!(
        (c.status.as_str(), c.error.as_deref(), c.processed_count),
        ("Error", Some("Gateway Unavailable"), Some(0))
    );
    assert!(a.get("Response/RESPONSE_1.KVP").await.is_err());
    let c =
        kvp_format::CompleteFile::parse(&b.get("Response/COMPLETE_1.KVP").await.unwrap()).unwrap();
    assert!(c.is_success());
    let journal = Journal::read(sim.journal_path()).unwrap();
    assert_eq!(
        journal
            .iter()
            .map(|e| e.account.as_str())
            .collect::<Vec<_>>(),
        ["up"]
    );
    // One simulator per state directory at a time.
    let again = GatewaySim::new(
        vec![],
        gateway_sim::SimOptions::new(dir.path().join("state")),
    );
    assert!(matches!(again, Err(Error::InUse { .. })), "{again:?}");
    drop(sim);
    GatewaySim::new(
        vec![],
        gateway_sim::SimOptions::new(dir.path().join("state")),
    )
    .unwrap();
    // Account names become file names: unsafe or repeated ones are refused.
    for bad in [vec!["../x"], vec![""], vec!["same", "same"]] {
        let accounts = bad
            .iter()
            .map(|n| SimAccount::new(*n, a.clone(), BATCH_KEY, [MK]))
            .collect();
        let err = GatewaySim::new(
            accounts,
            gateway_sim::SimOptions::new(dir.path().join("s2")),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
    }
}

#[tokio::test]
async fn latency_uses_tokio_time() {
    tokio::time::pause();
    let dir = tempfile::tempdir().unwrap();
    let b = local_backend(dir.path(), "d").await;
    let slow_storage = StorageFaults {
        latency: Duration::from_secs(10),
        ..StorageFaults::default()
    };
    let knobs = Knobs::default()
        .with_latency(Duration::from_secs(3600), Duration::from_secs(60))
        .with_storage(slow_storage);
    let account = SimAccount::new(ACCOUNT, b.clone(), BATCH_KEY, [MK]).with_knobs(knobs);
    let sim = GatewaySim::new(
        vec![account],
        gateway_sim::SimOptions::new(dir.path().join("s")),
    )
    .unwrap();
    let req = (0..3)
        .map(|i| format!("xIndex={i}&xSequenceNumber=1&{SALE_LINE}&xInvoice=L{i}\n"))
        .collect::<String>();
    b.put("Request/REQUEST_1.KVP", req.into()).await.unwrap();
    let p = format!("xKey={BATCH_KEY}&xSubmittedCount=3&xFormat=KVP&xSequenceNumber=1\n");
    b.put("Request/PROCESS_1.KVP", p.into()).await.unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(sim.run_once().await.unwrap().lines, 3);
    // Batch + 3 lines + 7 storage operations (list, 2 reads, 2 deletes, 2 writes).
    let want = Duration::from_secs(3600 + 3 * 60 + 7 * 10);
    assert!(start.elapsed() >= want, "{:?}", start.elapsed());
}

#[tokio::test]
async fn idle_backoff_slows_empty_polls_and_work_resets_it() {
    tokio::time::pause();
    let dir = tempfile::tempdir().unwrap();
    let b = local_backend(dir.path(), "i").await;
    let account = SimAccount::new(ACCOUNT, b.clone(), BATCH_KEY, [MK]);
    let opts = gateway_sim::SimOptions::new(dir.path().join("s"))
        .with_poll_interval(Duration::from_secs(1))
        .with_idle_backoff(Duration::from_secs(8));
    let sim = Arc::new(GatewaySim::new(vec![account], opts).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn({
        let sim = sim.clone();
        async move {
            sim.run(async {
                let _ = stopped.await;
            })
            .await
        }
    });
    // A minute idle: without the backoff that would be 60 polls.
    tokio::time::sleep(Duration::from_secs(60)).await;
    put_batch(&*b, 1, SALE_LINE).await;
    let start = tokio::time::Instant::now();
    while b.get("Response/COMPLETE_1.KVP").await.is_err() {
        assert!(
            start.elapsed() <= Duration::from_secs(9),
            "not noticed within the 8 s cap"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Work reset the pause to the 1 s poll interval: the next batch is seen at once.
    put_batch(&*b, 2, SALE_LINE).await;
    let start = tokio::time::Instant::now();
    while b.get("Response/COMPLETE_2.KVP").await.is_err() {
        assert!(
            start.elapsed() <= Duration::from_millis(2500),
            "backoff not reset"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    let stats = runner.await.unwrap().unwrap();
    assert_eq!(stats.batches_succeeded, 2);
    assert!(stats.polls < 20, "{} polls", stats.polls);
}

#[tokio::test]
async fn run_polls_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let b = local_backend(dir.path(), "r").await;
    let account = SimAccount::new(ACCOUNT, b.clone(), BATCH_KEY, [MK]);
    let opts = gateway_sim::SimOptions::new(dir.path().join("s"))
        .with_poll_interval(Duration::from_millis(10));
    let sim = Arc::new(GatewaySim::new(vec![account], opts).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn({
        let sim = sim.clone();
        async move {
            sim.run(async {
                let _ = stopped.await;
            })
            .await
        }
    });
    for seq in 1..=2u32 {
        put_batch(&*b, seq, &format!("{SALE_LINE}&xInvoice=R{seq}")).await;
        let path = format!("Response/COMPLETE_{seq}.KVP");
        let mut waited = 0;
        while b.get(&path).await.is_err() {
            waited += 1;
            assert!(waited < 1000, "no COMPLETE_{seq}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop.send(()).unwrap();
    let stats = runner.await.unwrap().unwrap();
    assert_eq!(stats.batches_succeeded, 2);
}
