//! One test suite for every backend of [`SequenceLedger`] (feature `test-support`): the same
//! calls must give the same answers on sled and on a shared database. Each case takes a fresh,
//! empty ledger; a backend's test file runs every case of [`CASES`] on a new ledger of its
//! own:
//!
//! ```ignore
//! for (name, case) in sequence_ledger::conformance::CASES {
//!     case(fresh_ledger().await).await;   // panics (with the case's name) on a difference
//! }
//! ```
//!
//! The lease cases use short times to live and wait for expiry in bounded loops; nothing
//! asserts on how long anything took.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kvp_format::SequenceNumber;

use crate::{
    AccountId, BatchOutcome, BatchState, Commit, ConflictKind, Error, Lease, LeaseAttempt,
    LeaseOwner, NewBatch, NewBinding, PerLineAnswer, RefQuery, RefStatus, Release, Reserve,
    SequenceLedger, SequenceLedgerExt, StoredResult, Transition, Verdict, content_digest,
};

mod leases;

/// A case: a fresh ledger in, panics on a failure.
pub type Case = fn(Arc<dyn SequenceLedger>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("numbers_and_races", |l| Box::pin(numbers_and_races(l))),
    ("bad_batches_write_nothing", |l| {
        Box::pin(bad_batches_write_nothing(l))
    }),
    ("the_state_machine", |l| Box::pin(the_state_machine(l))),
    ("trigger_order", |l| Box::pin(trigger_order(l))),
    ("bindings_and_conflicts", |l| {
        Box::pin(bindings_and_conflicts(l))
    }),
    ("results_and_rejected_batches", |l| {
        Box::pin(results_and_rejected_batches(l))
    }),
    ("operators_steps", |l| Box::pin(operators_steps(l))),
    ("prune_keeps_idempotency", |l| {
        Box::pin(prune_keeps_idempotency(l))
    }),
    ("export_lines", |l| Box::pin(export_lines(l))),
    ("leases_fence_writes", |l| {
        Box::pin(leases::leases_fence_writes(l))
    }),
    ("an_expired_lease_is_taken_over", |l| {
        Box::pin(leases::an_expired_lease_is_taken_over(l))
    }),
    ("a_released_lease_is_free", |l| {
        Box::pin(leases::a_released_lease_is_free(l))
    }),
    ("a_kept_lease_is_renewed_until_lost", |l| {
        Box::pin(leases::a_kept_lease_is_renewed_until_lost(l))
    }),
    ("a_blocking_view_answers_alike", |l| {
        Box::pin(a_blocking_view_answers_alike(l))
    }),
];

/// The time to live of the suite's leases, except where a case wants one to expire.
pub const TTL: Duration = Duration::from_secs(60);

/// An account id.
pub fn account(name: &str) -> AccountId {
    AccountId::new(name).unwrap()
}

/// A sequence number.
pub fn seq(n: u32) -> SequenceNumber {
    SequenceNumber::new(n).unwrap()
}

/// The content digest the suite gives a reference (`content` changes it).
pub fn digest(content: &str) -> [u8; 32] {
    content_digest([("xCommand", "cc:sale"), ("xAmount", content)])
}

/// A new batch of `refs`, each line's content `"1.00"`.
pub fn batch(n: u32, refs: &[&str]) -> NewBatch {
    batch_with(n, refs, "1.00")
}

/// A new batch of `refs` with one content for all.
pub fn batch_with(n: u32, refs: &[&str], content: &str) -> NewBatch {
    NewBatch {
        sequence: seq(n),
        request_len: 100,
        external_reference: None,
        lines: refs
            .iter()
            .enumerate()
            .map(|(i, r)| NewBinding {
                client_ref: (*r).to_string(),
                index: i as u64,
                content_digest: digest(content),
            })
            .collect(),
    }
}

/// Takes the account's lease for a fresh owner of this process.
pub async fn lease(ledger: &dyn SequenceLedger, name: &str) -> Lease {
    let owner = LeaseOwner::this_process();
    match ledger
        .acquire_lease(&account(name), &owner, TTL)
        .await
        .unwrap()
    {
        LeaseAttempt::Acquired(l) => l,
        LeaseAttempt::Held(other) => panic!("{name} is held by {}", other.owner),
    }
}

/// Reserves and asserts it was reserved.
pub async fn reserve(ledger: &dyn SequenceLedger, lease: &Lease, new: NewBatch) {
    let n = new.sequence;
    match ledger.reserve(lease, new).await.unwrap() {
        Reserve::Reserved(b) => {
            assert_eq!((b.sequence, b.state), (n, BatchState::Reserved));
        }
        other => panic!("batch {n}: {other:?}"),
    }
}

/// Moves a reserved batch to `Triggered`.
pub async fn trigger(ledger: &dyn SequenceLedger, lease: &Lease, n: u32) {
    ledger
        .transition(lease, seq(n), Transition::RequestUploaded)
        .await
        .unwrap();
    ledger
        .transition(lease, seq(n), Transition::Triggered)
        .await
        .unwrap();
}

fn success() -> Transition {
    Transition::Completed(Verdict::new(BatchOutcome::Success, "Success"))
}

fn approved(index: u64) -> StoredResult {
    StoredResult {
        index,
        fields: kvp_format::Record::from(vec![
            ("xResult".into(), "A".into()),
            ("xRefNum".into(), format!("{}", 1000 + index)),
        ]),
    }
}

/// Reserves, uploads, triggers, completes with success and stores every line approved.
pub async fn finish(ledger: &dyn SequenceLedger, lease: &Lease, new: NewBatch) {
    let n = new.sequence.get();
    let lines = new.lines.len() as u64;
    reserve(ledger, lease, new).await;
    trigger(ledger, lease, n).await;
    ledger
        .complete_and_store(
            lease,
            seq(n),
            success(),
            (0..lines).map(approved).collect(),
            PerLineAnswer::Read,
        )
        .await
        .unwrap();
}

async fn numbers_and_races(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let acme = account("acme");
    assert!(l.accounts().await.unwrap().is_empty(), "a fresh ledger");
    assert_eq!(l.next_sequence(&acme).await.unwrap(), seq(1));
    let lease = lease(l, "acme").await;
    reserve(l, &lease, batch(1, &["a", "b"])).await;
    assert_eq!(l.next_sequence(&acme).await.unwrap(), seq(2));
    // The same number again, or a lower one: a lost race naming the next number.
    for n in [1, 1] {
        match l.reserve(&lease, batch(n, &["c"])).await.unwrap() {
            Reserve::LostRace { next } => assert_eq!(next, seq(2)),
            other => panic!("{other:?}"),
        }
    }
    // Numbers may skip.
    reserve(l, &lease, batch(7, &["c"])).await;
    let info = l.account_info(&acme).await.unwrap();
    assert_eq!(info.high_water, Some(seq(7)));
    assert_eq!(info.floor, None);
    // A floor above the high-water mark moves the next number; one below does not.
    l.set_floor(&lease, seq(40)).await.unwrap();
    assert_eq!(l.next_sequence(&acme).await.unwrap(), seq(41));
    match l.reserve(&lease, batch(40, &["d"])).await.unwrap() {
        Reserve::LostRace { next } => assert_eq!(next, seq(41)),
        other => panic!("{other:?}"),
    }
    l.set_floor(&lease, seq(3)).await.unwrap();
    assert_eq!(l.next_sequence(&acme).await.unwrap(), seq(8));
    assert_eq!(l.accounts().await.unwrap(), vec![acme.clone()]);
    // The last number: then exhausted, never a wrap-around.
    let beta = lease_for(l, "beta").await;
    l.set_floor(&beta, SequenceNumber::MAX).await.unwrap();
    assert!(matches!(
        l.next_sequence(&account("beta")).await,
        Err(Error::Exhausted { .. })
    ));
    assert_eq!(
        l.accounts().await.unwrap(),
        vec![acme.clone(), account("beta")]
    );
}

async fn lease_for(l: &dyn SequenceLedger, name: &str) -> Lease {
    lease(l, name).await
}

async fn bad_batches_write_nothing(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let acme = account("acme");
    let lease = lease(l, "acme").await;
    let empty = batch(1, &[]);
    assert!(matches!(
        l.reserve(&lease, empty).await,
        Err(Error::EmptyBatch { .. })
    ));
    let mut skewed = batch(1, &["a", "b"]);
    skewed.lines[1].index = 5;
    assert!(matches!(
        l.reserve(&lease, skewed).await,
        Err(Error::IndexMismatch {
            position: 1,
            index: 5,
            ..
        })
    ));
    assert!(matches!(
        l.reserve(&lease, batch(1, &["a", "a"])).await,
        Err(Error::DuplicateReference { .. })
    ));
    assert_eq!(l.account_info(&acme).await.unwrap().high_water, None);
    assert!(l.batch(&acme, seq(1)).await.unwrap().is_none());
    assert!(matches!(
        l.transition(&lease, seq(1), Transition::RequestUploaded)
            .await,
        Err(Error::NoSuchBatch { .. })
    ));
}

async fn the_state_machine(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let acme = account("acme");
    let lease = lease(l, "acme").await;
    reserve(l, &lease, batch(1, &["a", "b"])).await;
    // A step the machine does not allow writes nothing.
    for to in [Transition::Triggered, Transition::Cleaned, success()] {
        assert!(matches!(
            l.transition(&lease, seq(1), to).await,
            Err(Error::IllegalTransition {
                from: BatchState::Reserved,
                ..
            })
        ));
    }
    let up = l
        .transition(
            &lease,
            seq(1),
            Transition::RequestUploadedAs {
                gateway_batch_id: "g-17".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(up.gateway_batch_id.as_deref(), Some("g-17"));
    // The same step twice is illegal too.
    assert!(matches!(
        l.transition(&lease, seq(1), Transition::RequestUploaded)
            .await,
        Err(Error::IllegalTransition { .. })
    ));
    l.transition_with(&lease, seq(1), Transition::Triggered, Commit::Deferred)
        .await
        .unwrap();
    l.sync().await.unwrap();
    assert_eq!(
        l.in_flight()
            .await
            .unwrap()
            .iter()
            .map(|(a, b)| (a.clone(), b.sequence, b.state))
            .collect::<Vec<_>>(),
        vec![(acme.clone(), seq(1), BatchState::Triggered)]
    );
    l.transition(&lease, seq(1), Transition::Stuck)
        .await
        .unwrap();
    // A late COMPLETE completes a Stuck batch; results before Completed are refused.
    assert!(matches!(
        l.store_results(&lease, seq(1), vec![approved(0)]).await,
        Err(Error::IllegalTransition { .. })
    ));
    l.transition(&lease, seq(1), success()).await.unwrap();
    let collected = l
        .store_results(&lease, seq(1), vec![approved(0), approved(1)])
        .await
        .unwrap();
    assert_eq!(collected.state, BatchState::Collected);
    assert_eq!(collected.per_line_answer, Some(PerLineAnswer::Read));
    let done = l
        .transition_with(&lease, seq(1), Transition::Cleaned, Commit::Deferred)
        .await
        .unwrap();
    assert_eq!(done.state, BatchState::Cleaned);
    let states: Vec<BatchState> = done.transitions.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        vec![
            BatchState::Reserved,
            BatchState::RequestUploaded,
            BatchState::Triggered,
            BatchState::Stuck,
            BatchState::Completed(BatchOutcome::Success),
            BatchState::Collected,
            BatchState::Cleaned,
        ]
    );
    assert!(l.in_flight().await.unwrap().is_empty());
    assert_eq!(
        l.batches_in_state(&acme, BatchState::Cleaned)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(l.batch(&acme, seq(1)).await.unwrap(), Some(done));
    assert_eq!(l.account_info(&acme).await.unwrap().triggered, Some(seq(1)));
}

async fn trigger_order(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let lease = lease(l, "acme").await;
    reserve(l, &lease, batch(1, &["a"])).await;
    reserve(l, &lease, batch(2, &["b"])).await;
    l.transition(&lease, seq(2), Transition::RequestUploaded)
        .await
        .unwrap();
    // Batch 1 is still Reserved below it: the gateway would ignore 1 once 2 arrived.
    match l.transition(&lease, seq(2), Transition::Triggered).await {
        Err(Error::OutOfOrder {
            blocking,
            blocking_state,
            ..
        }) => assert_eq!((blocking, blocking_state), (seq(1), BatchState::Reserved)),
        other => panic!("{other:?}"),
    }
    trigger(l, &lease, 1).await;
    // Batch 1 is in flight: 2 waits for its COMPLETE.
    match l.transition(&lease, seq(2), Transition::Triggered).await {
        Err(Error::OutOfOrder {
            blocking,
            blocking_state,
            ..
        }) => assert_eq!((blocking, blocking_state), (seq(1), BatchState::Triggered)),
        other => panic!("{other:?}"),
    }
    l.transition(&lease, seq(1), success()).await.unwrap();
    l.transition(&lease, seq(2), Transition::Triggered)
        .await
        .unwrap();
}

async fn bindings_and_conflicts(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let acme = account("acme");
    let lease = lease(l, "acme").await;
    reserve(l, &lease, batch(1, &["order-1", "order-2"])).await;
    let q = |r: &str, content: &str| RefQuery {
        client_ref: r.into(),
        content_digest: digest(content),
    };
    let status = l
        .check_references(
            &acme,
            vec![
                q("order-1", "1.00"),
                q("order-2", "9.99"),
                q("order-3", "1.00"),
            ],
            Release::AbandonedOrRejected,
        )
        .await
        .unwrap();
    let bound = |index| crate::Binding {
        sequence: seq(1),
        index,
        content_digest: digest("1.00"),
    };
    assert_eq!(
        status,
        vec![
            RefStatus::Bound(bound(0)),
            RefStatus::ContentDiffers(bound(1)),
            RefStatus::Free
        ]
    );
    assert!(matches!(
        l.check_reference(&acme, "order-2", &digest("9.99")).await,
        Err(Error::ContentConflict { .. })
    ));
    assert_eq!(l.binding(&acme, "order-2").await.unwrap(), Some(bound(1)));
    assert_eq!(
        l.bindings_with(&acme, vec![q("order-2", "9.99"), q("nothing", "1.00")])
            .await
            .unwrap(),
        vec![Some(bound(1)), None]
    );
    // Another account's references are its own.
    assert_eq!(l.binding(&account("beta"), "order-1").await.unwrap(), None);
    // Reserving bound references again: a conflict naming each, nothing written.
    let mut again = batch(2, &["order-3", "order-1", "order-2"]);
    again.lines[2].content_digest = digest("9.99");
    match l.reserve(&lease, again).await.unwrap() {
        Reserve::Conflict { conflicts } => {
            let got: Vec<_> = conflicts
                .iter()
                .map(|c| (c.client_ref.as_str(), c.index, c.existing, c.kind))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("order-1", 1, bound(0), ConflictKind::AlreadyBound),
                    ("order-2", 2, bound(1), ConflictKind::ContentDiffers),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        l.account_info(&acme).await.unwrap().high_water,
        Some(seq(1))
    );
    // An abandoned batch gives its references back: a new batch takes them.
    l.resolve(
        &lease,
        seq(1),
        Transition::Abandoned {
            reason: "never ran".into(),
        },
        "confirmed by phone".into(),
    )
    .await
    .unwrap();
    assert_eq!(
        l.check_reference_with(&acme, "order-1", &digest("1.00"), Release::AbandonedOnly)
            .await
            .unwrap(),
        None
    );
    reserve(l, &lease, batch(2, &["order-2", "order-1"])).await;
    assert_eq!(
        l.binding(&acme, "order-1")
            .await
            .unwrap()
            .map(|b| (b.sequence, b.index)),
        Some((seq(2), 1))
    );
    let all = l.bindings_of(&acme).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|(r, b)| (r.as_str(), b.sequence.get(), b.index))
            .collect::<Vec<_>>(),
        vec![("order-1", 2, 1), ("order-2", 2, 0)]
    );
    let refs = l.batch_refs(&acme, seq(2)).await.unwrap().unwrap();
    assert_eq!(
        refs.iter()
            .map(|r| r.client_ref.map(str::to_owned))
            .collect::<Vec<_>>(),
        vec![Some("order-2".to_owned()), Some("order-1".to_owned())]
    );
}

async fn results_and_rejected_batches(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let acme = account("acme");
    let lease = lease(l, "acme").await;
    finish(l, &lease, batch(1, &["a", "b", "c"])).await;
    let results = l.batch_results(&acme, seq(1)).await.unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(
        l.line_result(&acme, seq(1), 2).await.unwrap(),
        Some(approved(2))
    );
    // A rejected batch, nothing processed, one line with a result of its own.
    reserve(l, &lease, batch(2, &["d", "e", "f"])).await;
    trigger(l, &lease, 2).await;
    // Results with a card number or outside the batch are refused, nothing written.
    let card = StoredResult {
        index: 0,
        fields: kvp_format::Record::from(vec![("xCardNum".into(), "4111111111111111".into())]),
    };
    let rejected = Transition::Completed(Verdict {
        processed_count: Some(0),
        ..Verdict::new(BatchOutcome::GatewayError, "Error")
    });
    match l
        .complete_and_store(
            &lease,
            seq(2),
            rejected.clone(),
            vec![card],
            PerLineAnswer::Read,
        )
        .await
    {
        Err(e @ Error::SensitiveField { .. }) => {
            assert!(!e.to_string().contains("4111111111111111"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        l.complete_and_store(
            &lease,
            seq(2),
            rejected.clone(),
            vec![approved(3)],
            PerLineAnswer::Read
        )
        .await,
        Err(Error::BadResult { .. })
    ));
    assert_eq!(
        l.batch(&acme, seq(2)).await.unwrap().unwrap().state,
        BatchState::Triggered
    );
    let record = l
        .complete_and_store(
            &lease,
            seq(2),
            rejected,
            vec![approved(1)],
            PerLineAnswer::Read,
        )
        .await
        .unwrap();
    assert!(record.is_rejected());
    // Plain re-run: every line stays bound. --resubmit-rejected: the lines without an outcome
    // are free, the one with an outcome stays.
    for (release, expected) in [
        (Release::AbandonedOnly, [true, true, true]),
        (Release::AbandonedOrRejected, [false, true, false]),
    ] {
        let got = l
            .check_references(
                &acme,
                ["d", "e", "f"]
                    .iter()
                    .map(|r| RefQuery {
                        client_ref: (*r).into(),
                        content_digest: digest("1.00"),
                    })
                    .collect(),
                release,
            )
            .await
            .unwrap();
        let bound: Vec<bool> = got
            .iter()
            .map(|s| matches!(s, RefStatus::Bound(_)))
            .collect();
        assert_eq!(bound, expected, "{release:?}");
    }
    reserve(l, &lease, batch(3, &["d", "f"])).await;
    // Marked unknown, a rejected batch takes its lines back.
    let unknown = l
        .resolve(
            &lease,
            seq(2),
            Transition::MarkedUnknown {
                reason: "answer lost".into(),
            },
            "answer lost".into(),
        )
        .await
        .unwrap();
    assert_eq!(unknown.note.as_deref(), Some("answer lost"));
}

async fn operators_steps(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let acme = account("acme");
    let lease = lease(l, "acme").await;
    reserve(l, &lease, batch(1, &["a"])).await;
    trigger(l, &lease, 1).await;
    let marked = l
        .resolve(
            &lease,
            seq(1),
            Transition::MarkedUnknown {
                reason: "lost".into(),
            },
            "the gateway lost RESPONSE_1".into(),
        )
        .await
        .unwrap();
    assert_eq!(marked.state, BatchState::MarkedUnknown);
    assert_eq!(marked.note.as_deref(), Some("the gateway lost RESPONSE_1"));
    // A card number typed into an operator's reason is never stored.
    reserve(l, &lease, batch(2, &["b"])).await;
    let abandoned = l
        .resolve(
            &lease,
            seq(2),
            Transition::Abandoned {
                reason: "card 4111 1111 1111 1111 disputed".into(),
            },
            "cardholder 4111111111111111 says it never ran".into(),
        )
        .await
        .unwrap();
    let stored = l.batch(&acme, seq(2)).await.unwrap().unwrap();
    for note in [abandoned.note, stored.note] {
        let note = note.unwrap();
        assert!(!note.contains("4111111111111111"), "{note}");
        assert!(note.starts_with("cardholder 411111"), "{note}");
    }
    assert!(!export_text(l).await.contains("4111111111111111"));
    // Its line stays bound for ever.
    assert!(
        l.check_reference(&acme, "a", &digest("1.00"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        l.resolve(
            &lease,
            seq(1),
            Transition::Abandoned { reason: "x".into() },
            "x".into()
        )
        .await,
        Err(Error::IllegalTransition { .. })
    ));
}

async fn prune_keeps_idempotency(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let acme = account("acme");
    let lease = lease(l, "acme").await;
    finish(l, &lease, batch(1, &["a", "b"])).await;
    l.transition(&lease, seq(1), Transition::Cleaned)
        .await
        .unwrap();
    finish(l, &lease, batch(2, &["c"])).await; // Collected, not Cleaned: kept
    let before = l.prune(SystemTime::UNIX_EPOCH).await.unwrap();
    assert_eq!(before.batches, 0, "nothing cleaned before 1970");
    let pruned = l
        .prune(SystemTime::now() + Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((pruned.batches, pruned.lines), (1, 2));
    let record = l.batch(&acme, seq(1)).await.unwrap().unwrap();
    assert!(record.results_pruned_at.is_some());
    assert!(l.batch_results(&acme, seq(1)).await.unwrap().is_empty());
    assert_eq!(l.batch_results(&acme, seq(2)).await.unwrap().len(), 1);
    // Still bound: never sent twice.
    assert!(
        l.check_reference(&acme, "a", &digest("1.00"))
            .await
            .unwrap()
            .is_some()
    );
}

/// Collects an export into a string.
pub async fn export_text(l: &dyn SequenceLedger) -> String {
    let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
    #[derive(Debug)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let n = l.export(Box::new(Shared(buf.clone()))).await.unwrap();
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count() as u64, n);
    text
}

async fn export_lines(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let lease = lease(l, "acme").await;
    finish(l, &lease, batch(1, &["a", "b"])).await;
    reserve(l, &lease, batch(2, &["c"])).await;
    let text = export_text(l).await;
    let types: Vec<String> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["type"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        types,
        [
            "format", "account", "batch", "batch", "binding", "binding", "binding", "result",
            "result"
        ]
    );
    assert!(
        text.contains(r#""client_ref":"c","sequence":2,"index":0"#),
        "{text}"
    );
    assert!(
        text.starts_with(r#"{"type":"format","version":2}"#),
        "{text}"
    );
}

async fn a_blocking_view_answers_alike(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let lease = lease(l, "acme").await;
    finish(l, &lease, batch(1, &["a", "b"])).await;
    reserve(l, &lease, batch(2, &["c"])).await;
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || {
        let view = ledger.blocking_view(&account("acme")).unwrap();
        assert_eq!(view.account(), &account("acme"));
        let bound = view
            .check_reference_with("b", &digest("1.00"), Release::AbandonedOnly)
            .unwrap()
            .unwrap();
        assert_eq!((bound.sequence, bound.index), (seq(1), 1));
        assert!(matches!(
            view.check_reference_with("b", &digest("2.00"), Release::AbandonedOnly),
            Err(Error::ContentConflict { existing, .. }) if existing.content_digest == digest("1.00")
        ));
        assert_eq!(
            view.check_reference_with("z", &digest("1.00"), Release::AbandonedOnly)
                .unwrap(),
            None
        );
        // binding_with gives the stored digest when the content differs.
        let other = view.binding_with("c", &digest("9.99")).unwrap().unwrap();
        assert_eq!((other.sequence, other.content_digest), (seq(2), digest("1.00")));
        assert_eq!(view.batch(seq(2)).unwrap().unwrap().state, BatchState::Reserved);
        assert!(view.batch(seq(3)).unwrap().is_none());
        assert_eq!(view.batch_results(seq(1)).unwrap().len(), 2);
        assert!(view.batch_results(seq(2)).unwrap().is_empty());
        assert_eq!(view.next_sequence().unwrap(), seq(3));
    })
    .await
    .unwrap();
}
