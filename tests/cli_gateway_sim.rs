//! `paybatch gateway-sim --config FILE`: the real binary serving a local drop, driven only
//! through files, stopped with SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::sigterm_and_wait;

fn write_config(dir: &Path, drop: &Path) -> std::path::PathBuf {
    let config = dir.join("paybatch.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{}\"\n\n[accounts.acme]\nlocation = \"file://{}\"\n\
             batch_key = \"batch-secret-1\"\nmerchant_key = \"merchant-secret-1\"\n",
            dir.join("ledger").display(),
            drop.display()
        ),
    )
    .unwrap();
    config
}

/// Waits (bounded, so a broken simulator fails the test instead of hanging it) for `path`.
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serves_a_batch_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    std::fs::create_dir_all(drop.join("Request")).unwrap();
    std::fs::create_dir_all(drop.join("Response")).unwrap();
    let config = write_config(dir.path(), &drop);

    let child = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(["gateway-sim", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("sim-state"))
        .args(["--poll-interval", "20ms", "--spaces", "plus"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let common = "xKey=merchant-secret-1&xVersion=5.0.0&xSoftwareName=test&xSoftwareVersion=1";
    let request = format!(
        "xIndex=0&xSequenceNumber=1&{common}&xCommand=cc%3Asale&xCardNum=4111111111111111&xExp=1250&xAmount=10.00&xName=Ada%20Lovelace&xInvoice=inv-1\n\
         xIndex=1&xSequenceNumber=1&{common}&xCommand=cc%3Asale&xCardNum=5454545454545454&xExp=1250&xAmount=20.00&xName=Alan%20Turing&xInvoice=inv-2\n"
    );
    std::fs::write(drop.join("Request/REQUEST_1.KVP"), request).unwrap();
    std::fs::write(
        drop.join("Request/PROCESS_1.KVP"),
        "xKey=batch-secret-1&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=1\n",
    )
    .unwrap();

    wait_for(&drop.join("Response/COMPLETE_1.KVP"));
    let complete = std::fs::read_to_string(drop.join("Response/COMPLETE_1.KVP")).unwrap();
    assert!(complete.contains("xStatus=Success"), "{complete}");
    assert!(complete.contains("xProcessedCount=2"), "{complete}");
    let response = std::fs::read_to_string(drop.join("Response/RESPONSE_1.KVP")).unwrap();
    assert_eq!(response.lines().count(), 2, "{response}");
    assert!(
        response.lines().all(|l| l.contains("xResult=A")),
        "{response}"
    );
    // The consumed request files are gone; the card number never reached the answer.
    assert!(!drop.join("Request/REQUEST_1.KVP").exists());
    assert!(!drop.join("Request/PROCESS_1.KVP").exists());
    assert!(!response.contains("4111111111111111"));

    let out = sigterm_and_wait(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("1 batch(es) answered"), "{stderr}");
    for secret in ["4111111111111111", "batch-secret-1", "merchant-secret-1"] {
        assert!(!stderr.contains(secret), "{secret} leaked: {stderr}");
    }
}

#[test]
fn an_unknown_account_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("drop"));
    let out = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(["gateway-sim", "--config"])
        .arg(&config)
        .args(["--account", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}

/// `paybatch gateway-sim` serving an APS account of the config, and `paybatch submit` on the
/// same config talking to it: two real processes, the simulator's journal proving each line
/// processed once. The account's settings as the published reference reads the service.
#[test]
fn serves_aps_accounts_to_a_real_submit() {
    serve_aps_to_a_real_submit(|_| String::new());
}

/// The same with the account set for section 3a's numbering, a signed file, a renamed header
/// and PROCESS_BATCH on its own path: the simulator follows the account's settings (with the
/// defaults instead it would number lines differently and refuse the upload).
#[test]
fn serves_aps_accounts_as_their_settings_read_the_service() {
    serve_aps_to_a_real_submit(|port| {
        format!(
            "line_number_offset = 1\nfile_signature = \"content\"\nheader_names = {{ merchant_reference = \"Merchant_Reference\" }}\nprocess_url = \"http://127.0.0.1:{port}/integration-batch/batchApi/\"\n"
        )
    });
}

/// Runs the simulator and a submit on one APS account whose table gets `extra(port)`.
fn serve_aps_to_a_real_submit(extra: impl Fn(u16) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let accounts = paybatch_demo::aps::demo_accounts(1);
    let config = dir.path().join("paybatch.toml");
    let tables =
        paybatch_demo::aps::demo_config_toml(&accounts, &format!("http://127.0.0.1:{port}"), 7)
            .replace(
                "protocol = \"aps\"\n",
                &format!("protocol = \"aps\"\n{}", extra(port)),
            );
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{}\"\n[poll]\ninterval = \"20ms\"\nmax_interval = \"100ms\"\n\n{tables}",
            dir.path().join("ledger").display(),
        ),
    )
    .unwrap();
    let records = paybatch_demo::aps::demo_records("cli", 20, 3);
    let input = dir.path().join("input.jsonl");
    let mut lines = String::new();
    for (i, fields) in records.iter().enumerate() {
        let mut obj = serde_json::Map::new();
        obj.insert("account".into(), "aps-1".into());
        obj.insert("ref".into(), format!("r{i}").into());
        for (k, v) in fields {
            obj.insert(k.clone(), v.clone().into());
        }
        lines.push_str(&serde_json::Value::Object(obj).to_string());
        lines.push('\n');
    }
    std::fs::write(&input, lines).unwrap();

    let state = dir.path().join("sim-state");
    let sim = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(["gateway-sim", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the APS server listens (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the APS simulator never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let output = dir.path().join("out.jsonl");
    let submit = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(["submit", "--config"])
        .arg(&config)
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--wait")
        .output()
        .unwrap();
    assert!(
        submit.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&submit.stderr)
    );
    let out = std::fs::read_to_string(&output).unwrap();
    let results: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), records.len());
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["ref"], format!("r{i}"), "output in input order");
        let outcome = r["outcome"].as_str().unwrap();
        assert!(
            ["approved", "declined", "error"].contains(&outcome),
            "line {i} was not processed: {r}"
        );
    }

    let stopped = sigterm_and_wait(sim);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    // Every line processed exactly once, as the simulator's journal tells.
    let journal = std::fs::read_to_string(state.join(format!("aps-journal-{port}.jsonl"))).unwrap();
    let mut seen = std::collections::HashMap::new();
    for line in journal.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let reference = entry["merchant_reference"].as_str().unwrap().to_owned();
        *seen.entry(reference).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), records.len(), "{journal}");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
}
