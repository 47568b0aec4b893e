//! `paybatch demo --mixed`: the real binary runs Sola accounts on local folders and APS
//! accounts on the in-process APS simulator in one input, one output, one summary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use orchestrator::Format;

mod common;
use common::read_records;

/// The records of the KVP file `path`.
fn read(path: &Path) -> Vec<HashMap<String, String>> {
    read_records(path, Some(Format::Kvp))
}

#[test]
fn mixed_demo_processes_both_gateways_into_one_output_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    let o = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args([
            "--quiet",
            "demo",
            "--mixed",
            "--accounts",
            "3",
            "--txns",
            "90",
            "--batch-lines",
            "8",
            "--aps-accounts",
            "2",
            "--aps-txns",
            "12",
            "--dir",
        ])
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let root = root.canonicalize().unwrap();
    for (label, path) in [
        ("input:", "mixed.kvp"),
        ("results:", "results.kvp"),
        ("summary:", "summary.json"),
        ("APS journal:", "aps-journal.jsonl"),
    ] {
        let full = root.join(path).display().to_string();
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(label) && l.ends_with(&full)),
            "{label} {path} in {stderr}"
        );
    }

    let inputs = read(&root.join("mixed.kvp"));
    let outputs = read(&root.join("results.kvp"));
    assert_eq!(inputs.len(), 90 + 2 * 12);
    assert_eq!(
        outputs.len(),
        inputs.len(),
        "one output record per input record"
    );
    let mut aps_seen = HashMap::new();
    for (i, o) in inputs.iter().zip(&outputs) {
        assert_eq!(i["ref"], o["ref"], "input order");
        assert_eq!(i["account"], o["account"]);
        let outcome = o["outcome"].as_str();
        match i["account"].as_str() {
            // APS lines: processed by the simulator (amounts ending in .51 decline), carrying
            // its fort_id and five-digit response code.
            a if a.starts_with("aps-") => {
                *aps_seen.entry(a.to_owned()).or_insert(0) += 1;
                assert!(matches!(outcome, "approved" | "declined"), "{o:?}");
                assert!(!o["fort_id"].is_empty(), "{o:?}");
                assert_eq!(o["response_code"].len(), 5, "{o:?}");
            }
            // The last Sola account's gateway rejects every batch (as in the plain demo).
            "acct-003" => assert_eq!(outcome, "not_processed", "{o:?}"),
            _ => assert!(
                matches!(outcome, "approved" | "declined" | "error"),
                "{o:?}"
            ),
        }
    }
    assert_eq!(
        aps_seen.len(),
        2,
        "both APS accounts in the input: {aps_seen:?}"
    );
    assert!(aps_seen.values().all(|n| *n == 12), "{aps_seen:?}");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("summary.json")).unwrap()).unwrap();
    let accounts = summary["accounts"].as_object().unwrap();
    for name in ["acct-001", "acct-002", "acct-003", "aps-1", "aps-2"] {
        assert!(accounts.contains_key(name), "{name} in {summary}");
    }
    let aps_approved: u64 = ["aps-1", "aps-2"]
        .iter()
        .map(|a| accounts[*a]["outcomes"]["approved"].as_u64().unwrap_or(0))
        .sum();
    assert!(aps_approved > 0, "{summary}");
    // 12 lines per APS account in batches of at most 8: two batches each.
    for a in ["aps-1", "aps-2"] {
        assert_eq!(accounts[a]["batches"]["Cleaned"], 2, "{summary}");
    }
    let journal = std::fs::read_to_string(root.join("aps-journal.jsonl")).unwrap();
    assert_eq!(
        journal.lines().count(),
        2 * 12,
        "each APS line processed once"
    );
}

#[test]
fn mixed_options_need_mixed_and_generate_only_names_an_aps_endpoint() {
    let o = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(["demo", "--aps-accounts", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args([
            "demo",
            "--mixed",
            "--generate-only",
            "--accounts",
            "2",
            "--txns",
            "10",
            "--aps-accounts",
            "1",
            "--aps-txns",
            "3",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("paybatch gateway-sim --config"), "{stderr}");
    assert!(stderr.contains("mixed.kvp"), "{stderr}");
    let config = std::fs::read_to_string(dir.path().join("paybatch.toml")).unwrap();
    assert!(
        config.contains("protocol = \"aps\"\nendpoint = \"http://127.0.0.1:"),
        "{config}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mixed.kvp"))
            .unwrap()
            .lines()
            .count(),
        13
    );
}
