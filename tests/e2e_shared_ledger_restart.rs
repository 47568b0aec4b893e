//! The shared PostgreSQL ledger's database crashes (`pg_ctl -m immediate`) and comes back while
//! a `paybatch submit --wait` runs through the binary: the run finishes, every transaction
//! processed once, no number reserved twice or skipped. Alone in its test binary: it stops the
//! test server for everyone using it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::Duration;

use ledger_postgres::test_support::{fresh_database_url, server_url};
use orchestrator::Format;
use paybatch_demo::{DemoSpec, World, spawn_gateway};

mod common;
use common::{journal_invoices, paybatch_cmd, read_records, run, s, text};

fn pg(action: &str) {
    let dir = std::env::var("PAYBATCH_TEST_SERVERS_DIR").expect("PAYBATCH_TEST_SERVERS_DIR");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/servers.sh");
    let status = Command::new("bash")
        .args([script, "pg", action])
        .env("PAYBATCH_TEST_SERVERS_DIR", dir)
        .status()
        .unwrap();
    assert!(status.success(), "servers.sh pg {action}");
}

async fn status(config: &std::path::Path, url: &str) -> serde_json::Value {
    let mut cmd = paybatch_cmd(["status", "--json", "--config"]);
    cmd.arg(config).env("PAYBATCH__LEDGER__URL", url);
    let o = run(cmd).await;
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_submit_loses_nothing() {
    let Some(url) = server_url("a_database_restart_mid_submit_loses_nothing") else {
        return;
    };
    if std::env::var("PAYBATCH_TEST_SERVERS_DIR").is_err() {
        eprintln!(
            "skipped: PAYBATCH_TEST_SERVERS_DIR not set (servers.sh writes it into the env file)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 3,
        transactions: 600,
        max_batch_lines: 10,
        failing_accounts: 0,
        seed: 5,
    };
    let world = World::create(dir.path(), spec, Format::Jsonl).unwrap();
    let url = fresh_database_url(&url, "restart_mid_submit").await;
    let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
    let out = world.root.join("out.jsonl");
    let submit = paybatch_cmd([
        "submit".to_owned(),
        "--config".into(),
        s(&world.config),
        s(&world.input),
        "--wait".into(),
        "--output".into(),
        s(&out),
    ])
    .env("PAYBATCH__LEDGER__URL", &url)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Mid-run: some batches finished, most not yet.
    let mut started = false;
    for _ in 0..600 {
        let st = status(&world.config, &url).await;
        let cleaned: u64 = st["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["batches"]["Cleaned"].as_u64().unwrap_or(0))
            .sum();
        if cleaned >= 3 {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started, "the submit never finished a batch");
    pg("crash");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg("start");
    let done = tokio::task::spawn_blocking(move || submit.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    stop.send(()).unwrap();
    gateway.await.unwrap().unwrap();
    let input = read_records(&world.input, None);
    let output = read_records(&out, None);
    assert_eq!(output.len(), input.len());
    let journal = journal_invoices(&world);
    for (i, o) in input.iter().zip(&output) {
        assert!(
            matches!(o["outcome"].as_str(), "approved" | "declined" | "error"),
            "{o:?}"
        );
        assert_eq!(journal.get(&i["xInvoice"]), Some(&1), "{}", i["ref"]);
    }
    // Numbers 1..=N per account, each batch finished: none reserved twice or skipped.
    let st = status(&world.config, &url).await;
    for a in st["accounts"].as_array().unwrap() {
        let batches: u64 = a["batches"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(a["last_sequence"].as_u64(), Some(batches), "{a}");
        assert_eq!(a["batches"]["Cleaned"].as_u64(), Some(batches), "{a}");
    }
}
