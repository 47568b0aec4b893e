//! A ledger written by format version 1 (one sled entry per transaction) opens, is migrated to
//! version 3 (one blob of references and one of results per batch, in pieces), reads and
//! exports the same as before and keeps working — also when the migration is killed half-way.
//!
//! `tests/fixtures/ledger-v1` was written by the code of format version 1 (commit 72d92ad,
//! before this layout) and `tests/fixtures/export-v1.jsonl` is that code's export of it: three
//! accounts with a cleaned batch, an abandoned batch whose reference a later batch took over,
//! batches in flight, a rejected batch with one answered line, a completed one, a stuck one,
//! one marked unknown, floors and a gateway batch id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, BatchOutcome, BatchState, CRASH_ENV, ConflictKind, Ledger, MIGRATION_CRASH_POINTS,
    NewBatch, NewBinding, PerLineAnswer, Release, Reserve, StoredResult, Transition, Verdict,
};

const CHILD_DIR: &str = "SEQUENCE_LEDGER_TEST_MIGRATE_DIR";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A private copy of the version-1 ledger.
fn copy_of_v1(dir: &Path) -> PathBuf {
    let path = dir.join("ledger");
    std::fs::create_dir_all(&path).unwrap();
    for f in ["conf", "db"] {
        std::fs::copy(fixture().join("ledger-v1").join(f), path.join(f)).unwrap();
    }
    path
}

fn seq(n: u32) -> SequenceNumber {
    SequenceNumber::new(n).unwrap()
}

fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// The fixture's refs were digested as `xRef`, `xAmount=1.00`.
fn digest(r: &str) -> [u8; 32] {
    sequence_ledger::content_digest([("xRef", r), ("xAmount", "1.00")])
}

/// An export as JSON values, with what version 2 adds taken out: the format line's version
/// and each batch's `results_pruned_at` (null for every batch of a migrated ledger).
fn normalised_export(l: &Ledger) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    l.export(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let o = v.as_object_mut().unwrap();
            if o["type"] == "format" {
                assert_eq!(o["version"], 2);
                o.insert("version".into(), 1.into());
            }
            if o["type"] == "batch" {
                assert_eq!(o.remove("results_pruned_at"), Some(serde_json::Value::Null));
            }
            v
        })
        .collect()
}

fn v1_export() -> Vec<serde_json::Value> {
    std::fs::read_to_string(fixture().join("export-v1.jsonl"))
        .unwrap()
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What the version-1 code answered for the fixture, checked on the migrated ledger.
fn answers_as_before(l: &Ledger) {
    let (acme, globex) = (acct("acme"), acct("globex"));
    assert_eq!(normalised_export(l), v1_export());
    common::check_invariants(l);
    let bound = |a: &AccountId, r: &str, release| {
        l.check_reference_with(a, r, &digest(r), release)
            .unwrap()
            .map(|b| (b.sequence.get(), b.index))
    };
    use Release::{AbandonedOnly, AbandonedOrRejected};
    #[rustfmt::skip]
    type Case<'a> = (&'a AccountId, &'a str, Release, Option<(u32, u64)>);
    let cases: &[Case<'_>] = &[
        (&acme, "x3", AbandonedOnly, Some((1, 2))),
        (&acme, "y1", AbandonedOnly, Some((6, 1))), // taken over from abandoned batch 2
        (&acme, "y2", AbandonedOnly, None),         // abandoned batch 2 released it
        (&acme, "z1", AbandonedOnly, Some((6, 0))),
        (&acme, "u1", AbandonedOnly, Some((7, 0))),
        (&acme, "never", AbandonedOnly, None),
        (&globex, "w1", AbandonedOnly, Some((1, 0))), // rejected: bound unless released
        (&globex, "w1", AbandonedOrRejected, None),
        (&globex, "w2", AbandonedOrRejected, Some((1, 1))), // has an outcome of its own
        (&globex, "w3", AbandonedOrRejected, None),
        (&globex, "v2", AbandonedOrRejected, Some((2, 1))),
    ];
    for (a, r, release, expected) in cases {
        assert_eq!(bound(a, r, *release), *expected, "{a} {r} {release:?}");
    }
    assert!(l.check_reference(&acme, "x1", &digest("other")).is_err());
    // Version 1 no longer knew the reference of a line a later batch took over.
    let abandoned = l.batch_refs(&acme, seq(2)).unwrap().unwrap();
    let refs: Vec<Option<&str>> = abandoned.iter().map(|r| r.client_ref).collect();
    assert_eq!(refs, [None, Some("y2")]);
    let results = l.batch_results(&acme, seq(1)).unwrap();
    let note = results.get(1).unwrap().get("xNote");
    assert_eq!(note, Some("caf\u{e9} & more=%"));
}

#[test]
fn a_format_1_ledger_is_migrated_on_open_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_of_v1(dir.path());
    let acme = acct("acme");
    {
        let l = Ledger::open(&path).unwrap();
        answers_as_before(&l);
        // It keeps working: finish batch 6, reserve more, conflicts as before.
        l.transition(&acme, seq(6), Transition::Triggered).unwrap();
        let results = vec![StoredResult {
            index: 0,
            fields: kvp_format::Record::from(vec![("xResult".into(), "A".into())]),
        }];
        l.complete_and_store(
            &acme,
            seq(6),
            Transition::Completed(Verdict::new(BatchOutcome::Success, "Success")),
            results,
            PerLineAnswer::Read,
        )
        .unwrap();
        l.transition(&acme, seq(6), Transition::Cleaned).unwrap();
        let new = NewBatch {
            sequence: l.next_sequence(&acme).unwrap(),
            request_len: 1,
            external_reference: None,
            lines: ["n1", "x1"]
                .iter()
                .zip(0u64..)
                .map(|(r, index)| NewBinding {
                    client_ref: (*r).into(),
                    index,
                    content_digest: digest(r),
                })
                .collect(),
        };
        assert_eq!(new.sequence, seq(8));
        let Reserve::Conflict { conflicts } = l.reserve(&acme, new.clone()).unwrap() else {
            panic!("x1 is bound to batch 1")
        };
        assert_eq!(conflicts[0].kind, ConflictKind::AlreadyBound);
        let mut fresh = new;
        fresh.lines.truncate(1);
        let Reserve::Reserved(rec) = l.reserve(&acme, fresh).unwrap() else {
            panic!("n1 is new")
        };
        assert_eq!(rec.state, BatchState::Reserved);
    }
    // Version 3 (the blobs in pieces) for good: the old trees are gone and another open changes nothing.
    {
        let db = sled::open(&path).unwrap();
        let version = db.open_tree("meta").unwrap().get("format_version").unwrap();
        assert_eq!(version.as_deref(), Some(&3u32.to_be_bytes()[..]));
        let names: Vec<String> = db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n == "bindings" || n == "results"),
            "{names:?}"
        );
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(
        l.batch(&acme, seq(6)).unwrap().unwrap().state,
        BatchState::Cleaned
    );
    assert_eq!(l.binding(&acme, "n1").unwrap().unwrap().sequence, seq(8));
}

#[test]
fn a_read_only_open_of_a_format_1_ledger_migrates_only_its_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_of_v1(dir.path());
    // A read-only open needs the lock file a writer leaves behind.
    std::fs::write(path.join("paybatch-ledger.lock"), b"").unwrap();
    let before: Vec<Vec<u8>> = ["conf", "db"]
        .iter()
        .map(|f| std::fs::read(path.join(f)).unwrap())
        .collect();
    let l = Ledger::open_read_only(&path).unwrap();
    answers_as_before(&l);
    drop(l);
    let after: Vec<Vec<u8>> = ["conf", "db"]
        .iter()
        .map(|f| std::fs::read(path.join(f)).unwrap())
        .collect();
    assert!(before == after, "a read-only open changed the ledger");
    // The real migration happens at the next read-write open.
    answers_as_before(&Ledger::open(&path).unwrap());
}

/// The child's half of the migration crash test: opens (and so migrates) the ledger.
#[test]
fn child_migrate_entry_point() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    Ledger::open(PathBuf::from(dir)).unwrap();
}

#[test]
fn a_migration_killed_at_any_point_is_finished_by_the_next_open() {
    for (i, point) in MIGRATION_CRASH_POINTS.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = copy_of_v1(dir.path());
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_migrate_entry_point", "--test-threads=1"])
            .env(CHILD_DIR, &path)
            .env(CRASH_ENV, point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: not killed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Killed before the version was written: still version 1, and the old trees intact.
        if i == 0 {
            let db = sled::open(&path).unwrap();
            let version = db.open_tree("meta").unwrap().get("format_version").unwrap();
            assert_eq!(version.as_deref(), Some(&1u32.to_be_bytes()[..]), "{point}");
        }
        answers_as_before(&Ledger::open(&path).unwrap());
    }
}
