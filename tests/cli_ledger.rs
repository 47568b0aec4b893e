//! `paybatch ledger show|export` against a real ledger written through the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, BatchOutcome, Ledger, NewBatch, NewBinding, Reserve, StoredResult, Transition,
    Verdict,
};

mod common;
use common::paybatch;

const CARD: &str = "4111111111111111";

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn seq(n: u32) -> SequenceNumber {
    SequenceNumber::new(n).unwrap()
}

fn reserve(l: &Ledger, a: &AccountId, n: u32, refs: &[&str]) {
    let lines = (0u64..)
        .zip(refs)
        .map(|(index, r)| NewBinding {
            client_ref: (*r).into(),
            index,
            content_digest: sequence_ledger::content_digest([("xRef", *r), ("xCardNum", CARD)]),
        })
        .collect();
    let new = NewBatch {
        sequence: seq(n),
        request_len: 480,
        external_reference: None,
        lines,
    };
    let Reserve::Reserved(_) = l.reserve(a, new).unwrap() else {
        panic!()
    };
}

/// acme: batch 1 cleaned, batch 2 triggered (gateway batch id 4242); globex: floor 40, batch 41 stuck.
fn sample_ledger(dir: &Path) -> PathBuf {
    let path = dir.join("ledger");
    let l = Ledger::open(&path).unwrap();
    let acme = AccountId::new("acme").unwrap();
    let globex = AccountId::new("globex").unwrap();
    reserve(&l, &acme, 1, &["o-1", "o-2"]);
    for t in [Transition::RequestUploaded, Transition::Triggered] {
        l.transition(&acme, seq(1), t).unwrap();
    }
    let ok = Verdict::new(BatchOutcome::Success, "Success");
    l.transition(&acme, seq(1), Transition::Completed(ok))
        .unwrap();
    let masked = kvp_format::mask_value("xCardNum", CARD).into_owned();
    let results = vec![StoredResult {
        index: 0,
        fields: kvp_format::Record::from(vec![
            ("xResult".into(), "A".into()),
            ("xMaskedCardNumber".into(), masked),
        ]),
    }];
    l.store_results(&acme, seq(1), results).unwrap();
    l.transition(&acme, seq(1), Transition::Cleaned).unwrap();
    reserve(&l, &acme, 2, &["o-3"]);
    let uploaded = Transition::RequestUploadedAs {
        gateway_batch_id: "4242".into(),
    };
    for t in [uploaded, Transition::Triggered] {
        l.transition(&acme, seq(2), t).unwrap();
    }
    l.set_floor(&globex, seq(40)).unwrap();
    reserve(&l, &globex, 41, &["g-1"]);
    for t in [
        Transition::RequestUploaded,
        Transition::Triggered,
        Transition::Stuck,
    ] {
        l.transition(&globex, seq(41), t).unwrap();
    }
    path
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn show_lists_accounts_and_in_flight_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_ledger(dir.path());
    let before = files(&path);
    let o = paybatch(&["ledger", "show", "--ledger", path.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let acme = out.lines().find(|l| l.starts_with("acme ")).unwrap();
    let cols: Vec<&str> = acme.split_whitespace().collect();
    assert_eq!(&cols[..5], ["acme", "2", "-", "2", "3"], "{out}");
    assert!(
        acme.contains("Cleaned 1") && acme.contains("Triggered 1"),
        "{out}"
    );
    let globex = out.lines().find(|l| l.starts_with("globex ")).unwrap();
    assert_eq!(
        &globex.split_whitespace().collect::<Vec<_>>()[..5],
        ["globex", "41", "40", "41", "42"]
    );
    assert!(out.contains("in flight: 2"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("acme") && l.contains("Triggered") && l.contains("batch_id: 4242")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("globex") && l.contains("41") && l.contains("Stuck")),
        "{out}"
    );
    assert_eq!(files(&path), before, "show changed the ledger");
}

#[test]
fn show_one_account_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_ledger(dir.path());
    let o = paybatch(&[
        "ledger",
        "show",
        "--ledger",
        path.to_str().unwrap(),
        "--account",
        "acme",
        "--json",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["accounts"].as_array().unwrap().len(), 1);
    let acme = &v["accounts"][0];
    assert_eq!(
        (
            acme["account"].as_str(),
            acme["high_water"].as_u64(),
            acme["next"].as_u64()
        ),
        (Some("acme"), Some(2), Some(3))
    );
    let states: Vec<&str> = acme["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["Cleaned", "Triggered"]);
    assert_eq!(acme["batches"][0]["verdict"]["outcome"], "Success");
    let flying: Vec<u64> = v["in_flight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(flying, [2], "only acme's");
}

#[test]
fn export_writes_json_lines_without_card_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_ledger(dir.path());
    let before = files(&path);
    let file = dir.path().join("export.jsonl");
    let o = paybatch(&[
        "ledger",
        "export",
        "--ledger",
        path.to_str().unwrap(),
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let exported = std::fs::read_to_string(&file).unwrap();
    let stdout = paybatch(&["ledger", "export", "--ledger", path.to_str().unwrap()]);
    assert_eq!(text(&stdout).0, exported, "stdout and --output agree");
    let types: Vec<String> = exported
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    #[rustfmt::skip]
    let expected = ["format", "account", "batch", "batch", "binding", "binding", "binding", "result", "account", "batch", "binding"];
    assert_eq!(types, expected);
    assert!(!exported.contains(CARD));
    assert!(
        exported.contains("411111******1111"),
        "the gateway's masked number is kept"
    );
    assert_eq!(files(&path), before, "export changed the ledger");
    let folder: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".paybatch-export-"))
        .collect();
    assert!(folder.is_empty(), "temporary files left: {folder:?}");
    // An export that cannot be made leaves the old file as it was.
    let o = paybatch(&[
        "ledger",
        "export",
        "--ledger",
        dir.path().join("no-ledger-here").to_str().unwrap(),
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exported);
}

#[test]
fn errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let o = paybatch(&["ledger", "show", "--ledger", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no ledger at"), "{}", text(&o).1);

    let path = sample_ledger(dir.path());
    let o = paybatch(&[
        "ledger",
        "show",
        "--ledger",
        path.to_str().unwrap(),
        "--account",
        "bad id",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("invalid account id"), "{}", text(&o).1);

    let held = Ledger::open(&path).unwrap();
    for cmd in ["show", "export"] {
        let o = paybatch(&["ledger", cmd, "--ledger", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(3), "{cmd}");
        let needle = format!("is in use by pid {}", std::process::id());
        assert!(text(&o).1.contains(&needle), "{cmd}: {}", text(&o).1);
    }
    drop(held);
}

#[test]
fn prune_drops_old_results_and_says_what() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_ledger(dir.path());
    let ledger = path.to_str().unwrap();
    let prune = |date: &str| {
        paybatch(&[
            "ledger",
            "prune",
            "--ledger",
            ledger,
            "--collected-before",
            date,
        ])
    };
    // Nothing was cleaned that long ago (an offset counts: 02:00+02:00 is midnight UTC).
    for date in ["2000-01-01", "2000-01-01T02:00:00+02:00"] {
        let o = prune(date);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(
            out.starts_with("pruned the stored results of 0 batch(es) cleaned before 2000-01-01T00:00:00Z: 0 line(s)"),
            "{out}"
        );
    }
    let o = prune("2999-12-31T23:59:59Z");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("of 1 batch(es)") && out.contains("1 line(s)"),
        "{out}"
    );
    assert!(out.contains("  acme: 1 batch(es), 1 line(s)"), "{out}");
    // The batch is still there and still binds its references; its results are gone.
    let o = paybatch(&["ledger", "show", "--ledger", ledger, "--account", "acme"]);
    let (out, _) = text(&o);
    assert!(
        out.lines().any(|l| l.starts_with("  acme")
            && l.contains("Cleaned")
            && l.contains("results pruned")),
        "{out}"
    );
    let o = paybatch(&["ledger", "export", "--ledger", ledger]);
    let exported = text(&o).0;
    assert!(!exported.contains("\"type\":\"result\""), "{exported}");
    assert!(exported.contains("\"client_ref\":\"o-1\""), "{exported}");
    let l = Ledger::open(&path).unwrap();
    let acme = AccountId::new("acme").unwrap();
    assert!(l.results(&acme, seq(1)).unwrap().is_empty());
    assert!(
        l.batch(&acme, seq(1))
            .unwrap()
            .unwrap()
            .results_pruned_at
            .is_some()
    );
    drop(l);

    for (args, needle) in [
        (
            vec!["--ledger", ledger, "--collected-before", "yesterday"],
            "is not a date",
        ),
        (
            vec![
                "--ledger",
                ledger,
                "--collected-before",
                "2025-06-30T12:00:00",
            ],
            "is not a date",
        ),
        (vec!["--collected-before", "2025-06-30"], "--config"),
        (
            vec![
                "--ledger",
                dir.path().join("none").to_str().unwrap(),
                "--collected-before",
                "2025-06-30",
            ],
            "no ledger at",
        ),
    ] {
        let mut all = vec!["ledger", "prune"];
        all.extend(args);
        let o = paybatch(&all);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {}", text(&o).1);
        assert!(text(&o).1.contains(needle), "{all:?}: {}", text(&o).1);
    }
}
