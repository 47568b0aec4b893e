//! Every example runs and prints what it promises, so the docs cannot rot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

/// `target/debug/examples/NAME` (cargo builds examples before integration tests).
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples");
    let built = dir.join(name);
    if built.is_file() {
        Command::new(built)
    } else {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["run", "--quiet", "--example", name]);
        cmd
    }
}

#[test]
fn submit_from_program() {
    let out = example("submit_from_program").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("transactions: 500"), "{stdout}");
    assert!(
        stdout.contains("acct-001:") && stdout.contains("approved amount"),
        "{stdout}"
    );
    assert!(stdout.contains("complete: true"), "{stdout}");
}

#[test]
fn custom_source() {
    let out = example("custom_source").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("approved 40 of 40"), "{stdout}");
}

/// The embedding example uses the engine with the Sola file drop on a local folder and no
/// simulator, and returns once the batch is triggered: its drop holds exactly a valid
/// REQUEST_1 with the three transactions and the PROCESS_1 that triggers it, and the ledger has
/// batch 1 Triggered.
#[test]
fn embed_sola() {
    let dir = tempfile::tempdir().unwrap();
    let out = example("embed_sola").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("acme: 3 transactions waiting for the gateway in batches [1]"),
        "{stdout}"
    );
    assert!(stdout.contains("\"unknown\": 3"), "{stdout}");
    for secret in ["4111111111111111", "5555555555554444", "example-batch-key"] {
        assert!(!stdout.contains(secret), "{secret} in {stdout}");
    }

    let drop = dir.path().join("drop");
    let names = |folder: &str| -> Vec<String> {
        match std::fs::read_dir(drop.join(folder)) {
            Ok(entries) => {
                let mut v: Vec<String> = entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            }
            Err(_) => Vec::new(),
        }
    };
    assert_eq!(names("Request"), ["PROCESS_1.KVP", "REQUEST_1.KVP"]);
    assert_eq!(names("Response"), Vec::<String>::new(), "no gateway ran");

    let request_name = kvp_format::FileName::parse("REQUEST_1.KVP").unwrap();
    let request = std::fs::read(drop.join("Request/REQUEST_1.KVP")).unwrap();
    let report = kvp_format::validate_bytes(
        &request_name,
        "REQUEST_1.KVP",
        &request,
        &kvp_format::ValidateOptions::default(),
    );
    assert!(report.is_valid(), "{:?}", report.problems);
    assert_eq!(report.records, 3);
    let text = String::from_utf8(request).unwrap();
    for invoice in ["INV-1001", "INV-1002", "INV-1003"] {
        assert!(text.contains(&format!("xInvoice={invoice}")), "{text}");
    }

    let process =
        kvp_format::ProcessFile::parse(&std::fs::read(drop.join("Request/PROCESS_1.KVP")).unwrap())
            .unwrap();
    assert_eq!(process.sequence.get(), 1);
    assert_eq!(process.submitted_count, 3);
    assert_eq!(process.key.expose(), "example-batch-key");
    assert!(
        kvp_format::check_process(&request_name, 3, &process, "PROCESS_1.KVP").is_empty(),
        "PROCESS_1 matches REQUEST_1"
    );

    let ledger = sequence_ledger::Ledger::open_read_only(dir.path().join("ledger")).unwrap();
    let account = sequence_ledger::AccountId::new("acme").unwrap();
    let batch = ledger
        .batch(&account, kvp_format::SequenceNumber::new(1).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(batch.state, sequence_ledger::BatchState::Triggered);
    assert_eq!(batch.line_count, 3);
}
