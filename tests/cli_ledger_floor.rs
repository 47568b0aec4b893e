//! `paybatch ledger set-floor`: the operator's floor set through the real binary, seen by
//! `ledger show`, and obeyed by a real `paybatch submit` against `paybatch gateway-sim` on a
//! local drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, Ledger, NewBatch, NewBinding, Reserve};

mod common;
use common::{paybatch, sigterm_and_wait, text};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_config(dir: &Path, drop: &Path) -> PathBuf {
    let config = dir.join("paybatch.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{}\"\n[poll]\ninterval = \"20ms\"\nmax_interval = \"100ms\"\n\n\
             [accounts.acme]\nlocation = \"file://{}\"\n\
             batch_key = \"batch-secret-1\"\nmerchant_key = \"merchant-secret-1\"\n",
            dir.join("ledger").display(),
            drop.display()
        ),
    )
    .unwrap();
    config
}

fn account_json(ledger: &Path, account: &str) -> serde_json::Value {
    let o = paybatch(&[
        "ledger",
        "show",
        "--ledger",
        s(ledger),
        "--account",
        account,
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["accounts"][0].clone()
}

fn batch(n: u32, r: &str) -> NewBatch {
    NewBatch {
        sequence: SequenceNumber::new(n).unwrap(),
        request_len: 100,
        external_reference: None,
        lines: vec![NewBinding {
            client_ref: r.into(),
            index: 0,
            content_digest: sequence_ledger::content_digest([("xRef", r)]),
        }],
    }
}

#[test]
fn floor_is_shown_and_reservations_go_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    {
        let l = Ledger::open(&ledger).unwrap();
        let acme = AccountId::new("acme").unwrap();
        let Reserve::Reserved(_) = l.reserve(&acme, batch(3, "r-3")).unwrap() else {
            panic!("first reservation")
        };
    }
    let o = paybatch(&[
        "ledger",
        "set-floor",
        "--ledger",
        s(&ledger),
        "--account",
        "acme",
        "500",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("account acme: floor 500 (was -); last number used 3; next batch gets 501"),
        "{out}"
    );
    let shown = account_json(&ledger, "acme");
    assert_eq!(shown["floor"], 500, "{shown}");
    assert_eq!(shown["high_water"], 3, "{shown}");
    assert_eq!(shown["next"], 501, "{shown}");

    // The floor holds for the library's reservations: 500 is taken, 501 is next.
    let l = Ledger::open(&ledger).unwrap();
    let acme = AccountId::new("acme").unwrap();
    match l.reserve(&acme, batch(500, "r-500")).unwrap() {
        Reserve::LostRace { next } => assert_eq!(next.get(), 501),
        _ => panic!("500 is at the floor and must not be reserved"),
    }
    let Reserve::Reserved(b) = l.reserve(&acme, batch(501, "r-501")).unwrap() else {
        panic!("501 is above the floor")
    };
    assert_eq!(b.sequence.get(), 501);

    // While this process holds the ledger, set-floor names the holder.
    let o = paybatch(&[
        "ledger",
        "set-floor",
        "--ledger",
        s(&ledger),
        "--account",
        "acme",
        "900",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let pid = format!("in use by pid {}", std::process::id());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&pid),
        "{}",
        text(&o)
    );
    drop(l);

    // A floor under the high-water mark is recorded (typo correction) but used numbers stay used.
    let o = paybatch(&[
        "ledger",
        "set-floor",
        "--ledger",
        s(&ledger),
        "--account",
        "acme",
        "10",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("floor 10 (was 500)") && out.contains("next batch gets 502"),
        "{out}"
    );
    assert!(out.contains("already used numbers up to 501"), "{out}");
    assert_eq!(account_json(&ledger, "acme")["floor"], 10);
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    let config = write_config(dir.path(), &drop);
    let ledger = dir.path().join("ledger");
    for (args, needle) in [
        (
            vec!["--ledger", s(&ledger), "--account", "acme", "0"],
            "sequence",
        ),
        (
            vec!["--ledger", s(&ledger), "--account", "acme", "1000000000"],
            "sequence",
        ),
        (
            vec!["--ledger", s(&ledger), "--account", "ac me", "5"],
            "ac me",
        ),
        (
            vec!["--config", s(&config), "--account", "globex", "5"],
            "globex",
        ),
        (vec!["--account", "acme", "5"], "--config"),
    ] {
        let mut all = vec!["ledger", "set-floor"];
        all.extend(args.iter().copied());
        let o = paybatch(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
        assert!(
            err.contains(&needle.to_lowercase()),
            "{args:?}: {}",
            text(&o)
        );
    }
    assert!(!ledger.exists(), "a refused set-floor created the ledger");
}

#[test]
fn submit_numbers_its_batch_above_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    std::fs::create_dir_all(drop.join("Request")).unwrap();
    std::fs::create_dir_all(drop.join("Response")).unwrap();
    let config = write_config(dir.path(), &drop);
    let ledger = dir.path().join("ledger");

    let o = paybatch(&[
        "ledger",
        "set-floor",
        "--config",
        s(&config),
        "--account",
        "acme",
        "7000",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("next batch gets 7001"),
        "{}",
        text(&o)
    );

    let input = dir.path().join("input.jsonl");
    let mut lines = String::new();
    for i in 0..3 {
        lines.push_str(&format!(
            "{{\"account\":\"acme\",\"ref\":\"r{i}\",\"xCommand\":\"cc:sale\",\"xCardNum\":\"4111111111111111\",\"xExp\":\"1250\",\"xAmount\":\"1{i}.00\"}}\n"
        ));
    }
    std::fs::write(&input, lines).unwrap();

    let sim = Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(["gateway-sim", "--config", s(&config)])
        .arg("--state-dir")
        .arg(dir.path().join("sim-state"))
        .args(["--poll-interval", "20ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = dir.path().join("out.jsonl");
    let submit = paybatch(&[
        "submit",
        "--config",
        s(&config),
        s(&input),
        "--output",
        s(&output),
        "--wait",
    ]);
    let sim_out = sigterm_and_wait(sim);
    assert!(
        submit.status.success(),
        "{}\nsimulator: {}",
        text(&submit),
        String::from_utf8_lossy(&sim_out.stderr)
    );
    let shown = account_json(&ledger, "acme");
    assert_eq!(shown["floor"], 7000, "{shown}");
    assert_eq!(shown["high_water"], 7001, "{shown}");
    let batches = shown["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "{shown}");
    assert_eq!(batches[0]["sequence"], 7001, "{shown}");
    let out = std::fs::read_to_string(&output).unwrap();
    assert_eq!(out.lines().count(), 3, "{out}");
}
