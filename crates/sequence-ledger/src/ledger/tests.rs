//! Unit tests of the ledger against a real sled database in a temporary directory.

use super::*;
use crate::codec;
use crate::{
    AccountId, BatchOutcome, BatchRecord, BatchState, ConflictKind, Durability, NewBatch,
    PerLineAnswer, Release, Reserve, StoredResult, Transition, Verdict,
};
use kvp_format::SequenceNumber;

pub(super) const CARD: &str = "4111111111111111";
pub(super) const KEY: &str = "xkey_supersecret_0123456789";

pub(super) fn seq(n: u32) -> SequenceNumber {
    SequenceNumber::new(n).unwrap()
}

pub(super) fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

pub(super) fn fresh() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger")).unwrap();
    (dir, ledger)
}

pub(super) fn lines(refs: &[&str]) -> Vec<crate::NewBinding> {
    (0u64..)
        .zip(refs)
        .map(|(index, r)| crate::NewBinding {
            client_ref: (*r).to_string(),
            index,
            content_digest: crate::content_digest([("xRef", *r)]),
        })
        .collect()
}

pub(super) fn new_batch(n: u32, refs: &[&str]) -> NewBatch {
    NewBatch {
        sequence: seq(n),
        request_len: 100,
        external_reference: None,
        lines: lines(refs),
    }
}

pub(super) fn reserve(l: &Ledger, a: &AccountId, n: u32, refs: &[&str]) -> BatchRecord {
    match l.reserve(a, new_batch(n, refs)).unwrap() {
        Reserve::Reserved(r) => r,
        other => panic!("expected Reserved, got {other:?}"),
    }
}

pub(super) fn ok() -> Verdict {
    Verdict::new(BatchOutcome::Success, "Success")
}

pub(super) fn failed(processed: Option<u64>) -> Verdict {
    Verdict {
        error: Some("bad file".into()),
        processed_count: processed,
        ..Verdict::new(BatchOutcome::GatewayError, "Error")
    }
}

/// Drives batch `n` (already reserved) to `state` along the shortest legal path.
pub(super) fn drive(l: &Ledger, a: &AccountId, n: u32, state: BatchState) {
    use BatchState::*;
    let path: Vec<Transition> = match state {
        Reserved => vec![],
        RequestUploaded => vec![Transition::RequestUploaded],
        Triggered => vec![Transition::RequestUploaded, Transition::Triggered],
        Completed(BatchOutcome::Success) => vec![
            Transition::RequestUploaded,
            Transition::Triggered,
            Transition::Completed(ok()),
        ],
        Completed(BatchOutcome::GatewayError) => vec![
            Transition::RequestUploaded,
            Transition::Triggered,
            Transition::Completed(failed(None)),
        ],
        Stuck => vec![
            Transition::RequestUploaded,
            Transition::Triggered,
            Transition::Stuck,
        ],
        Abandoned => vec![Transition::Abandoned {
            reason: "test".into(),
        }],
        MarkedUnknown => vec![
            Transition::RequestUploaded,
            Transition::MarkedUnknown {
                reason: "test".into(),
            },
        ],
        Collected | Cleaned => {
            drive(l, a, n, Completed(BatchOutcome::Success));
            l.store_results(a, seq(n), vec![]).unwrap();
            if state == Cleaned {
                l.transition(a, seq(n), Transition::Cleaned).unwrap();
            }
            return;
        }
    };
    for t in path {
        l.transition(a, seq(n), t).unwrap();
    }
}

const ALL_STATES: [BatchState; 9] = [
    BatchState::Reserved,
    BatchState::RequestUploaded,
    BatchState::Triggered,
    BatchState::Completed(BatchOutcome::Success),
    BatchState::Completed(BatchOutcome::GatewayError),
    BatchState::Collected,
    BatchState::Cleaned,
    BatchState::Stuck,
    BatchState::Abandoned,
];

fn all_transitions() -> Vec<Transition> {
    vec![
        Transition::RequestUploaded,
        Transition::Triggered,
        Transition::Completed(ok()),
        Transition::Completed(failed(Some(0))),
        Transition::Stuck,
        Transition::Cleaned,
        Transition::Abandoned { reason: "r".into() },
    ]
}

#[test]
fn numbers_start_at_one_and_follow_high_water_and_floor() {
    let (_d, l) = fresh();
    let a = acct("a");
    assert_eq!(l.next_sequence(&a).unwrap(), seq(1));
    assert_eq!(l.last_sequence(&a).unwrap(), None);
    reserve(&l, &a, 5, &["r1"]);
    assert_eq!(l.next_sequence(&a).unwrap(), seq(6));
    l.set_floor(&a, seq(10)).unwrap();
    assert_eq!(l.next_sequence(&a).unwrap(), seq(11));
    l.set_floor(&a, seq(2)).unwrap();
    assert_eq!(
        l.next_sequence(&a).unwrap(),
        seq(6),
        "a low floor never lowers the high water"
    );
    assert_eq!(l.last_sequence(&a).unwrap(), Some(seq(5)));
    assert_eq!(
        l.next_sequence(&acct("other")).unwrap(),
        seq(1),
        "accounts are independent"
    );
}

#[test]
fn exhaustion_is_an_error_never_a_wrap() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 999_999_999, &["last"]);
    assert!(
        matches!(l.next_sequence(&a), Err(Error::Exhausted { last, .. }) if last == SequenceNumber::MAX)
    );
    assert!(matches!(
        l.reserve(&a, new_batch(5, &["x"])),
        Err(Error::Exhausted { .. })
    ));
    let b = acct("b");
    l.set_floor(&b, SequenceNumber::MAX).unwrap();
    assert!(matches!(l.next_sequence(&b), Err(Error::Exhausted { .. })));
}

#[test]
fn reserve_stores_batch_bindings_and_high_water() {
    let (_d, l) = fresh();
    let a = acct("a");
    let rec = reserve(&l, &a, 3, &["x", "y"]);
    assert_eq!(
        (rec.state, rec.line_count, rec.request_len),
        (BatchState::Reserved, 2, 100)
    );
    assert_eq!(rec.transitions.len(), 1);
    assert_eq!(l.batch(&a, seq(3)).unwrap(), Some(rec.clone()));
    let b = l.binding(&a, "y").unwrap().unwrap();
    assert_eq!((b.sequence, b.index), (seq(3), 1));
    assert_eq!(b.to_string(), "batch 3, line 1");
    assert_eq!(
        l.binding(&acct("other"), "y").unwrap(),
        None,
        "bindings are per account"
    );
    assert_eq!(l.account_info(&a).unwrap().high_water, Some(seq(3)));
    assert_eq!(l.accounts().unwrap(), vec![a]);
}

#[test]
fn a_used_number_is_a_lost_race_with_the_next_one() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 4, &["x"]);
    for n in [4, 1] {
        assert_eq!(
            l.reserve(&a, new_batch(n, &["other"])).unwrap(),
            Reserve::LostRace { next: seq(5) }
        );
    }
    l.set_floor(&a, seq(9)).unwrap();
    assert_eq!(
        l.reserve(&a, new_batch(7, &["other"])).unwrap(),
        Reserve::LostRace { next: seq(10) }
    );
    assert_eq!(
        l.binding(&a, "other").unwrap(),
        None,
        "a lost race writes nothing"
    );
}

#[test]
fn racing_threads_get_distinct_numbers() {
    let (_d, l) = fresh();
    let a = acct("a");
    let got: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (l, a) = (&l, &a);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..10 {
                        let r = format!("t{t}-{i}");
                        loop {
                            let n = l.next_sequence(a).unwrap();
                            match l.reserve(a, new_batch(n.get(), &[&r])).unwrap() {
                                Reserve::Reserved(rec) => {
                                    mine.push(rec.sequence.get());
                                    break;
                                }
                                Reserve::LostRace { next } => assert!(next > n),
                                other => panic!("{other:?}"),
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 40, "{got:?}");
    assert_eq!(
        l.last_sequence(&a).unwrap(),
        Some(seq(*sorted.last().unwrap()))
    );
}

#[test]
fn bad_new_batches_are_errors() {
    let (_d, l) = fresh();
    let a = acct("a");
    let mut skipped = new_batch(1, &["x", "y"]);
    skipped.lines[1].index = 2;
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, NewBatch, Check)> = vec![
        ("empty", new_batch(1, &[]), |e| {
            matches!(e, Error::EmptyBatch { .. })
        }),
        ("index", skipped, |e| {
            matches!(
                e,
                Error::IndexMismatch {
                    position: 1,
                    index: 2,
                    ..
                }
            )
        }),
        (
            "dup",
            new_batch(1, &["x", "x"]),
            |e| matches!(e, Error::DuplicateReference { client_ref, .. } if client_ref == "x"),
        ),
    ];
    for (name, batch, check) in cases {
        let err = l.reserve(&a, batch).unwrap_err();
        assert!(check(&err), "{name}: {err:?}");
    }
    assert_eq!(l.last_sequence(&a).unwrap(), None);
}

#[test]
fn bound_references_conflict_and_nothing_is_written() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x", "y"]);
    let mut again = new_batch(2, &["new", "y", "x"]);
    again.lines[2].content_digest = [0; 32];
    let Reserve::Conflict { conflicts } = l.reserve(&a, again).unwrap() else {
        panic!()
    };
    assert_eq!(conflicts.len(), 2);
    assert_eq!(
        (
            conflicts[0].client_ref.as_str(),
            conflicts[0].index,
            conflicts[0].kind
        ),
        ("y", 1, ConflictKind::AlreadyBound)
    );
    assert_eq!(conflicts[0].existing.to_string(), "batch 1, line 1");
    assert_eq!(
        (conflicts[1].client_ref.as_str(), conflicts[1].kind),
        ("x", ConflictKind::ContentDiffers)
    );
    assert_eq!(l.batch(&a, seq(2)).unwrap(), None);
    assert_eq!(l.binding(&a, "new").unwrap(), None);
    assert_eq!(l.last_sequence(&a).unwrap(), Some(seq(1)));
}

#[test]
fn check_reference_recognises_resubmissions_and_content_conflicts() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 17, &["p", "q", "r", "s", "order-9"]);
    let same = crate::content_digest([("xRef", "order-9")]);
    assert_eq!(l.check_reference(&a, "unknown", &same).unwrap(), None);
    let b = l.check_reference(&a, "order-9", &same).unwrap().unwrap();
    assert_eq!(format!("already in {b}"), "already in batch 17, line 4");
    let err = l.check_reference(&a, "order-9", &[1; 32]).unwrap_err();
    assert!(
        matches!(err, Error::ContentConflict { ref existing, .. } if existing.sequence == seq(17)),
        "{err:?}"
    );
}

#[test]
fn abandoned_or_unprocessed_batches_release_their_references() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x"]);
    l.transition(
        &a,
        seq(1),
        Transition::Abandoned {
            reason: "operator".into(),
        },
    )
    .unwrap();
    assert_eq!(l.check_reference(&a, "x", &[9; 32]).unwrap(), None);
    reserve(&l, &a, 2, &["x"]);
    assert_eq!(l.binding(&a, "x").unwrap().unwrap().sequence, seq(2));

    drive(&l, &a, 2, BatchState::Triggered);
    l.transition(&a, seq(2), Transition::Completed(failed(Some(3))))
        .unwrap();
    assert!(
        matches!(
            l.reserve(&a, new_batch(3, &["x"])).unwrap(),
            Reserve::Conflict { .. }
        ),
        "3 processed: still bound"
    );

    reserve(&l, &a, 4, &["y"]);
    drive(&l, &a, 4, BatchState::Triggered);
    l.transition(&a, seq(4), Transition::Completed(failed(Some(0))))
        .unwrap();
    assert!(
        matches!(
            l.reserve(&a, new_batch(5, &["y"])).unwrap(),
            Reserve::Conflict { .. }
        ),
        "answer not read yet: still bound"
    );
    l.store_answer(&a, seq(4), vec![], PerLineAnswer::Absent)
        .unwrap();
    reserve(&l, &a, 5, &["y"]);
    assert_eq!(l.binding(&a, "y").unwrap().unwrap().sequence, seq(5));
}

/// PROTOCOL.md decision 4: a rejected batch releases exactly the lines the gateway provably
/// did not process — none while its answer is unread, none when it says it processed some,
/// and never a line that has a result of its own.
#[test]
fn a_rejected_batch_releases_only_lines_provably_not_processed() {
    let result = |index: u64, fields: &[(&str, &str)]| StoredResult {
        index,
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    // (processed count, per-line answer, stored results, refs expected released)
    type Case = (Option<u64>, PerLineAnswer, Vec<StoredResult>, [bool; 3]);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        (Some(0), PerLineAnswer::Absent, vec![], [true, true, true]),
        (Some(0), PerLineAnswer::Read, vec![result(1, &[("xResult", "A")])], [true, false, true]),
        // A remark without xResult (APS: why validation refused the line) is no outcome.
        (Some(0), PerLineAnswer::Read, vec![result(2, &[("xStatus", "77004")])], [true, true, true]),
        (None, PerLineAnswer::Absent, vec![], [true, true, true]),
        (None, PerLineAnswer::Read, vec![], [false, false, false]),
        (None, PerLineAnswer::Unreadable, vec![], [false, false, false]),
        // "Processed 0", but an answer per line that could not be read may say xResult=A.
        (Some(0), PerLineAnswer::Unreadable, vec![], [false, false, false]),
        (Some(2), PerLineAnswer::Absent, vec![], [false, false, false]),
    ];
    for (n, (count, answer, results, released)) in cases.into_iter().enumerate() {
        let (_d, l) = fresh();
        let a = acct("a");
        reserve(&l, &a, 1, &["x", "y", "z"]);
        drive(&l, &a, 1, BatchState::Triggered);
        l.transition(&a, seq(1), Transition::Completed(failed(count)))
            .unwrap();
        l.store_answer(&a, seq(1), results, answer).unwrap();
        for (r, expected) in ["x", "y", "z"].iter().zip(released) {
            let digest = l.binding(&a, r).unwrap().unwrap().content_digest;
            let got = l
                .check_reference_with(&a, r, &digest, Release::AbandonedOrRejected)
                .unwrap()
                .is_none();
            assert_eq!(got, expected, "case {n}: {r}");
            let kept = l
                .check_reference_with(&a, r, &digest, Release::AbandonedOnly)
                .unwrap();
            assert!(kept.is_some(), "case {n}: {r} released without asking");
            let next = l.next_sequence(&a).unwrap();
            let reserved = l.reserve(&a, new_batch(next.get(), &[r])).unwrap();
            assert_eq!(
                matches!(reserved, Reserve::Reserved(_)),
                expected,
                "case {n}: reserve {r}"
            );
            if expected {
                l.transition(
                    &a,
                    next,
                    Transition::Abandoned {
                        reason: "next ref".into(),
                    },
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn a_rejected_batch_keeps_its_references_unless_the_caller_releases_them() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x"]);
    let digest = l.binding(&a, "x").unwrap().unwrap().content_digest;
    drive(&l, &a, 1, BatchState::Triggered);
    l.transition(&a, seq(1), Transition::Completed(failed(Some(0))))
        .unwrap();
    l.store_answer(&a, seq(1), vec![], PerLineAnswer::Absent)
        .unwrap();
    let keep = l
        .check_reference_with(&a, "x", &digest, Release::AbandonedOnly)
        .unwrap();
    assert_eq!(keep.map(|b| b.sequence), Some(seq(1)), "rejected is final");
    let free = l.check_reference_with(&a, "x", &digest, Release::AbandonedOrRejected);
    assert_eq!(free.unwrap(), None, "released on request");
    reserve(&l, &a, 2, &["z"]);
    l.transition(
        &a,
        seq(2),
        Transition::Abandoned {
            reason: "op".into(),
        },
    )
    .unwrap();
    let abandoned = l.check_reference_with(&a, "z", &[0; 32], Release::AbandonedOnly);
    assert_eq!(abandoned.unwrap(), None, "abandoned is released either way");
}

#[test]
fn the_happy_path_records_every_step() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x", "y"]);
    drive(&l, &a, 1, BatchState::Completed(BatchOutcome::Success));
    let results = vec![
        StoredResult {
            index: 1,
            fields: kvp_format::Record::from(vec![("xResult".into(), "D".into())]),
        },
        StoredResult {
            index: 0,
            fields: kvp_format::Record::from(vec![
                ("xResult".into(), "A".into()),
                ("xMaskedCardNumber".into(), "4xxxxxxxxxxx1111".into()),
            ]),
        },
    ];
    let rec = l.store_results(&a, seq(1), results.clone()).unwrap();
    assert_eq!(rec.state, BatchState::Collected);
    let mut stored = l.results(&a, seq(1)).unwrap();
    stored.sort_by_key(|r| r.index);
    let mut expected = results;
    expected.sort_by_key(|r| r.index);
    assert_eq!(stored, expected);
    let rec = l.transition(&a, seq(1), Transition::Cleaned).unwrap();
    let names: Vec<_> = rec
        .transitions
        .iter()
        .map(|s| s.state.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "Reserved",
            "RequestUploaded",
            "Triggered",
            "Completed(Success)",
            "Collected",
            "Cleaned"
        ]
    );
    assert_eq!(rec.verdict, Some(ok()));
    assert!(l.in_flight().unwrap().is_empty());
}

#[test]
fn gateway_errors_and_late_completes() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x"]);
    drive(&l, &a, 1, BatchState::Completed(BatchOutcome::GatewayError));
    let rec = l.store_results(&a, seq(1), vec![]).unwrap();
    assert_eq!(rec.state, BatchState::Collected);
    assert_eq!(rec.verdict.unwrap().error.as_deref(), Some("bad file"));
    l.transition(&a, seq(1), Transition::Cleaned).unwrap();

    reserve(&l, &a, 2, &["y"]);
    drive(&l, &a, 2, BatchState::Stuck);
    let rec = l
        .resolve(
            &a,
            seq(2),
            Transition::Completed(ok()),
            "late COMPLETE found",
        )
        .unwrap();
    assert_eq!(
        (rec.state, rec.note.as_deref()),
        (
            BatchState::Completed(BatchOutcome::Success),
            Some("late COMPLETE found")
        )
    );

    reserve(&l, &a, 3, &["z"]);
    l.transition(&a, seq(2), Transition::Abandoned { reason: "x".into() })
        .unwrap_err();
    drive(&l, &a, 3, BatchState::Stuck);
    let rec = l
        .transition(
            &a,
            seq(3),
            Transition::Abandoned {
                reason: "gateway lost it".into(),
            },
        )
        .unwrap();
    assert_eq!(
        (rec.state, rec.note.as_deref()),
        (BatchState::Abandoned, Some("gateway lost it"))
    );
}

#[test]
fn the_ledger_enforces_the_table_for_every_state_and_step() {
    let (_d, l) = fresh();
    let a = acct("a");
    let mut n = 0;
    for from in ALL_STATES {
        for t in all_transitions() {
            n += 1;
            reserve(&l, &a, n, &[&format!("r{n}")]);
            drive(&l, &a, n, from);
            let before = l.batch(&a, seq(n)).unwrap().unwrap();
            let to = t.target();
            match l.transition(&a, seq(n), t) {
                Ok(rec) => {
                    assert!(from.can_become(to), "{from} -> {to} was allowed");
                    assert_eq!(rec.state, to);
                    assert_eq!(l.batch(&a, seq(n)).unwrap().unwrap(), rec);
                }
                Err(Error::IllegalTransition {
                    from: f, to: t2, ..
                }) => {
                    assert!(!from.can_become(to), "{from} -> {to} was refused");
                    assert_eq!((f, t2), (from, to));
                    assert_eq!(
                        l.batch(&a, seq(n)).unwrap().unwrap(),
                        before,
                        "nothing written"
                    );
                }
                Err(e) => panic!("{from} -> {to}: {e:?}"),
            }
            // Leave no batch in flight so the next one may be triggered.
            let rec = l.batch(&a, seq(n)).unwrap().unwrap();
            if rec.state.can_become(BatchState::Abandoned) {
                l.transition(
                    &a,
                    seq(n),
                    Transition::Abandoned {
                        reason: "next".into(),
                    },
                )
                .unwrap();
            } else if let BatchState::Completed(_) = rec.state {
                l.store_results(&a, seq(n), vec![]).unwrap();
            }
        }
    }
}

#[test]
fn store_results_refuses_other_states_bad_indexes_and_secrets() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x", "y"]);
    let r = |index, k: &str, v: &str| StoredResult {
        index,
        fields: kvp_format::Record::from(vec![(k.into(), v.into())]),
    };
    assert!(matches!(
        l.store_results(&a, seq(1), vec![]),
        Err(Error::IllegalTransition {
            to: BatchState::Collected,
            ..
        })
    ));
    drive(&l, &a, 1, BatchState::Completed(BatchOutcome::Success));
    #[rustfmt::skip]
    let cases: Vec<(Vec<StoredResult>, &str)> = vec![
        (vec![r(2, "xResult", "A")], "beyond"),
        (vec![r(0, "xResult", "A"), r(0, "xResult", "A")], "twice"),
        (vec![r(0, "xResult", "A"), r(1, "xCardNum", CARD)], "xCardNum"),
        (vec![r(0, "XCVV", "123")], "XCVV"),
        (vec![r(0, "xkey", KEY)], "xkey"),
        (vec![r(0, "xRouting", "021000021")], "xRouting"),
    ];
    for (results, expect) in cases {
        let err = l.store_results(&a, seq(1), results).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(expect), "{text}");
        assert!(!text.contains(CARD) && !text.contains(KEY), "{text}");
        assert!(
            matches!(err, Error::BadResult { .. } | Error::SensitiveField { .. }),
            "{err:?}"
        );
    }
    assert!(l.results(&a, seq(1)).unwrap().is_empty(), "nothing stored");
    assert_eq!(
        l.batch(&a, seq(1)).unwrap().unwrap().state,
        BatchState::Completed(BatchOutcome::Success)
    );
}

#[test]
fn unknown_batches_are_errors() {
    let (_d, l) = fresh();
    let a = acct("a");
    assert!(matches!(
        l.transition(&a, seq(1), Transition::Triggered),
        Err(Error::NoSuchBatch { .. })
    ));
    assert!(matches!(
        l.store_results(&a, seq(1), vec![]),
        Err(Error::NoSuchBatch { .. })
    ));
    assert_eq!(l.batch(&a, seq(1)).unwrap(), None);
}

#[test]
fn triggers_keep_protocol_order() {
    let (_d, l) = fresh();
    let a = acct("a");
    let b = acct("b");
    reserve(&l, &a, 1, &["1"]);
    reserve(&l, &a, 2, &["2"]);
    reserve(&l, &b, 1, &["1"]);
    drive(&l, &a, 2, BatchState::RequestUploaded);
    let err = l.transition(&a, seq(2), Transition::Triggered).unwrap_err();
    assert!(
        matches!(err, Error::OutOfOrder { blocking, blocking_state: BatchState::Reserved, .. } if blocking == seq(1)),
        "{err:?}"
    );
    drive(&l, &a, 1, BatchState::Triggered);
    let err = l.transition(&a, seq(2), Transition::Triggered).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfOrder {
                blocking_state: BatchState::Triggered,
                ..
            }
        ),
        "{err:?}"
    );
    drive(&l, &b, 1, BatchState::Triggered); // other accounts are independent
    l.transition(&a, seq(1), Transition::Stuck).unwrap();
    let err = l.transition(&a, seq(2), Transition::Triggered).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfOrder {
                blocking_state: BatchState::Stuck,
                ..
            }
        ),
        "{err:?}"
    );
    l.transition(&a, seq(1), Transition::Completed(ok()))
        .unwrap();
    l.transition(&a, seq(2), Transition::Triggered).unwrap();
    assert_eq!(l.account_info(&a).unwrap().triggered, Some(seq(2)));
}

#[test]
fn queries_by_state_and_in_flight() {
    let (_d, l) = fresh();
    let (a, b) = (acct("a"), acct("b"));
    reserve(&l, &a, 1, &["1"]);
    reserve(&l, &a, 2, &["2"]);
    reserve(&l, &b, 7, &["1"]);
    drive(&l, &a, 1, BatchState::Cleaned);
    drive(&l, &b, 7, BatchState::Stuck);
    let seqs = |v: Vec<BatchRecord>| v.iter().map(|r| r.sequence.get()).collect::<Vec<_>>();
    assert_eq!(seqs(l.batches(&a).unwrap()), [1, 2]);
    assert_eq!(
        seqs(l.batches_in_state(&a, BatchState::Cleaned).unwrap()),
        [1]
    );
    assert_eq!(
        seqs(l.batches_in_state(&a, BatchState::Reserved).unwrap()),
        [2]
    );
    let flying: Vec<_> = l
        .in_flight()
        .unwrap()
        .into_iter()
        .map(|(acc, r)| (acc.to_string(), r.sequence.get(), r.state))
        .collect();
    assert_eq!(
        flying,
        [
            ("a".to_string(), 2, BatchState::Reserved),
            ("b".to_string(), 7, BatchState::Stuck)
        ]
    );
    assert_eq!(l.accounts().unwrap(), vec![a.clone(), b]);
    assert_eq!(l.bindings_of(&a).unwrap().len(), 2);
}

#[test]
fn data_survives_reopen_and_the_lock_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let a = acct("a");
    {
        let l = Ledger::open(&path).unwrap();
        reserve(&l, &a, 3, &["x"]);
        drive(&l, &a, 3, BatchState::Triggered);
        let err = Ledger::open(&path).unwrap_err();
        assert!(
            matches!(err, Error::InUse { pid: Some(p), .. } if p == std::process::id()),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("in use by pid {}", std::process::id()))
        );
        assert!(matches!(
            Ledger::open_read_only(&path),
            Err(Error::InUse { .. })
        ));
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(
        l.batch(&a, seq(3)).unwrap().unwrap().state,
        BatchState::Triggered
    );
    assert_eq!(l.next_sequence(&a).unwrap(), seq(4));
}

#[test]
fn flush_only_ledgers_work_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open_with(
        dir.path().join("l"),
        LedgerOptions::with_durability(Durability::FlushOnly),
    )
    .unwrap();
    let a = acct("a");
    reserve(&l, &a, 1, &["x"]);
    drive(&l, &a, 1, BatchState::Cleaned);
    assert_eq!(
        l.batch(&a, seq(1)).unwrap().unwrap().state,
        BatchState::Cleaned
    );
}

fn snapshot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot_files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn read_only_opens_change_nothing_and_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    assert!(matches!(
        Ledger::open_read_only(&path),
        Err(Error::NotFound { .. })
    ));
    let a = acct("a");
    {
        let l = Ledger::open(&path).unwrap();
        reserve(&l, &a, 1, &["x"]);
        drive(&l, &a, 1, BatchState::Collected);
    }
    let before = snapshot_files(&path);
    {
        let ro = Ledger::open_read_only(&path).unwrap();
        let _second_reader = Ledger::open_read_only(&path).unwrap();
        assert_eq!(
            ro.batch(&a, seq(1)).unwrap().unwrap().state,
            BatchState::Collected
        );
        #[rustfmt::skip]
        let writes: Vec<Result<()>> = vec![
            ro.reserve(&a, new_batch(2, &["y"])).map(drop),
            ro.transition(&a, seq(1), Transition::Cleaned).map(drop),
            ro.store_results(&a, seq(1), vec![]).map(drop),
            ro.set_floor(&a, seq(9)),
        ];
        for w in writes {
            assert!(matches!(w, Err(Error::ReadOnly { .. })), "{w:?}");
        }
    }
    assert_eq!(
        snapshot_files(&path),
        before,
        "a read-only open changed a file"
    );
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.next_sequence(&a).unwrap(), seq(2));
}

#[test]
fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    drop(Ledger::open(&path).unwrap());
    {
        let db = sled::open(&path).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(FORMAT_KEY, &4u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    // Version 3 is this layout, 1 and 2 are migrated (tests/migration.rs, format2_tests.rs):
    // a later one is refused.
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedFormat {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        Ledger::open_read_only(&path),
        Err(Error::UnsupportedFormat { .. })
    ));
}

#[test]
fn export_writes_every_record_as_json_lines() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x", "y"]);
    drive(&l, &a, 1, BatchState::Completed(BatchOutcome::Success));
    l.store_results(
        &a,
        seq(1),
        vec![StoredResult {
            index: 0,
            fields: kvp_format::Record::from(vec![("xResult".into(), "A".into())]),
        }],
    )
    .unwrap();
    let mut out = Vec::new();
    let n = l.export(&mut out).unwrap();
    let lines: Vec<serde_json::Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(n, lines.len() as u64);
    let types: Vec<&str> = lines.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["format", "account", "batch", "binding", "binding", "result"]
    );
    assert_eq!(lines[1]["high_water"], 1);
    assert_eq!(lines[2]["state"], "Collected");
    assert_eq!(lines[2]["verdict"]["outcome"], "Success");
    assert_eq!(lines[3]["client_ref"], "x");
    assert_eq!(lines[5]["fields"][0][1], "A");
}

#[test]
fn no_card_number_or_key_ever_reaches_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let a = acct("a");
    {
        let l = Ledger::open(&path).unwrap();
        let tx = [
            ("xKey", KEY),
            ("xCommand", "cc:sale"),
            ("xCardNum", CARD),
            ("xCVV", "987"),
            ("xAmount", "9.99"),
        ];
        let mut batch = new_batch(1, &["order-1"]);
        batch.lines[0].content_digest = crate::content_digest(tx);
        let Reserve::Reserved(_) = l.reserve(&a, batch).unwrap() else {
            panic!()
        };
        drive(&l, &a, 1, BatchState::Triggered);
        // COMPLETE may echo the batch key: the verdict and its echoes are kept, the key is not.
        let complete = kvp_format::CompleteFile::parse(
            format!("xResult=A&xStatus=Success&xProcessedCount=1&xSubmittedCount=1&xFormat=KVP&xSequenceNumber=1&xKey={KEY}\n").as_bytes(),
        )
        .unwrap();
        l.transition(&a, seq(1), Transition::from_complete(&complete))
            .unwrap();
        let leaked = StoredResult {
            index: 0,
            fields: kvp_format::Record::from(vec![("xCardNum".into(), CARD.into())]),
        };
        l.store_results(&a, seq(1), vec![leaked]).unwrap_err();
        let masked = kvp_format::mask_value("xCardNum", CARD).into_owned();
        l.store_results(
            &a,
            seq(1),
            vec![StoredResult {
                index: 0,
                fields: kvp_format::Record::from(vec![
                    ("xMaskedCardNumber".into(), masked),
                    ("xToken".into(), "tok_1".into()),
                ]),
            }],
        )
        .unwrap();
        let mut export = Vec::new();
        l.export(&mut export).unwrap();
        let text = String::from_utf8(export).unwrap();
        assert!(!text.contains(CARD) && !text.contains(KEY));
        assert!(text.contains("tok_1"));
    }
    let files = snapshot_files(&path);
    assert!(files.iter().any(|(p, _)| p.ends_with("db")));
    let contains = |bytes: &[u8], s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    for stored in ["tok_1", "xSubmittedCount"] {
        assert!(
            files.iter().any(|(_, b)| contains(b, stored)),
            "the search must see stored values: {stored}"
        );
    }
    for (p, bytes) in files {
        for secret in [CARD, KEY] {
            assert!(
                !contains(&bytes, secret),
                "{secret} found in {}",
                p.display()
            );
        }
    }
}

#[test]
fn complete_fields_are_stored_exported_and_never_hold_a_key() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x"]);
    drive(&l, &a, 1, BatchState::Triggered);
    // Built by hand, so the constructors' filtering is bypassed: the ledger filters again.
    let fields = crate::CompleteFields {
        result: Some("E".into()),
        extra: vec![
            ("xSubmittedCount".into(), "1".into()),
            ("XKEY".into(), KEY.into()),
            ("xFormat".into(), "KVP".into()),
        ],
    };
    let rec = l
        .transition(
            &a,
            seq(1),
            Transition::CompletedWith(failed(Some(0)), fields),
        )
        .unwrap();
    let expected = crate::CompleteFields {
        result: Some("E".into()),
        extra: vec![
            ("xSubmittedCount".into(), "1".into()),
            ("xFormat".into(), "KVP".into()),
        ],
    };
    assert_eq!(rec.complete_fields.as_ref(), Some(&expected));
    let read = l.batch(&a, seq(1)).unwrap().unwrap();
    assert_eq!(read.complete_fields, Some(expected));
    assert_eq!(read.verdict, Some(failed(Some(0))));
    assert!(!read.is_rejected(), "not before its answer is read");
    let read = l
        .store_answer(&a, seq(1), vec![], PerLineAnswer::Absent)
        .unwrap();
    assert!(read.is_rejected());

    let mut out = Vec::new();
    l.export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains(KEY), "{text}");
    let batch: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "batch")
        .unwrap();
    assert_eq!(batch["complete_fields"]["result"], "E");
    assert_eq!(batch["complete_fields"]["extra"][1][0], "xFormat");
    assert_eq!(batch["verdict"]["processed_count"], 0);
}

#[test]
fn a_plain_completed_records_no_complete_fields() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x"]);
    drive(&l, &a, 1, BatchState::Completed(BatchOutcome::Success));
    let rec = l.batch(&a, seq(1)).unwrap().unwrap();
    assert_eq!((rec.verdict, rec.complete_fields), (Some(ok()), None));
}

#[test]
fn a_batch_record_written_before_complete_fields_existed_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let a = acct("a");
    {
        let l = Ledger::open(&path).unwrap();
        reserve(&l, &a, 1, &["x"]);
        drive(&l, &a, 1, BatchState::Completed(BatchOutcome::GatewayError));
        // Exactly what the previous version stored: the same JSON without `complete_fields`.
        let key = codec::batch_key(&a, seq(1));
        let mut json: serde_json::Value =
            serde_json::from_slice(&l.batches.get(&key).unwrap().unwrap()).unwrap();
        assert!(
            json.as_object_mut()
                .unwrap()
                .remove("complete_fields")
                .is_some()
        );
        l.batches
            .insert(key, serde_json::to_vec(&json).unwrap())
            .unwrap();
        l.db.flush().unwrap();
    }
    let l = Ledger::open(&path).unwrap();
    let rec = l.batch(&a, seq(1)).unwrap().unwrap();
    assert_eq!(rec.state, BatchState::Completed(BatchOutcome::GatewayError));
    assert_eq!(
        (rec.verdict, rec.complete_fields),
        (Some(failed(None)), None)
    );
    let rec = l.store_results(&a, seq(1), vec![]).unwrap();
    assert_eq!(rec.state, BatchState::Collected);
}

#[test]
fn a_failing_export_writer_is_an_export_error() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (_d, l) = fresh();
    let err = l.export(Broken).unwrap_err();
    assert!(matches!(err, Error::Export { .. }), "{err:?}");
    assert!(err.to_string().contains("disk full"));
}

#[test]
fn data_without_a_format_version_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    {
        let db = sled::open(&path).unwrap();
        let accounts = db.open_tree("accounts").unwrap();
        accounts.insert("acme", &[0u8; 12][..]).unwrap();
        db.flush().unwrap();
    }
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref what, .. } if what.contains("format_version")),
        "{err:?}"
    );
}

#[test]
fn the_page_cache_is_bounded_by_the_options() {
    let dir = tempfile::tempdir().unwrap();
    let default = LedgerOptions::default().sled_config(dir.path());
    assert_eq!(default.cache_capacity, 16 * 1024 * 1024, "not sled's 1 GiB");
    let small = LedgerOptions::with_durability(Durability::FlushOnly).cache_capacity(1 << 20);
    assert_eq!(small.sled_config(dir.path()).cache_capacity, 1 << 20);
    // A ledger opened with a small cache works (sled keeps what does not fit on disk).
    let l = Ledger::open_with(dir.path().join("l"), small).unwrap();
    let a = acct("a");
    for n in 1..=50 {
        let refs: Vec<String> = (0..20).map(|i| format!("r{n}-{i}")).collect();
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        reserve(&l, &a, n, &refs);
    }
    assert_eq!(l.binding(&a, "r1-0").unwrap().unwrap().sequence, seq(1));
    assert_eq!(l.last_sequence(&a).unwrap(), Some(seq(50)));
}

#[test]
fn external_reference_is_stored_read_back_and_exported() {
    let (_d, l) = fresh();
    let a = acct("a");
    let mut new = new_batch(1, &["x"]);
    new.external_reference = Some("PB1-0a1b2c".into());
    let Reserve::Reserved(rec) = l.reserve(&a, new).unwrap() else {
        panic!("fresh ledger")
    };
    assert_eq!(rec.external_reference.as_deref(), Some("PB1-0a1b2c"));
    let read = l.batch(&a, seq(1)).unwrap().unwrap();
    assert_eq!(read.external_reference.as_deref(), Some("PB1-0a1b2c"));
    reserve(&l, &a, 2, &["y"]);
    assert_eq!(
        l.batch(&a, seq(2)).unwrap().unwrap().external_reference,
        None
    );
    let mut out = Vec::new();
    l.export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(r#""external_reference":"PB1-0a1b2c""#),
        "{text}"
    );
}

#[test]
fn gateway_batch_id_is_written_with_request_uploaded_kept_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let a = acct("a");
    {
        let l = Ledger::open(&path).unwrap();
        reserve(&l, &a, 1, &["x"]);
        reserve(&l, &a, 2, &["y"]);
        let rec = l
            .transition(
                &a,
                seq(1),
                Transition::RequestUploadedAs {
                    gateway_batch_id: "98765432101234567890".into(),
                },
            )
            .unwrap();
        assert_eq!(rec.state, BatchState::RequestUploaded);
        assert_eq!(
            rec.gateway_batch_id.as_deref(),
            Some("98765432101234567890")
        );
        // The plain step still works and records no id.
        let rec = l
            .transition(&a, seq(2), Transition::RequestUploaded)
            .unwrap();
        assert_eq!(rec.gateway_batch_id, None);
        // Only from Reserved, like the plain step.
        assert!(matches!(
            l.transition(
                &a,
                seq(1),
                Transition::RequestUploadedAs {
                    gateway_batch_id: "1".into()
                }
            ),
            Err(Error::IllegalTransition { .. })
        ));
        // Later steps keep it.
        l.transition(&a, seq(1), Transition::Triggered).unwrap();
    }
    let l = Ledger::open(&path).unwrap();
    let rec = l.batch(&a, seq(1)).unwrap().unwrap();
    assert_eq!(rec.state, BatchState::Triggered);
    assert_eq!(
        rec.gateway_batch_id.as_deref(),
        Some("98765432101234567890")
    );
    let mut out = Vec::new();
    l.export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(r#""gateway_batch_id":"98765432101234567890""#),
        "{text}"
    );
}

/// Dropping a ledger and opening it again at once, in the same process, always works: sled's
/// background threads may hold its own lock on `db` for a moment after the drop, and the open
/// waits for that instead of failing with "could not acquire lock".
#[test]
fn reopening_at_once_after_a_drop_always_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let a = acct("a");
    for n in 1..=150 {
        let l = Ledger::open_with(&path, LedgerOptions::with_durability(Durability::FlushOnly))
            .unwrap_or_else(|e| panic!("open #{n}: {e}"));
        let Reserve::Reserved(_) = l.reserve(&a, new_batch(n, &[&format!("r{n}")])).unwrap() else {
            panic!("reserve {n}")
        };
        drop(l);
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.account_info(&a).unwrap().high_water, Some(seq(150)));
}

/// sled's own lock on `db` held for a moment by a stray description (a child forked by another
/// thread that has not `exec`ed yet): the open waits it out.
#[test]
fn a_transient_sled_lock_is_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    drop(Ledger::open(&path).unwrap());
    // Wait until sled's own threads of that ledger have let go, then hold the lock ourselves.
    let stray = loop {
        let f = std::fs::File::open(path.join("db")).unwrap();
        if f.try_lock().is_ok() {
            break f;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(stray);
    });
    let opened = Ledger::open(&path);
    release.join().unwrap();
    opened.unwrap();
}
