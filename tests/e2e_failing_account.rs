//! A permanently failing account (its drop cannot be written) fails alone: the others finish,
//! its transactions are `not_processed` with the reason, and the exit status is 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use orchestrator::Format;
use paybatch_demo::{DemoSpec, World, spawn_gateway};

mod common;
use common::{paybatch_async, read_records, submit_wait_args};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_drop_does_not_stop_the_other_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 3,
        transactions: 120,
        max_batch_lines: 15,
        failing_accounts: 0,
        seed: 12,
    };
    let world = World::create(dir.path(), spec, Format::Kvp).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    // acct-002's drop root becomes a regular file: every write there fails permanently.
    let broken = world.drop_dir(1);
    std::fs::remove_dir_all(&broken).unwrap();
    std::fs::write(&broken, "not a directory").unwrap();
    let out = world.root.join("out.kvp");
    let args = submit_wait_args(&world.config, &world.input, &out);
    let run = paybatch_async(args).await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("acct-002") && stderr.contains("FAILED"),
        "{stderr}"
    );
    let rows = read_records(&out, None);
    assert_eq!(rows.len(), 120);
    for r in &rows {
        if r["account"] == "acct-002" {
            assert_eq!(r["outcome"], "not_processed", "{r:?}");
            assert!(!r["xError"].is_empty());
        } else {
            assert!(
                matches!(r["outcome"].as_str(), "approved" | "declined" | "error"),
                "{r:?}"
            );
        }
    }
    let _ = stop.send(());
    let _ = gateway.await.unwrap();
}
