//! A batch whose COMPLETE never comes becomes Stuck: submit exits 1 with its transactions
//! `unknown` and later batches of the account unsent; `status` reports it; nothing is
//! resubmitted automatically; after `resolve --abandon` a re-run submits them again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

use orchestrator::Format;
use paybatch_demo::{DemoSpec, World, spawn_gateway};

mod common;
use common::{paybatch_cmd, read_records, run, s, status_json, submit_wait_args};

/// The binary with a 400 ms poll timeout, so a batch no gateway answers becomes Stuck soon.
async fn paybatch(args: Vec<String>) -> Output {
    let mut cmd = paybatch_cmd(args);
    cmd.env("PAYBATCH__POLL__TIMEOUT", "400ms");
    run(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_batch_is_reported_blocks_the_account_and_is_resolved_by_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 1,
        transactions: 30,
        max_batch_lines: 20,
        failing_accounts: 0,
        seed: 6,
    };
    let world = World::create(dir.path(), spec, Format::Kvp).unwrap();
    let out = world.root.join("out.kvp");
    let submit = submit_wait_args(&world.config, &world.input, &out);

    // No gateway is running: batch 1 never completes.
    let run = paybatch(submit.clone()).await;
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("STUCK") && stderr.contains("Stuck"),
        "{stderr}"
    );
    let rows = read_records(&out, None);
    assert_eq!(rows.len(), 30);
    assert!(
        rows[..]
            .iter()
            .filter(|r| r["xSequenceNumber"] == "1")
            .all(|r| r["outcome"] == "unknown")
    );
    assert_eq!(
        rows.iter().filter(|r| r["outcome"] == "unknown").count(),
        20
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r["outcome"] == "not_processed")
            .count(),
        10,
        "batch 2 was not sent behind a Stuck batch"
    );

    let status = status_json(&world.config, 1).await;
    assert_eq!(status["accounts"][0]["stuck"], serde_json::json!([1]));

    // A re-run does not resubmit the Stuck batch's transactions.
    let again = paybatch(submit.clone()).await;
    assert_eq!(again.status.code(), Some(1));
    let request_dir = world.drop_dir(0).join("Request");
    let mut names: Vec<String> = std::fs::read_dir(&request_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["PROCESS_1.KVP", "REQUEST_1.KVP"]);

    // A late answer whose COMPLETE has no final newline yet (believed only when seen twice,
    // decision 4a) still says the gateway took the batch up: abandoning it is refused.
    let response_dir = world.drop_dir(0).join("Response");
    std::fs::create_dir_all(&response_dir).unwrap();
    let late = response_dir.join("COMPLETE_1.KVP");
    std::fs::write(
        &late,
        "xSequenceNumber=1&xStatus=Approved&xProcessedCount=1",
    )
    .unwrap();
    let abandon = |reason: &str| {
        paybatch(vec![
            "resolve".into(),
            "--config".into(),
            s(&world.config),
            "--account".into(),
            "acct-001".into(),
            "--seq".into(),
            "1".into(),
            "--abandon".into(),
            "--reason".into(),
            reason.into(),
        ])
    };
    let refused = abandon("the gateway never got it").await;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_ne!(refused.status.code(), Some(0), "{err}");
    assert!(
        err.contains("not abandoned") && err.contains("COMPLETE_1"),
        "{err}"
    );
    assert_eq!(
        status_json(&world.config, 1).await["accounts"][0]["stuck"],
        serde_json::json!([1])
    );
    std::fs::remove_file(&late).unwrap();

    // The operator confirms with the gateway that batch 1 never ran, takes its files back and
    // abandons it; the next submit binds the transactions to a new number.
    for name in &names {
        std::fs::remove_file(request_dir.join(name)).unwrap();
    }
    let resolve = abandon("gateway confirmed batch 1 was never received").await;
    assert_eq!(
        resolve.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resolve.stderr)
    );
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let done = paybatch(submit).await;
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let rows = read_records(&out, None);
    assert!(
        rows.iter()
            .all(|r| matches!(r["outcome"].as_str(), "approved" | "declined" | "error")),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["xSequenceNumber"] != "1"));
    let journal = gateway_sim::Journal::read(world.gateway_state.join("journal.jsonl")).unwrap();
    assert_eq!(journal.len(), 30);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}
