//! The driver end to end on local folders with gateway-sim in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use orchestrator::demo::{DemoSpec, LocalWorld, spawn_gateway};
use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, OutputSpec, RejectedBatches, Settings,
    Shutdown, SubmitOptions,
};

fn load_job(world: &LocalWorld, settings: &Settings) -> Arc<Job> {
    let mut reader = InputReader::open(&world.input, None).unwrap();
    Arc::new(
        Job::load(
            &mut reader,
            settings,
            InvalidPolicy::RejectInput,
            &mut |p, _| panic!("{p}"),
        )
        .unwrap(),
    )
}

fn read_output(path: &std::path::Path) -> Vec<HashMap<String, String>> {
    let mut reader = InputReader::open(path, Some(Format::Kvp)).unwrap();
    let mut rec = orchestrator::InputRecord::default();
    let mut out = Vec::new();
    while orchestrator::RecordSource::read_record(&mut reader, &mut rec).unwrap() {
        out.push(rec.fields.iter().cloned().collect());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_collects_merges_and_reruns_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 4,
        transactions: 400,
        max_batch_lines: 37,
        failing_accounts: 1,
        seed: 3,
    };
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
    let settings = Arc::new(Settings::load_with_env(Some(&world.config), []).unwrap());
    let job = load_job(&world, &settings);
    let out = dir.path().join("out.kvp");
    let options = SubmitOptions {
        output: Some(OutputSpec {
            path: out.clone(),
            format: Format::Kvp,
        }),
        ..SubmitOptions::default()
    };
    let report = {
        let orch = Orchestrator::builder(settings.clone()).build().unwrap();
        orch.submit(job.clone(), &options, Shutdown::never())
            .await
            .unwrap()
    };
    let rows = read_output(&out);
    assert_eq!(rows.len(), 400);
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(row["ref"], format!("T{n:08}"), "input order");
    }
    let failing = spec.account_name(3);
    for row in &rows {
        let expected_not_processed = row["account"] == failing;
        assert_eq!(
            row["outcome"] == "not_processed",
            expected_not_processed,
            "{row:?}"
        );
        assert!(
            !row.values().any(|v| v.contains("4111111111111111")),
            "card number in output"
        );
    }
    let outcomes: HashSet<&str> = rows.iter().map(|r| r["outcome"].as_str()).collect();
    assert!(
        outcomes.contains("approved")
            && outcomes.contains("declined")
            && outcomes.contains("error"),
        "{outcomes:?}"
    );
    // Names with Unicode and reserved characters came back through `+`-encoded, shuffled files.
    assert!(
        report
            .accounts
            .values()
            .all(|a| a.stuck.is_empty() && a.pending.is_empty())
    );
    assert_eq!(report.accounts[&failing].summary.failure, None);

    // Exactly once: every non-failing transaction is in the journal once, joined by invoice.
    let journal = gateway_sim::Journal::read(world.gateway_state.join("journal.jsonl")).unwrap();
    let mut seen = HashMap::new();
    for e in &journal {
        *seen.entry(e.invoice.clone().unwrap()).or_insert(0) += 1;
    }
    let sent = rows.iter().filter(|r| r["account"] != failing).count();
    assert_eq!(seen.len(), sent);
    assert!(seen.values().all(|n| *n == 1));

    // Nothing left in Response/ of any drop.
    for i in 0..spec.accounts {
        let left: Vec<_> = std::fs::read_dir(world.drop_dir(i).join("Response"))
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "account {i}: {left:?}");
    }

    // The ledger keeps the whole COMPLETE (xResult, the echoes) of every batch, never a key.
    {
        let ledger = sequence_ledger::Ledger::open(&settings.ledger.path).unwrap();
        for i in 0..spec.accounts {
            let account = sequence_ledger::AccountId::new(spec.account_name(i)).unwrap();
            for batch in ledger.batches(&account).unwrap() {
                let fields = batch.complete_fields.expect("COMPLETE fields recorded");
                assert!(fields.result.is_some(), "{fields:?}");
                let submitted = batch.line_count.to_string();
                assert!(
                    fields
                        .extra
                        .iter()
                        .any(|(k, v)| k == "xSubmittedCount" && *v == submitted),
                    "{fields:?}"
                );
                assert!(
                    !fields
                        .extra
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("xKey")),
                    "{fields:?}"
                );
            }
        }
    }

    // A rerun uploads nothing and writes the same output.
    std::fs::remove_file(&out).unwrap();
    let report2 = {
        let orch = Orchestrator::builder(settings.clone()).build().unwrap();
        orch.submit(job.clone(), &options, Shutdown::never())
            .await
            .unwrap()
    };
    let journal2 = gateway_sim::Journal::read(world.gateway_state.join("journal.jsonl")).unwrap();
    assert_eq!(journal2.len(), journal.len());
    // A batch the gateway rejected is final: the rerun merges it from the ledger, so even the
    // failing account's rows are identical.
    let rows2 = read_output(&out);
    assert_eq!(rows2, rows);
    assert_eq!(report2.totals().outcomes, report.totals().outcomes);

    // Re-sending them is the operator's choice: new numbers for the failing account only.
    let report3 = {
        let orch = Orchestrator::builder(settings.clone())
            .rejected_batches(RejectedBatches::Resubmit)
            .build()
            .unwrap();
        orch.submit(job.clone(), &options, Shutdown::never())
            .await
            .unwrap()
    };
    let rows3 = read_output(&out);
    assert_eq!(rows3.len(), rows.len());
    for (a, b) in rows.iter().zip(&rows3) {
        if a["account"] == failing {
            assert_eq!(b["outcome"], "not_processed");
            assert!(
                b["xSequenceNumber"].parse::<u32>().unwrap()
                    > a["xSequenceNumber"].parse::<u32>().unwrap()
            );
        } else {
            assert_eq!(a, b);
        }
    }
    assert_eq!(report3.totals().outcomes, report.totals().outcomes);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_at_a_safe_point_and_a_rerun_finishes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 3,
        transactions: 240,
        max_batch_lines: 20,
        failing_accounts: 0,
        seed: 4,
    };
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    // A slow gateway: each batch takes a while, so the shutdown lands mid-run.
    let mut backends = Vec::new();
    for i in 0..spec.accounts {
        backends.push(world.backend(i).await.unwrap());
    }
    let accounts = spec
        .sim_accounts(backends, false)
        .into_iter()
        .map(|a| {
            a.with_knobs(gateway_sim::Knobs::default().with_latency(
                std::time::Duration::from_millis(80),
                std::time::Duration::ZERO,
            ))
        })
        .collect();
    let sim = gateway_sim::GatewaySim::new(
        accounts,
        gateway_sim::SimOptions::new(&world.gateway_state)
            .with_poll_interval(std::time::Duration::from_millis(10)),
    )
    .unwrap();
    let (stop, gateway) = spawn_gateway(sim);
    let settings = Arc::new(Settings::load_with_env(Some(&world.config), []).unwrap());
    let job = load_job(&world, &settings);
    let options = SubmitOptions::default();
    let (trigger, shutdown) = Shutdown::new();
    let orch = Orchestrator::builder(settings.clone()).build().unwrap();
    let run = orch.submit(job.clone(), &options, shutdown);
    let fire = async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        trigger.trigger();
    };
    let (result, ()) = tokio::join!(run, fire);
    assert!(
        matches!(result, Err(orchestrator::Error::Shutdown)),
        "{result:?}"
    );
    drop(orch);
    // The rerun is given its backends explicitly (as an embedding program would).
    let mut builder = Orchestrator::builder(settings.clone());
    for i in 0..spec.accounts {
        builder = builder
            .backend(&spec.account_name(i), world.backend(i).await.unwrap())
            .unwrap();
    }
    let orch = builder.build().unwrap();
    let report = orch.submit(job, &options, Shutdown::never()).await.unwrap();
    assert!(report.is_complete());
    let journal = gateway_sim::Journal::read(world.gateway_state.join("journal.jsonl")).unwrap();
    let invoices: HashSet<String> = journal.iter().map(|e| e.invoice.clone().unwrap()).collect();
    assert_eq!(
        (journal.len(), invoices.len()),
        (240, 240),
        "each transaction exactly once"
    );
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

/// PROTOCOL.md §2 item 4 with a RESPONSE present: a stand-in gateway answers the batch with
/// per-line results for some lines and a COMPLETE `xStatus=Error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_keeps_its_verdict_and_shows_the_per_line_answer() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts: 1,
        transactions: 4,
        max_batch_lines: 10,
        failing_accounts: 0,
        seed: 5,
    };
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    let backend = world.backend(0).await.unwrap();
    let requests = |backend: Arc<dyn storage_backends::Backend>| async move {
        let mut names: Vec<String> = backend
            .list("Request")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.path)
            .collect();
        names.sort();
        names
    };
    let gateway = {
        let backend = backend.clone();
        tokio::spawn(async move {
            for _ in 0..6000 {
                let names = requests(backend.clone()).await;
                if let Some(process) = names.iter().find(|n| n.contains("PROCESS_")) {
                    let seq = process
                        .trim_start_matches("Request/PROCESS_")
                        .trim_end_matches(".KVP")
                        .to_owned();
                    // Lines out of order, lines 1 and 3 missing, a card number to be dropped.
                    let response = format!(
                        "xIndex=2&xSequenceNumber={seq}&xResult=E&xStatus=Error&xError=Invalid+card&xRefNum=1003&xCardNum=4111111111111111\n\
                         xIndex=0&xSequenceNumber={seq}&xResult=A&xStatus=Approved&xRefNum=1001&xAuthAmount=1.00\n"
                    );
                    let complete = format!(
                        "xResult=E&xStatus=Error&xError=Batch+limit+exceeded&xProcessedCount=2&xSequenceNumber={seq}\n"
                    );
                    backend
                        .put(&format!("Response/RESPONSE_{seq}.KVP"), response.into())
                        .await
                        .unwrap();
                    backend
                        .put(&format!("Response/COMPLETE_{seq}.KVP"), complete.into())
                        .await
                        .unwrap();
                    return seq;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("no PROCESS file appeared");
        })
    };
    let settings = Arc::new(Settings::load_with_env(Some(&world.config), []).unwrap());
    let job = load_job(&world, &settings);
    let out = dir.path().join("out.kvp");
    let options = SubmitOptions {
        output: Some(OutputSpec {
            path: out.clone(),
            format: Format::Kvp,
        }),
        ..SubmitOptions::default()
    };
    let orch = Orchestrator::builder(settings.clone()).build().unwrap();
    let report = orch
        .submit(job.clone(), &options, Shutdown::never())
        .await
        .unwrap();
    drop(orch);
    let seq = gateway.await.unwrap();
    let rows = read_output(&out);
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(
            (
                row["outcome"].as_str(),
                row["xStatus"].as_str(),
                row["xError"].as_str(),
                row["xSequenceNumber"].as_str()
            ),
            (
                "not_processed",
                "Error",
                "Batch limit exceeded",
                seq.as_str()
            ),
            "{row:?}"
        );
        assert!(!row.values().any(|v| v.contains("4111111111111111")));
    }
    let get = |i: usize, k: &str| rows[i].get(k).map(String::as_str);
    // (line, xResult, xRefNum, xLineStatus, xLineError)
    let expected = [
        (0, Some("A"), Some("1001"), Some("Approved"), None),
        (1, None, None, None, None),
        (
            2,
            Some("E"),
            Some("1003"),
            Some("Error"),
            Some("Invalid card"),
        ),
        (3, None, None, None, None),
    ];
    for (i, result, refnum, status, error) in expected {
        assert_eq!(
            (
                get(i, "xResult"),
                get(i, "xRefNum"),
                get(i, "xLineStatus"),
                get(i, "xLineError")
            ),
            (result, refnum, status, error),
            "line {i}"
        );
    }
    let summary = &report.accounts[&spec.account_name(0)].summary;
    assert_eq!(
        (
            summary.count(orchestrator::Outcome::NotProcessed),
            summary.approved.is_empty()
        ),
        (4, true)
    );
    // Cleanup deleted exactly RESPONSE_X and COMPLETE_X.
    assert!(
        backend
            .list("Response")
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let before = requests(backend.clone()).await;
    assert_eq!(
        before,
        [
            format!("Request/PROCESS_{seq}.KVP"),
            format!("Request/REQUEST_{seq}.KVP")
        ]
    );

    // xProcessedCount=2: the transactions stay bound to the batch even when the operator asks
    // for rejected batches to be re-sent; the rerun uploads nothing and merges the same rows.
    std::fs::remove_file(&out).unwrap();
    let orch = Orchestrator::builder(settings.clone())
        .rejected_batches(RejectedBatches::Resubmit)
        .build()
        .unwrap();
    let rerun = SubmitOptions {
        wait: orchestrator::WaitMode::UntilTriggered,
        ..options
    };
    orch.submit(job, &rerun, Shutdown::never()).await.unwrap();
    assert_eq!(read_output(&out), rows);
    assert_eq!(requests(backend.clone()).await, before);
}
