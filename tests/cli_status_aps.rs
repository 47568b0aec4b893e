//! The commands that walk a config's accounts, on APS accounts (the real binary against the
//! APS simulator on 127.0.0.1): `config show` masks the APS secrets, `store check` says an APS
//! account has no drop, `status` shows APS batches, `resolve --abandon` releases an APS batch
//! that never reached the service, `collect` finishes APS batches a `submit` left in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use gateway_sim::aps::{ApsSim, ApsSimOptions};
use orchestrator::Format;
use paybatch_demo::aps::{self, ApsDemoAccount};

mod common;
use common::{read_records, text};

fn paybatch(args: &[&str]) -> Output {
    common::paybatch(&[&["--quiet"], args].concat())
}

/// The records of the KVP file `path`.
fn read(path: &Path) -> Vec<HashMap<String, String>> {
    read_records(path, Some(Format::Kvp))
}

/// `aps-1` on `endpoint_1`, `aps-2` on `endpoint_2`, batches of at most 4 lines.
fn write_config(dir: &Path, accounts: &[ApsDemoAccount], endpoints: [&str; 2]) -> PathBuf {
    let config = dir.join("paybatch.toml");
    let mut toml = format!(
        "[ledger]\npath = {:?}\n\n[poll]\ninterval = \"20ms\"\nmax_interval = \"100ms\"\ntimeout = \"1m\"\n\n",
        dir.join("ledger").display().to_string()
    );
    for (account, endpoint) in accounts.iter().zip(endpoints) {
        toml.push_str(&aps::demo_config_toml(
            std::slice::from_ref(account),
            endpoint,
            4,
        ));
    }
    std::fs::write(&config, toml).unwrap();
    config
}

fn status(config: &str) -> (Option<i32>, serde_json::Value) {
    let o = paybatch(&["status", "--json", "--config", config]);
    let json = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    (o.status.code(), json)
}

fn account<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == name)
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

#[test]
fn account_commands_handle_aps_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = aps::demo_accounts(2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let journal = dir.path().join("aps-journal.jsonl");
    let sim = rt
        .block_on(ApsSim::start(ApsSimOptions {
            merchants: accounts.iter().map(|a| a.merchant.clone()).collect(),
            journal: Some(journal.clone()),
            validation_polls: 1,
            processing_polls: 1,
            ..ApsSimOptions::default()
        }))
        .unwrap();
    // aps-2 first points at a port nobody listens on: its batch is reserved, never uploaded.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("http://{closed}");
    let config = write_config(dir.path(), &accounts, [&sim.endpoint(), &dead]);
    let c = config.to_str().unwrap();
    let empty = dir.path().join("none.kvp");
    std::fs::write(&empty, "").unwrap();
    let input = dir.path().join("input.kvp");
    aps::write_mixed_input(&empty, &input, &accounts, 6, 5).unwrap();
    let i = input.to_str().unwrap();

    // config show: every APS secret masked, the rest shown.
    let o = paybatch(&["config", "show", "--config", c]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    for a in &accounts {
        let m = &a.merchant;
        for secret in [
            m.access_code.expose(),
            m.sha_request_phrase.expose(),
            m.sha_response_phrase.expose(),
        ] {
            assert!(!shown.contains(secret.as_str()), "{secret} in {shown}");
        }
        assert!(shown.contains(&m.merchant_identifier), "{shown}");
    }
    assert_eq!(
        shown.matches("access_code = \"[REDACTED]\"").count(),
        2,
        "{shown}"
    );
    assert_eq!(
        shown
            .matches("sha_response_phrase = \"[REDACTED]\"")
            .count(),
        2
    );
    assert!(shown.contains("sha_type = \"sha512\""), "{shown}");

    // store check: an APS account has no drop.
    let o = paybatch(&["store", "check", "--config", c, "--account", "aps-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("aps-1") && err.contains("no drop"), "{err}");

    // submit without --wait: aps-1 is triggered, aps-2 cannot reach its endpoint.
    let o = paybatch(&["submit", "--config", c, i]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let (_, s) = status(c);
    let aps1 = account(&s, "aps-1");
    assert_eq!(aps1["protocol"], "aps", "{s}");
    assert_eq!(aps1["last_sequence"], 2, "6 lines in batches of 4: {s}");
    let aps2 = account(&s, "aps-2");
    assert_eq!(aps2["protocol"], "aps");
    assert_eq!(aps2["in_flight"], serde_json::json!([1]), "{s}");
    let o = paybatch(&["status", "--config", c]);
    let plain = String::from_utf8_lossy(&o.stdout);
    assert!(
        plain
            .lines()
            .any(|l| l.starts_with("aps-2") && l.contains(" aps ")),
        "{plain}"
    );

    // resolve: the batch that never left is abandoned, its lines released — once the service
    // can be asked about it (with the endpoint down, the decision is refused: the service's
    // side is always looked at before an abandon).
    let abandon = || {
        paybatch(&[
            "resolve",
            "--config",
            c,
            "--account",
            "aps-2",
            "--seq",
            "1",
            "--abandon",
            "--reason",
            "endpoint was down, never uploaded",
        ])
    };
    let o = abandon();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("must be inspected"),
        "{}",
        text(&o)
    );
    write_config(dir.path(), &accounts, [&sim.endpoint(), &sim.endpoint()]);
    let o = abandon();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("-> Abandoned")
            && String::from_utf8_lossy(&o.stderr).contains("not known to the service"),
        "{}",
        text(&o)
    );
    write_config(dir.path(), &accounts, [&sim.endpoint(), &dead]);

    // collect: aps-1's batches finish; creates nothing for aps-2.
    let out = dir.path().join("collected.kvp");
    let o = paybatch(&[
        "collect",
        "--config",
        c,
        i,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = read(&out);
    assert_eq!(rows.len(), 12);
    for r in rows.iter().filter(|r| r["account"] == "aps-1") {
        assert!(
            matches!(r["outcome"].as_str(), "approved" | "declined"),
            "{r:?}"
        );
    }
    assert_eq!(rows.iter().filter(|r| r["account"] == "aps-2").count(), 6);
    assert!(
        rows.iter()
            .filter(|r| r["account"] == "aps-2")
            .all(|r| !matches!(r["outcome"].as_str(), "approved" | "declined")),
        "{rows:?}"
    );
    assert_eq!(
        sim.journal().len(),
        6,
        "only aps-1's lines reached the service"
    );

    // With the endpoint fixed, a re-submit sends aps-2's lines under a new number and leaves
    // aps-1's alone.
    write_config(dir.path(), &accounts, [&sim.endpoint(), &sim.endpoint()]);
    let out = dir.path().join("final.kvp");
    let o = paybatch(&[
        "submit",
        "--config",
        c,
        i,
        "--wait",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let inputs = read(&input);
    let rows = read(&out);
    assert_eq!(rows.len(), inputs.len());
    for (i, r) in inputs.iter().zip(&rows) {
        assert_eq!(i["ref"], r["ref"], "input order");
        assert!(
            matches!(r["outcome"].as_str(), "approved" | "declined"),
            "{r:?}"
        );
    }
    let mut seen = HashMap::new();
    for e in sim.journal() {
        *seen
            .entry((e.merchant_identifier, e.merchant_reference))
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 12);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    let (code, s) = status(c);
    assert_eq!(code, Some(0), "{s}");
    let aps2 = account(&s, "aps-2");
    assert_eq!(aps2["batches"]["Abandoned"], 1, "{s}");
    assert_eq!(aps2["batches"]["Cleaned"], 2, "{s}");
    assert_eq!(aps2["last_sequence"], 3, "{s}");
    assert_eq!(aps2["in_flight"], serde_json::json!([]), "{s}");
    rt.block_on(sim.shutdown());
}
