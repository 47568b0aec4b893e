//! `FlakyBackend` is a test double the simulator's and the orchestrator's tests rely on, so it
//! must be a real backend: wrapped around a local drop, with latency added and no failure
//! injected, it passes storage-backends' whole conformance suite (the same one every real
//! backend passes). Its injected failures are `Transient`, name the file, and happen before the
//! operation reaches the inner backend, so nothing is half-done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway_sim::{FlakyBackend, StorageFaults};
use storage_backends::conformance::{self, CaseResult};
use storage_backends::{Backend, BackendExt, ErrorKind, open, test_env};

/// A `FlakyBackend` over a fresh local drop (the guard keeps the temporary directory).
async fn flaky(faults: StorageFaults) -> (Arc<FlakyBackend>, test_env::TestTarget) {
    let target = test_env::local().unwrap();
    let inner = open(&target.location, &target.options).await.unwrap();
    (Arc::new(FlakyBackend::new(inner, faults)), target)
}

fn slow_but_reliable() -> StorageFaults {
    StorageFaults {
        latency: Duration::from_millis(1),
        fail_one_in: None,
        seed: 1,
    }
}

fn ok(case: &str, outcome: CaseResult) {
    if let Err(f) = outcome {
        panic!("FlakyBackend, case {case}: {f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_quick_cases() {
    let (b, _t) = flaky(slow_but_reliable()).await;
    for (case, outcome) in conformance::run_quick(&*b).await {
        ok(case, outcome);
    }
    assert!(
        b.operations() > 0,
        "every operation went through the wrapper"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_put_if_absent_race() {
    let (b, _t) = flaky(slow_but_reliable()).await;
    ok(
        "put_if_absent_race",
        conformance::put_if_absent_race(b).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_atomic_publish() {
    let (b, _t) = flaky(slow_but_reliable()).await;
    ok("atomic_publish", conformance::atomic_publish(b).await);
}

/// 1,000 files, not the required 10,000: listing that many is the inner backend's property
/// (its own suite runs the full count); here it checks the wrapper passes listings through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_many_files() {
    let (b, _t) = flaky(slow_but_reliable()).await;
    ok("many_files", conformance::many_files(b, 1_000, 32).await);
}

/// An injected failure is transient, names the file, and leaves the drop untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_are_transient_and_change_nothing() {
    let (b, target) = flaky(StorageFaults {
        latency: Duration::ZERO,
        fail_one_in: NonZeroU32::new(1),
        seed: 1,
    })
    .await;
    let path = "Request/REQUEST_1.KVP";
    let err = b
        .put(path, Bytes::from_static(b"xIndex=0\n"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.location().ends_with(path), "{}", err.location());
    let plain = open(&target.location, &target.options).await.unwrap();
    assert!(!plain.exists(path).await.unwrap(), "nothing was written");
}
