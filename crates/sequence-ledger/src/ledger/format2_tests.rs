//! Unit tests of what format version 2 added: deferred steps, the verdict and the results in
//! one write, retention, the in-memory index and the per-batch readers.

use std::time::{Duration, SystemTime};

use super::tests::{acct, drive, failed, fresh, lines, ok, reserve, seq};
use super::*;
use crate::{
    BatchOutcome, BatchState, Commit, ConflictKind, PerLineAnswer, Release, Reserve, StoredResult,
    Transition,
};

fn result(index: u64, fields: &[(&str, &str)]) -> StoredResult {
    StoredResult {
        index,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn digest(r: &str) -> [u8; 32] {
    crate::content_digest([("xRef", r)])
}

#[test]
fn only_steps_that_can_be_repeated_may_be_deferred() {
    #[rustfmt::skip]
    let cases: &[(Transition, bool)] = &[
        (Transition::RequestUploaded, false),
        (Transition::RequestUploadedAs { gateway_batch_id: "1".into() }, false),
        (Transition::Triggered, true),
        (Transition::Completed(ok()), true),
        (Transition::CompletedWith(ok(), crate::CompleteFields::default()), true),
        (Transition::Stuck, true),
        (Transition::Cleaned, true),
        (Transition::Abandoned { reason: "r".into() }, false),
        (Transition::MarkedUnknown { reason: "r".into() }, false),
    ];
    for (t, expected) in cases {
        assert_eq!(t.can_defer(), *expected, "{t:?}");
    }
}

#[test]
fn a_deferred_step_waits_for_the_next_durable_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let (a, b) = (acct("a"), acct("b"));
    {
        let l = Ledger::open(&path).unwrap();
        reserve(&l, &a, 1, &["x"]);
        assert!(!l.has_deferred_writes());
        // RequestUploaded must be durable before PROCESS is written: deferring is ignored.
        l.transition_with(&a, seq(1), Transition::RequestUploaded, Commit::Deferred)
            .unwrap();
        assert!(!l.has_deferred_writes());
        let rec = l
            .transition_with(&a, seq(1), Transition::Triggered, Commit::Deferred)
            .unwrap();
        assert_eq!(rec.state, BatchState::Triggered);
        assert!(l.has_deferred_writes(), "Triggered was deferred");
        assert_eq!(
            l.batch(&a, seq(1)).unwrap().unwrap().state,
            BatchState::Triggered
        );
        l.sync().unwrap();
        assert!(!l.has_deferred_writes());
        l.transition_with(&a, seq(1), Transition::Completed(ok()), Commit::Deferred)
            .unwrap();
        assert!(l.has_deferred_writes());
        // Any durable write covers it, whatever the account.
        reserve(&l, &b, 1, &["y"]);
        assert!(!l.has_deferred_writes());
        l.store_results(&a, seq(1), vec![]).unwrap();
        l.transition_with(&a, seq(1), Transition::Cleaned, Commit::Deferred)
            .unwrap();
        assert!(l.has_deferred_writes());
        // Dropped with a deferred step pending: made durable on the way out.
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(
        l.batch(&a, seq(1)).unwrap().unwrap().state,
        BatchState::Cleaned
    );
    assert!(l.in_flight().unwrap().iter().all(|(x, _)| *x != a));
}

#[test]
fn complete_and_store_records_the_verdict_and_the_results_in_one_write() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x", "y"]);
    drive(&l, &a, 1, BatchState::Triggered);
    let results = vec![
        result(1, &[("xResult", "D")]),
        result(0, &[("xResult", "A")]),
    ];
    let rec = l
        .complete_and_store(
            &a,
            seq(1),
            Transition::Completed(ok()),
            results.clone(),
            PerLineAnswer::Read,
        )
        .unwrap();
    assert_eq!(rec.state, BatchState::Collected);
    let stamps: Vec<BatchState> = rec.transitions.iter().map(|s| s.state).collect();
    assert_eq!(
        &stamps[2..],
        [
            BatchState::Triggered,
            BatchState::Completed(BatchOutcome::Success),
            BatchState::Collected
        ]
    );
    assert_eq!(rec.verdict, Some(ok()));
    assert_eq!(l.batch(&a, seq(1)).unwrap().unwrap(), rec);
    let mut sorted = results;
    sorted.sort_by_key(|r| r.index);
    assert_eq!(l.results(&a, seq(1)).unwrap(), sorted);

    // From Stuck too (a late COMPLETE), with the rest of COMPLETE, never a key.
    reserve(&l, &a, 2, &["z"]);
    drive(&l, &a, 2, BatchState::Stuck);
    let fields = crate::CompleteFields {
        result: Some("E".into()),
        extra: vec![("xKey".into(), "secret".into())],
    };
    let rec = l
        .complete_and_store(
            &a,
            seq(2),
            Transition::CompletedWith(failed(Some(0)), fields),
            vec![],
            PerLineAnswer::Absent,
        )
        .unwrap();
    assert!(rec.is_rejected());
    assert_eq!(rec.complete_fields.unwrap().extra, vec![]);
    assert_eq!(
        l.check_reference_with(&a, "z", &digest("z"), Release::AbandonedOrRejected)
            .unwrap(),
        None,
        "the index knows the batch was rejected"
    );

    // Refused: another step, a batch that cannot take it, bad results; nothing written.
    reserve(&l, &a, 3, &["w"]);
    #[rustfmt::skip]
    let refused: Vec<(Transition, Vec<StoredResult>, &str)> = vec![
        (Transition::Completed(ok()), vec![], "Reserved cannot complete"),
        (Transition::Stuck, vec![], "not a verdict"),
    ];
    for (t, r, why) in refused {
        let err = l
            .complete_and_store(&a, seq(3), t, r, PerLineAnswer::Read)
            .unwrap_err();
        assert!(
            matches!(err, Error::IllegalTransition { .. }),
            "{why}: {err:?}"
        );
    }
    drive(&l, &a, 3, BatchState::Triggered);
    let err = l
        .complete_and_store(
            &a,
            seq(3),
            Transition::Completed(ok()),
            vec![result(5, &[("xResult", "A")])],
            PerLineAnswer::Read,
        )
        .unwrap_err();
    assert!(matches!(err, Error::BadResult { .. }), "{err:?}");
    assert_eq!(
        l.batch(&a, seq(3)).unwrap().unwrap().state,
        BatchState::Triggered
    );
    assert!(l.results(&a, seq(3)).unwrap().is_empty());
}

#[test]
fn prune_drops_old_results_and_keeps_what_idempotency_needs() {
    let (_d, l) = fresh();
    let a = acct("a");
    let with = |fields: &[(&str, &str)], n: u64| (0..n).map(|i| result(i, fields)).collect();
    // 1: cleaned with results; 2: collected, not cleaned; 3: rejected with one line answered,
    // cleaned; 4: cleaned with results.
    reserve(&l, &a, 1, &["p1", "p2"]);
    drive(&l, &a, 1, BatchState::Completed(BatchOutcome::Success));
    l.store_results(&a, seq(1), with(&[("xResult", "A"), ("xToken", "t")], 2))
        .unwrap();
    l.transition(&a, seq(1), Transition::Cleaned).unwrap();
    reserve(&l, &a, 2, &["q1"]);
    drive(&l, &a, 2, BatchState::Completed(BatchOutcome::Success));
    l.store_results(&a, seq(2), with(&[("xResult", "A")], 1))
        .unwrap();
    reserve(&l, &a, 3, &["r1", "r2"]);
    drive(&l, &a, 3, BatchState::Triggered);
    l.transition(&a, seq(3), Transition::Completed(failed(Some(0))))
        .unwrap();
    l.store_results(&a, seq(3), vec![result(1, &[("xResult", "E")])])
        .unwrap();
    l.transition(&a, seq(3), Transition::Cleaned).unwrap();
    reserve(&l, &a, 4, &["s1"]);
    drive(&l, &a, 4, BatchState::Completed(BatchOutcome::Success));
    l.store_results(&a, seq(4), with(&[("xResult", "D")], 1))
        .unwrap();
    l.transition(&a, seq(4), Transition::Cleaned).unwrap();

    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(l.prune(long_ago).unwrap(), crate::Pruned::default());
    std::thread::sleep(Duration::from_millis(5));
    let pruned = l.prune(SystemTime::now()).unwrap();
    assert_eq!(
        (pruned.batches, pruned.lines, pruned.kept_rejected),
        (2, 3, 1)
    );
    assert!(pruned.bytes > 0);
    assert_eq!(pruned.by_account.get(&a), Some(&(2, 3)));
    for (n, kept) in [(1, false), (2, true), (3, true), (4, false)] {
        let rec = l.batch(&a, seq(n)).unwrap().unwrap();
        assert_eq!(rec.results_pruned_at.is_none(), kept, "batch {n}");
        assert_eq!(
            l.results(&a, seq(n)).unwrap().is_empty(),
            !kept,
            "batch {n}"
        );
    }
    // Idempotency is untouched: bound, same answers, conflicts as before.
    let b = l.check_reference(&a, "p2", &digest("p2")).unwrap().unwrap();
    assert_eq!((b.sequence, b.index), (seq(1), 1));
    assert!(matches!(
        l.check_reference(&a, "p1", &digest("other")),
        Err(Error::ContentConflict { .. })
    ));
    let again = l.reserve(&a, super::tests::new_batch(5, &["s1"])).unwrap();
    assert!(
        matches!(&again, Reserve::Conflict { conflicts } if conflicts[0].kind == ConflictKind::AlreadyBound),
        "{again:?}"
    );
    // The rejected batch still tells its answered line from the others.
    let resubmit = Release::AbandonedOrRejected;
    assert_eq!(
        l.check_reference_with(&a, "r1", &digest("r1"), resubmit)
            .unwrap(),
        None
    );
    assert!(
        l.check_reference_with(&a, "r2", &digest("r2"), resubmit)
            .unwrap()
            .is_some()
    );
    // Nothing more to drop; the export has no result lines of pruned batches.
    assert_eq!(l.prune(SystemTime::now()).unwrap().batches, 0);
    let mut out = Vec::new();
    l.export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let results: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "result")
        .collect();
    let seqs: Vec<u64> = results
        .iter()
        .map(|v| v["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3]);
    assert!(text.contains("\"results_pruned_at\":1"), "{text}");
}

#[test]
fn prune_is_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    drop(Ledger::open(&path).unwrap());
    let l = Ledger::open_read_only(&path).unwrap();
    assert!(matches!(
        l.prune(SystemTime::now()),
        Err(Error::ReadOnly { .. })
    ));
}

#[test]
fn binding_with_answers_from_memory_when_the_content_is_the_same() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x", "y"]);
    let same = l.binding_with(&a, "y", &digest("y")).unwrap().unwrap();
    assert_eq!(
        (same.sequence, same.index, same.content_digest),
        (seq(1), 1, digest("y"))
    );
    // Other content: the stored digest, as `binding` gives it.
    let other = l
        .binding_with(&a, "y", &digest("changed"))
        .unwrap()
        .unwrap();
    assert_eq!(other, l.binding(&a, "y").unwrap().unwrap());
    assert_eq!(other.content_digest, digest("y"));
    assert_eq!(l.binding_with(&a, "nope", &digest("nope")).unwrap(), None);
    assert_eq!(l.binding(&acct("b"), "y").unwrap(), None);
}

#[test]
fn a_batch_reads_back_in_line_order() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x", "y", "z"]);
    let refs = l.batch_refs(&a, seq(1)).unwrap().unwrap();
    let got: Vec<(u64, Option<&str>, [u8; 32])> = refs
        .iter()
        .map(|r| (r.index, r.client_ref, r.content_digest))
        .collect();
    let want: Vec<(u64, Option<&str>, [u8; 32])> = lines(&["x", "y", "z"])
        .iter()
        .zip(["x", "y", "z"])
        .map(|(l, r)| (l.index, Some(r), l.content_digest))
        .collect();
    assert_eq!(got, want);
    assert!(l.batch_refs(&a, seq(2)).unwrap().is_none());
    assert!(
        l.batch_results(&a, seq(1)).unwrap().is_empty(),
        "not collected"
    );
    drive(&l, &a, 1, BatchState::Completed(BatchOutcome::Success));
    l.store_results(
        &a,
        seq(1),
        vec![
            result(2, &[("xResult", "A"), ("xRefNum", "0042")]),
            result(0, &[("xResult", "D"), ("xError", "Declined")]),
        ],
    )
    .unwrap();
    let results = l.batch_results(&a, seq(1)).unwrap();
    let lines: Vec<(u64, Vec<(&str, &str)>)> = results
        .iter()
        .map(|r| (r.index(), r.fields().collect()))
        .collect();
    assert_eq!(
        lines,
        [
            (0, vec![("xResult", "D"), ("xError", "Declined")]),
            (2, vec![("xResult", "A"), ("xRefNum", "0042")]),
        ]
    );
    assert_eq!(results.get(2).unwrap().get("xrefnum"), Some("0042"));
    assert!(results.get(1).is_none());
    assert_eq!(
        l.line_result(&a, seq(1), 0)
            .unwrap()
            .unwrap()
            .fields
            .pair(1)
            .unwrap()
            .1,
        "Declined"
    );
}

#[test]
fn the_index_follows_rebinding_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let a = acct("a");
    {
        let l = Ledger::open(&path).unwrap();
        reserve(&l, &a, 1, &["r", "s"]);
        l.transition(
            &a,
            seq(1),
            Transition::Abandoned {
                reason: "never sent".into(),
            },
        )
        .unwrap();
        assert_eq!(l.check_reference(&a, "r", &digest("r")).unwrap(), None);
        reserve(&l, &a, 2, &["t", "r"]);
        assert_eq!(l.binding(&a, "r").unwrap().unwrap().sequence, seq(2));
    }
    for read_only in [false, true] {
        let l = if read_only {
            Ledger::open_read_only(&path).unwrap()
        } else {
            Ledger::open(&path).unwrap()
        };
        let r = l.check_reference(&a, "r", &digest("r")).unwrap().unwrap();
        assert_eq!((r.sequence, r.index), (seq(2), 1));
        assert_eq!(l.check_reference(&a, "s", &digest("s")).unwrap(), None);
        let all: Vec<(String, u32, u64)> = l
            .bindings_of(&a)
            .unwrap()
            .into_iter()
            .map(|(r, b)| (r, b.sequence.get(), b.index))
            .collect();
        assert_eq!(
            all,
            [("r".into(), 2, 1), ("s".into(), 1, 1), ("t".into(), 2, 0)]
        );
        // The abandoned batch keeps its lines as reserved.
        let first = l.batch_refs(&a, seq(1)).unwrap().unwrap();
        assert_eq!(first.get(0).unwrap().client_ref, Some("r"));
        drop(l);
    }
}

#[test]
fn marking_a_rejected_batch_unknown_takes_its_lines_back() {
    let (_d, l) = fresh();
    let a = acct("a");
    reserve(&l, &a, 1, &["x"]);
    drive(&l, &a, 1, BatchState::Triggered);
    l.transition(&a, seq(1), Transition::Completed(failed(Some(0))))
        .unwrap();
    l.store_results(&a, seq(1), vec![]).unwrap();
    let resubmit = Release::AbandonedOrRejected;
    assert_eq!(
        l.check_reference_with(&a, "x", &digest("x"), resubmit)
            .unwrap(),
        None
    );
    l.transition(
        &a,
        seq(1),
        Transition::MarkedUnknown {
            reason: "operator".into(),
        },
    )
    .unwrap();
    assert!(
        l.check_reference_with(&a, "x", &digest("x"), resubmit)
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_batch_too_large_names_its_line_count() {
    // Building 2^32 lines is not possible in a test: this checks the error's message.
    let err = Error::BatchTooLarge {
        account: acct("a"),
        sequence: seq(1),
        lines: u64::from(u32::MAX) + 1,
    };
    assert!(err.to_string().contains("4294967296 lines"), "{err}");
}

#[test]
fn the_index_takes_forty_to_sixty_bytes_per_reference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let a = acct("a");
    let (batches, per) = (20u32, 5000usize);
    {
        let l = Ledger::open_with(&path, LedgerOptions::with_durability(Durability::FlushOnly))
            .unwrap();
        for n in 1..=batches {
            let refs: Vec<String> = (0..per).map(|i| format!("order-{n}-{i}")).collect();
            let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
            reserve(&l, &a, n, &refs);
        }
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.index_bytes(), 0, "loaded on first use");
    let b = l
        .check_reference(&a, "order-7-9", &digest("order-7-9"))
        .unwrap();
    assert_eq!(b.map(|b| (b.sequence, b.index)), Some((seq(7), 9)));
    let total = f64::from(batches) * per as f64;
    let per_ref = l.index_bytes() as f64 / total;
    assert!(
        (40.0..=61.0).contains(&per_ref),
        "{per_ref} bytes per reference"
    );
}

#[test]
fn a_retired_account_over_the_budget_is_dropped_and_built_again() {
    let dir = tempfile::tempdir().unwrap();
    let tight = LedgerOptions::with_durability(Durability::FlushOnly).index_budget(0);
    let l = Ledger::open_with(dir.path().join("tight"), tight).unwrap();
    let (a, b) = (acct("a"), acct("b"));
    reserve(&l, &a, 1, &["a-1", "a-2"]);
    reserve(&l, &b, 1, &["b-1"]);
    let both = l.index_bytes();
    l.retire_refs(&a);
    let only_b = l.index_bytes();
    assert!(0 < only_b && only_b < both, "{only_b} of {both}");
    // A write to the retired account builds its table again first: the old bindings hold.
    reserve(&l, &a, 2, &["a-3"]);
    for (r, n, i) in [("a-1", 1, 0), ("a-2", 1, 1), ("a-3", 2, 0)] {
        let bound = l.check_reference(&a, r, &digest(r)).unwrap();
        assert_eq!(
            bound.map(|b| (b.sequence, b.index)),
            Some((seq(n), i)),
            "{r}"
        );
    }
    assert!(l.index_bytes() > only_b);
    l.retire_refs(&a);
    l.retire_refs(&b);
    assert_eq!(l.index_bytes(), 0);
    let bound = l.check_reference(&b, "b-1", &digest("b-1")).unwrap();
    assert_eq!(bound.map(|b| (b.sequence, b.index)), Some((seq(1), 0)));

    // Under the budget, a retired account keeps its table.
    let roomy = LedgerOptions::with_durability(Durability::FlushOnly);
    let l = Ledger::open_with(dir.path().join("roomy"), roomy).unwrap();
    reserve(&l, &a, 1, &["a-1"]);
    let held = l.index_bytes();
    l.retire_refs(&a);
    assert_eq!(l.index_bytes(), held);
}

fn refs_of(l: &Ledger, a: &crate::AccountId) -> Vec<(Option<String>, u64, [u8; 32])> {
    let refs = l.batch_refs(a, seq(1)).unwrap().unwrap();
    refs.iter()
        .map(|line| {
            (
                line.client_ref.map(str::to_owned),
                line.index,
                line.content_digest,
            )
        })
        .collect()
}

#[test]
fn a_version_2_ledger_of_whole_blobs_opens_as_version_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let a = acct("a");
    let refs: Vec<String> = (0..2000).map(|i| format!("order-{i}")).collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let stored: Vec<StoredResult> = (0..2000)
        .map(|i| {
            result(
                i,
                &[("xResult", "A"), ("xRefNum", &format!("{}", 7000 + i))],
            )
        })
        .collect();
    let (expected_refs, expected_results) = {
        let l = Ledger::open(&path).unwrap();
        reserve(&l, &a, 1, &refs);
        drive(&l, &a, 1, BatchState::Triggered);
        l.complete_and_store(
            &a,
            seq(1),
            Transition::Completed(ok()),
            stored.clone(),
            PerLineAnswer::Read,
        )
        .unwrap();
        (refs_of(&l, &a), l.results(&a, seq(1)).unwrap())
    };
    // Rewrite it as version 2 wrote it: each blob whole under the batch's key.
    {
        let db = sled::open(&path).unwrap();
        for name in ["batch_refs", "batch_results"] {
            let tree = db.open_tree(name).unwrap();
            let key = crate::codec::batch_key(&a, seq(1));
            let blob = crate::pieces::get(&tree, &key, "test").unwrap().unwrap();
            assert!(blob.keys.len() > 1, "{name} is in pieces");
            for k in &blob.keys {
                tree.remove(k).unwrap();
            }
            tree.insert(&key, &blob.bytes[..]).unwrap();
        }
        db.open_tree("meta")
            .unwrap()
            .insert(FORMAT_KEY, &2u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(refs_of(&l, &a), expected_refs);
    assert_eq!(l.results(&a, seq(1)).unwrap(), expected_results);
    let bound = l
        .check_reference(&a, "order-150", &digest("order-150"))
        .unwrap();
    assert_eq!(bound.map(|b| (b.sequence, b.index)), Some((seq(1), 150)));
    assert_eq!(
        l.meta().unwrap().get(FORMAT_KEY).unwrap().unwrap().as_ref(),
        &3u32.to_be_bytes()[..],
        "now version 3: code of version 2 refuses it"
    );
}
