//! End to end: the real `paybatch` binary against gateway-sim (in this test process) on local
//! folders, SFTP and S3 drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use orchestrator::{Format, InputReader, InputRecord, RecordSource};
use paybatch_demo::{DemoSpec, World, spawn_gateway};
use storage_backends::{Scheme, test_env};

mod common;
use common::{
    journal_invoices, paybatch, paybatch_async, paybatch_ok, read_records, s, status_json,
    submit_args, submit_wait_args,
};

/// `paybatch status --json`: each account's last sequence number.
async fn last_sequences(world: &World) -> HashMap<String, u64> {
    let status = status_json(&world.config, 0).await;
    status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let name = a["account"].as_str().unwrap().to_owned();
            (name, a["last_sequence"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// Submits the world's input with `--wait`, checks the output against the input and the
/// gateway journal, then re-runs and checks nothing is uploaded again.
async fn submit_and_check(world: &World, format: Format) {
    let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
    let out = world.root.join(format!("out.{}", format.extension()));
    let summary = world.root.join("summary.json");
    let mut args = submit_wait_args(&world.config, &world.input, &out);
    args.extend(["--summary".into(), s(&summary)]);
    let run = paybatch_async(args.clone()).await;
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let input = read_records(&world.input, None);
    let output = read_records(&out, None);
    assert_eq!(output.len(), input.len());
    let failing = world.spec.account_name(world.spec.accounts - 1);
    for (i, o) in input.iter().zip(&output) {
        assert_eq!(i["ref"], o["ref"], "input order");
        assert_eq!(i["account"], o["account"]);
        let outcome = o["outcome"].as_str();
        if i["account"] == failing {
            assert_eq!(outcome, "not_processed");
            assert!(!o["xError"].is_empty());
        } else {
            assert!(
                matches!(outcome, "approved" | "declined" | "error"),
                "{o:?}"
            );
            assert_eq!(
                o["xInvoice"], i["xInvoice"],
                "joined on xIndex, not position"
            );
        }
    }
    let text = std::fs::read_to_string(&out).unwrap();
    for card in [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "4000000000000002",
    ] {
        assert!(!text.contains(card), "card number in output");
        assert!(!stderr.contains(card), "card number on stderr");
    }
    assert!(
        !stderr.contains("demo-batch-key") && !stderr.contains("demo-merchant-key"),
        "key on stderr"
    );
    // Names with Unicode and reserved characters survive the `+`-encoded, shuffled RESPONSE
    // (the gateway echoes xInvoice; xCustom01 "order N a+b=c&d%" is sent exactly).
    let journal = journal_invoices(world);
    let sent: Vec<&HashMap<String, String>> =
        input.iter().filter(|r| r["account"] != failing).collect();
    assert_eq!(journal.len(), sent.len());
    assert!(
        journal.values().all(|n| *n == 1),
        "a transaction was processed twice"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(
        summary["accounts"][&failing]["outcomes"]["not_processed"]
            .as_u64()
            .unwrap()
            > 0
    );

    // status --json
    let status = status_json(&world.config, 0).await;
    let first = &status["accounts"][0];
    assert_eq!(first["account"], world.spec.account_name(0));
    assert!(first["batches"]["Cleaned"].as_u64().unwrap() >= 1);

    // Re-running after success uploads nothing, not even the gateway-rejected batches (they
    // are final): every number stays where it was and the output is the same.
    let numbers = last_sequences(world).await;
    let again = paybatch_async(args.clone()).await;
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(journal_invoices(world), journal);
    assert_eq!(
        last_sequences(world).await,
        numbers,
        "a re-run reserved a number"
    );
    assert_eq!(read_records(&out, None), output);

    // `--resubmit-rejected` is the operator's explicit choice: only the rejected account gets
    // new numbers (its gateway rejects them again), the others upload nothing.
    let mut resubmit = args;
    resubmit.push("--resubmit-rejected".into());
    paybatch_ok(resubmit).await;
    assert_eq!(journal_invoices(world), journal);
    let after = last_sequences(world).await;
    for (account, n) in &numbers {
        if *account == failing {
            assert!(after[account] > *n, "{account}: {n} -> {}", after[account]);
        } else {
            assert_eq!(after[account], *n, "{account}");
        }
    }
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_csv_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 5,
        transactions: 1200,
        max_batch_lines: 100,
        failing_accounts: 1,
        seed: 11,
    };
    let world = World::create(dir.path(), spec, Format::Csv).unwrap();
    submit_and_check(&world, Format::Csv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_jsonl_and_kvp_end_to_end() {
    for format in [Format::Jsonl, Format::Kvp] {
        let dir = tempfile::tempdir().unwrap();
        let spec = DemoSpec {
            accounts: 3,
            transactions: 300,
            max_batch_lines: 64,
            failing_accounts: 1,
            seed: 5,
        };
        let world = World::create(dir.path(), spec, format).unwrap();
        submit_and_check(&world, format).await;
    }
}

async fn remote(scheme: Scheme) {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 3,
        transactions: 240,
        max_batch_lines: 50,
        failing_accounts: 1,
        seed: 9,
    };
    let mut targets = Vec::new();
    for _ in 0..spec.accounts {
        match test_env::target(scheme).unwrap() {
            Some(t) => targets.push(t.parts()),
            None => {
                assert!(
                    !test_env::servers_required(),
                    "{scheme:?} server required but not configured"
                );
                eprintln!(
                    "skipping: no {scheme:?} test server; start one with: {}",
                    test_env::HOW_TO_START
                );
                return;
            }
        }
    }
    let world = World::with_targets(dir.path(), spec, Format::Kvp, targets).unwrap();
    submit_and_check(&world, Format::Kvp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_end_to_end() {
    remote(Scheme::Sftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_end_to_end() {
    remote(Scheme::S3).await;
}

/// "Output (`--output FILE`, same format as the input unless `--output-format`)": the output
/// file's extension does not change the format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_format_is_the_inputs_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 2,
        transactions: 40,
        max_batch_lines: 30,
        failing_accounts: 0,
        seed: 4,
    };
    let world = World::create(dir.path(), spec, Format::Csv).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    for (name, extra, format) in [
        ("out.jsonl", None, Format::Csv),
        ("out.csv", Some("kvp"), Format::Kvp),
    ] {
        let out = world.root.join(name);
        let mut args = submit_wait_args(&world.config, &world.input, &out);
        if let Some(f) = extra {
            args.extend(["--output-format".into(), f.into()]);
        }
        let run = paybatch_async(args).await;
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(0), "{stderr}");
        let text = std::fs::read_to_string(&out).unwrap();
        let first = text.lines().next().unwrap();
        match format {
            Format::Csv => assert!(first.starts_with("ref,account,outcome"), "{first}"),
            _ => assert!(
                first.starts_with("ref=") && first.contains("&outcome="),
                "{first}"
            ),
        }
        let mut reader = InputReader::open(&out, Some(format)).unwrap();
        let mut rec = InputRecord::default();
        let mut n = 0;
        while reader.read_record(&mut rec).unwrap() {
            assert!(rec.get("outcome").is_some(), "{rec:?}");
            n += 1;
        }
        assert_eq!(n, 40, "{name}");
    }
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_without_wait_then_collect() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 3,
        transactions: 200,
        max_batch_lines: 30,
        failing_accounts: 0,
        seed: 2,
    };
    let world = World::create(dir.path(), spec, Format::Kvp).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    paybatch_ok(submit_args(&world.config, &world.input)).await;
    // Without the input: every batch in flight is finished and reported by account and line.
    let in_flight = world.root.join("in-flight.kvp");
    paybatch_ok(vec![
        "collect".into(),
        "--config".into(),
        s(&world.config),
        "--output".into(),
        s(&in_flight),
    ])
    .await;
    let finished = read_records(&in_flight, None);
    assert!(
        !finished.is_empty() && finished.len() < 200,
        "{}",
        finished.len()
    );
    assert!(
        finished.iter().all(
            |o| matches!(o["outcome"].as_str(), "approved" | "declined" | "error")
                && o["ref"].starts_with('T')
        ),
        "{finished:?}"
    );
    let out = world.root.join("collected.kvp");
    paybatch_ok(vec![
        "collect".into(),
        "--config".into(),
        s(&world.config),
        s(&world.input),
        "--output".into(),
        s(&out),
    ])
    .await;
    let output = read_records(&out, None);
    assert_eq!(output.len(), 200);
    assert!(
        output
            .iter()
            .all(|o| matches!(o["outcome"].as_str(), "approved" | "declined" | "error")),
        "{output:?}"
    );
    assert_eq!(journal_invoices(&world).len(), 200);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

#[test]
fn dry_run_writes_files_and_reserves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 2,
        transactions: 50,
        max_batch_lines: 20,
        failing_accounts: 0,
        seed: 4,
    };
    let world = World::create(dir.path(), spec, Format::Kvp).unwrap();
    let dry = dir.path().join("dry");
    let run = paybatch(&[
        "submit",
        "--config",
        &s(&world.config),
        &s(&world.input),
        "--dry-run",
        &s(&dry),
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let request = std::fs::read_to_string(dry.join("acct-001/Request/REQUEST_1.KVP")).unwrap();
    assert!(request.starts_with("xIndex=0&xSequenceNumber=1&xKey="));
    let process = std::fs::read_to_string(dry.join("acct-001/Request/PROCESS_1.KVP")).unwrap();
    assert!(process.contains("xSubmittedCount=") && process.ends_with("xSequenceNumber=1\n"));
    // Nothing in the real drops, nothing reserved.
    assert!(
        !world.drop_dir(0).join("Request").exists()
            || std::fs::read_dir(world.drop_dir(0).join("Request"))
                .unwrap()
                .next()
                .is_none()
    );
    let status = paybatch(&["status", "--config", &s(&world.config), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["last_sequence"].is_null()),
        "{status}"
    );
}

#[test]
fn config_show_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 2,
        transactions: 1,
        ..DemoSpec::default()
    };
    let world = World::create(dir.path(), spec, Format::Kvp).unwrap();
    let run = paybatch(&["config", "show", "--config", &s(&world.config)]);
    assert_eq!(run.status.code(), Some(0));
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("[accounts.acct-001]") && text.contains("[REDACTED]"));
    assert!(
        !text.contains("demo-batch-key") && !text.contains("demo-merchant-key"),
        "{text}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[poll]\nintervall = \"1s\"\n").unwrap();
    let run = paybatch(&["config", "show", "--config", &s(&bad)]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("intervall"));
}

#[test]
fn demo_runs_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_paybatch"))
        .args(["demo", "--accounts", "4", "--txns", "400", "--dir", &s(&ws)])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("TOTAL") && stderr.contains("results:") && stderr.contains("ledger:"),
        "{stderr}"
    );
    assert_eq!(read_records(&ws.join("results.csv"), None).len(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_never_carry_card_data_or_keys() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 2,
        transactions: 60,
        max_batch_lines: 25,
        failing_accounts: 1,
        seed: 8,
    };
    let world = World::create(dir.path(), spec, Format::Kvp).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let out = world.root.join("out.kvp");
    let mut args: Vec<String> = vec!["-vvv".into(), "--log-format".into(), "json".into()];
    args.extend(submit_wait_args(&world.config, &world.input, &out));
    let run = paybatch_ok(args).await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    let json_lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        json_lines
            .iter()
            .any(|l| l["fields"]["message"] == "batch triggered"),
        "{stderr}"
    );
    for secret in [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "demo-batch-key",
        "demo-merchant-key",
    ] {
        assert!(!stderr.contains(secret), "{secret} leaked into the logs");
    }
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_and_reserved_characters_round_trip_exactly() {
    let refs = ["réf/1 & co=+%", "李-2?#", "two  spaces ", "a+b", "100%25"];
    for format in [Format::Kvp, Format::Csv, Format::Jsonl] {
        let dir = tempfile::tempdir().unwrap();
        let spec = DemoSpec {
            accounts: 1,
            transactions: 0,
            failing_accounts: 0,
            ..DemoSpec::default()
        };
        let world = World::create(dir.path(), spec, format).unwrap();
        let mut writer =
            orchestrator::OutputWriter::create(&world.input, format, &["account", "ref"]).unwrap();
        for (n, r) in refs.iter().enumerate() {
            let rec: Vec<(String, String)> = [
                ("account", "acct-001".to_owned()),
                ("ref", (*r).to_owned()),
                ("xCommand", "cc:sale".to_owned()),
                ("xCardNum", "4111111111111111".to_owned()),
                ("xExp", "1230".to_owned()),
                ("xAmount", format!("{}.00", n + 1)),
                ("xInvoice", format!("Zoë & Søn + 100% = {r}")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            if format == Format::Csv {
                // The CSV writer puts unknown columns into `extra`; write plain CSV instead.
                continue;
            }
            writer.write(&rec).unwrap();
        }
        writer.finish().unwrap();
        if format == Format::Csv {
            let mut text = String::from("account,ref,xCommand,xCardNum,xExp,xAmount,xInvoice\n");
            for (n, r) in refs.iter().enumerate() {
                let q = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
                text.push_str(&format!(
                    "acct-001,{},cc:sale,4111111111111111,1230,{}.00,{}\n",
                    q(r),
                    n + 1,
                    q(&format!("Zoë & Søn + 100% = {r}"))
                ));
            }
            std::fs::write(&world.input, text).unwrap();
        }
        let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
        let out = world.root.join(format!("out.{}", format.extension()));
        let run = paybatch_async(submit_wait_args(&world.config, &world.input, &out)).await;
        assert_eq!(
            run.status.code(),
            Some(0),
            "{format:?}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let rows = read_records(&out, None);
        let got: Vec<&str> = rows.iter().map(|r| r["ref"].as_str()).collect();
        assert_eq!(got, refs, "{format:?}");
        for (row, r) in rows.iter().zip(refs) {
            assert_eq!(row["outcome"], "approved", "{row:?}");
            assert_eq!(
                row["xInvoice"],
                format!("Zoë & Søn + 100% = {r}"),
                "{format:?}: echoed through a +-encoded, shuffled RESPONSE"
            );
        }
        let _ = stop.send(());
        gateway.await.unwrap().unwrap();
    }
}
