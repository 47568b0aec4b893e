//! The driver end to end on local folders with gateway-sim in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, OutputSpec, RejectedBatches, Settings,
    Shutdown, SubmitOptions,
};
use paybatch_demo::{DemoSpec, LocalWorld, spawn_gateway};

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
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), [], &paybatch_demo::protocols()).unwrap(),
    );
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
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), [], &paybatch_demo::protocols()).unwrap(),
    );
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
        let name = spec.account_name(i);
        let drop =
            paybatch_demo::sola_drop(&settings, &name, world.backend(i).await.unwrap()).unwrap();
        builder = builder.protocol(name, drop);
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

/// A stand-in gateway on the account's drop: waits for the first PROCESS file, then writes
/// `response` (if any) and `complete` for its number (`{seq}` replaced). Returns the number.
fn rejecting_gateway(
    backend: Arc<dyn storage_backends::Backend>,
    response: Option<&'static str>,
    complete: &'static str,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        for _ in 0..6000 {
            let names = requests(backend.clone()).await;
            if let Some(process) = names.iter().find(|n| n.contains("PROCESS_")) {
                let seq = process
                    .trim_start_matches("Request/PROCESS_")
                    .trim_end_matches(".KVP")
                    .to_owned();
                if let Some(response) = response {
                    backend
                        .put(
                            &format!("Response/RESPONSE_{seq}.KVP"),
                            response.replace("{seq}", &seq).into(),
                        )
                        .await
                        .unwrap();
                }
                backend
                    .put(
                        &format!("Response/COMPLETE_{seq}.KVP"),
                        complete.replace("{seq}", &seq).into(),
                    )
                    .await
                    .unwrap();
                return seq;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("no PROCESS file appeared");
    })
}

async fn requests(backend: Arc<dyn storage_backends::Backend>) -> Vec<String> {
    let mut names: Vec<String> = backend
        .list("Request")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.path)
        .collect();
    names.sort();
    names
}

fn one_account(transactions: usize) -> DemoSpec {
    DemoSpec {
        accounts: 1,
        transactions,
        max_batch_lines: 10,
        failing_accounts: 0,
        seed: 5,
    }
}

/// PROTOCOL.md decision 4 with a RESPONSE present: the gateway answers the batch with per-line
/// results for some lines and a COMPLETE `xStatus=Error` that says 2 lines were processed. Each
/// line with a result keeps its own outcome (an approved line is approved, and its amount is
/// summed); the lines without one may have been processed, so they are `unknown`, never
/// `not_processed`, and stay bound even under `--resubmit-rejected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_reports_what_the_gateway_did_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = one_account(4);
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    let backend = world.backend(0).await.unwrap();
    // Lines out of order, lines 1 and 3 missing, a card number to be dropped, and card
    // numbers in the gateway's texts (a line's xError, the COMPLETE's), to be masked.
    let gateway = rejecting_gateway(
        backend.clone(),
        Some(
            "xIndex=2&xSequenceNumber={seq}&xResult=E&xStatus=Error&xError=Invalid+card+4111111111111111&xRefNum=1003&xCardNum=4111111111111111\n\
             xIndex=0&xSequenceNumber={seq}&xResult=A&xStatus=Approved&xRefNum=1001&xAuthAmount=1.00\n",
        ),
        "xResult=E&xStatus=Error&xError=Batch+limit+exceeded+for+4111-1111-1111-1111&xProcessedCount=2&xSequenceNumber={seq}\n",
    );
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), [], &paybatch_demo::protocols()).unwrap(),
    );
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
    let get = |i: usize, k: &str| rows[i].get(k).map(String::as_str);
    // (line, outcome, xResult, xRefNum, xStatus, xBatchStatus)
    let expected = [
        (
            0,
            "approved",
            Some("A"),
            Some("1001"),
            Some("Approved"),
            Some("Error"),
        ),
        (1, "unknown", None, None, Some("Error"), None),
        (
            2,
            "error",
            Some("E"),
            Some("1003"),
            Some("Error"),
            Some("Error"),
        ),
        (3, "unknown", None, None, Some("Error"), None),
    ];
    for (i, outcome, result, refnum, status, batch_status) in expected {
        assert_eq!(
            (
                get(i, "outcome"),
                get(i, "xResult"),
                get(i, "xRefNum"),
                get(i, "xStatus"),
                get(i, "xBatchStatus"),
                get(i, "xSequenceNumber"),
            ),
            (
                Some(outcome),
                result,
                refnum,
                status,
                batch_status,
                Some(seq.as_str())
            ),
            "line {i}: {:?}",
            rows[i]
        );
        assert!(
            !rows[i]
                .values()
                .any(|v| v.contains("4111111111111111") || v.contains("4111-1111-1111-1111")),
            "{:?}",
            rows[i]
        );
    }
    assert!(get(1, "xError").unwrap().contains("processed 2 line(s)"));
    assert_eq!(get(2, "xError"), Some("Invalid card 411111******1111"));
    assert!(
        rows.iter()
            .any(|r| r.values().any(|v| v.contains("4111-11**-****-1111"))),
        "the COMPLETE's error is shown, masked: {rows:?}"
    );
    let summary = &report.accounts[&spec.account_name(0)].summary;
    assert_eq!(
        (
            summary.count(orchestrator::LineOutcome::Approved),
            summary.count(orchestrator::LineOutcome::NotProcessed),
            summary.count(orchestrator::LineOutcome::Unknown),
            summary.approved.get("USD").copied()
        ),
        (1, 0, 2, Some(100))
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

/// Decision 4 when the gateway says nothing was processed (`xProcessedCount=0`) and returns an
/// error result for one line: that line keeps its result, the rest are `not_processed`; with
/// `--resubmit-rejected` only those are sent again, in a new batch. (A line it approved would
/// contradict the count: then the rest are `unknown`, `tests/honest_outcomes.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmit_rejected_sends_only_lines_provably_not_processed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = one_account(3);
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    let backend = world.backend(0).await.unwrap();
    let gateway = rejecting_gateway(
        backend.clone(),
        Some("xIndex=1&xSequenceNumber={seq}&xResult=E&xStatus=Error&xError=Bad+line\n"),
        "xResult=E&xStatus=Error&xError=Bad+batch&xProcessedCount=0&xSequenceNumber={seq}\n",
    );
    let settings = Arc::new(
        Settings::load_with_env(Some(&world.config), [], &paybatch_demo::protocols()).unwrap(),
    );
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
    orch.submit(job.clone(), &options, Shutdown::never())
        .await
        .unwrap();
    drop(orch);
    let seq = gateway.await.unwrap();
    let outcomes = |rows: &[HashMap<String, String>]| -> Vec<(String, String)> {
        rows.iter()
            .map(|r| (r["outcome"].clone(), r["xSequenceNumber"].clone()))
            .collect()
    };
    let first = read_output(&out);
    let s = |o: &str, q: &str| (o.to_owned(), q.to_owned());
    assert_eq!(
        outcomes(&first),
        [
            s("not_processed", &seq),
            s("error", &seq),
            s("not_processed", &seq)
        ]
    );
    // A plain re-run sends nothing; --resubmit-rejected sends lines 0 and 2 only (the
    // simulator-less drop never answers, so the new batch is left triggered).
    let orch = Orchestrator::builder(settings.clone())
        .rejected_batches(RejectedBatches::Resubmit)
        .build()
        .unwrap();
    let rerun = SubmitOptions {
        wait: orchestrator::WaitMode::UntilTriggered,
        ..options
    };
    orch.submit(job, &rerun, Shutdown::never()).await.unwrap();
    let next = (seq.parse::<u32>().unwrap() + 1).to_string();
    let request = backend
        .get(&format!("Request/REQUEST_{next}.KVP"))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&request).lines().count(), 2);
    let second = read_output(&out);
    assert_eq!(
        outcomes(&second),
        [s("unknown", &next), s("error", &seq), s("unknown", &next)]
    );
}
