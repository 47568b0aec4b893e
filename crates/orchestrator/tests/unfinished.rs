//! Batches a run leaves unfinished: their transactions stay bound to the batch and are reported
//! `unknown` (never `not_processed`, which would invite a resubmission elsewhere), a permanent
//! storage error while polling stops the account at once, and a batch that is Stuck stops the
//! resume of later batches. Each case is then finished by a re-run of the same submit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gateway_protocol::{BatchLine, LineFields};
use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, OutputSpec, Settings, Shutdown,
    SubmitOptions,
};
use paybatch_demo::{DemoSpec, LocalWorld, spawn_gateway};
use sequence_ledger::{AccountId, BatchState, Ledger, NewBatch, NewBinding, Reserve};

use storage_backends::conformance;
use storage_backends::{Backend, ByteStream, Capabilities, ErrorKind, Location, ObjectMeta};

/// Which files of the drop the account is refused access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deny {
    /// No file: the drop is its inner backend (what the conformance test checks).
    Nothing,
    /// Writing `REQUEST_*` (the batch stays Reserved).
    WriteRequest,
    /// Writing `PROCESS_*` (the batch stays RequestUploaded).
    WriteProcess,
    /// Reading `COMPLETE_*` (the batch stays Triggered).
    ReadComplete,
}

/// A real local drop whose access rights refuse one kind of file, as a server with wrong
/// permissions would (tests run as root, where chmod denies nothing).
///
/// It is a real implementation, not a mock, because it passes storage-backends' conformance
/// suite when it denies nothing
/// (`the_denying_drop_passes_the_conformance_suite_when_it_denies_nothing`): the tests here run
/// the orchestrator against a working drop with exactly one kind of access taken away.
#[derive(Debug)]
struct DenyingDrop {
    inner: Arc<dyn Backend>,
    deny: Deny,
}

impl DenyingDrop {
    fn check(&self, write: bool, path: &str) -> storage_backends::Result<()> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let denied = match self.deny {
            Deny::Nothing => false,
            Deny::WriteRequest => write && name.starts_with("REQUEST_"),
            Deny::WriteProcess => write && name.starts_with("PROCESS_"),
            Deny::ReadComplete => !write && name.starts_with("COMPLETE_"),
        };
        if denied {
            return Err(storage_backends::Error::new(
                ErrorKind::PermissionDenied,
                format!("{}/{path}", self.inner.location()),
                "access denied",
                None,
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for DenyingDrop {
    fn location(&self) -> &Location {
        self.inner.location()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, path: &str, data: Bytes) -> storage_backends::Result<()> {
        self.check(true, path)?;
        self.inner.put(path, data).await
    }
    async fn put_if_absent(&self, path: &str, data: Bytes) -> storage_backends::Result<()> {
        self.check(true, path)?;
        self.inner.put_if_absent(path, data).await
    }
    async fn get(&self, path: &str) -> storage_backends::Result<Bytes> {
        self.check(false, path)?;
        self.inner.get(path).await
    }
    async fn head(&self, path: &str) -> storage_backends::Result<ObjectMeta> {
        self.check(false, path)?;
        self.inner.head(path).await
    }
    async fn list(&self, folder: &str) -> storage_backends::Result<Vec<ObjectMeta>> {
        self.inner.list(folder).await
    }
    async fn delete(&self, path: &str) -> storage_backends::Result<()> {
        self.check(true, path)?;
        self.inner.delete(path).await
    }
    async fn remove_unpublished(&self, path: &str) -> storage_backends::Result<usize> {
        self.check(true, path)?;
        self.inner.remove_unpublished(path).await
    }
    async fn get_stream(&self, path: &str) -> storage_backends::Result<ByteStream> {
        self.check(false, path)?;
        self.inner.get_stream(path).await
    }
    async fn put_stream(&self, path: &str, data: ByteStream) -> storage_backends::Result<u64> {
        self.check(true, path)?;
        self.inner.put_stream(path, data).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_denying_drop_passes_the_conformance_suite_when_it_denies_nothing() {
    let target = storage_backends::test_env::local().unwrap();
    let inner = storage_backends::open(&target.location, &target.options)
        .await
        .unwrap();
    let drop: Arc<dyn Backend> = Arc::new(DenyingDrop {
        inner,
        deny: Deny::Nothing,
    });
    let mut outcomes = conformance::run_quick(&*drop).await;
    outcomes.push((
        "put_if_absent_race",
        conformance::put_if_absent_race(drop.clone()).await,
    ));
    outcomes.push((
        "atomic_publish",
        conformance::atomic_publish(drop.clone()).await,
    ));
    for (case, outcome) in outcomes {
        if let Err(f) = outcome {
            panic!("DenyingDrop, case {case}: {f}");
        }
    }
}

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

fn read_output(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = InputReader::open(path, Some(Format::Kvp)).unwrap();
    let mut rec = orchestrator::InputRecord::default();
    let mut out = Vec::new();
    while orchestrator::RecordSource::read_record(&mut reader, &mut rec).unwrap() {
        out.push(rec.fields.iter().cloned().collect());
    }
    out
}

fn spec(transactions: usize, max_batch_lines: usize, seed: u64) -> DemoSpec {
    DemoSpec {
        accounts: 1,
        transactions,
        max_batch_lines,
        failing_accounts: 0,
        seed,
    }
}

/// Settings with a short Stuck deadline, so a test never waits long for one.
fn settings(world: &LocalWorld) -> Arc<Settings> {
    Arc::new(
        Settings::load_with_env(
            Some(&world.config),
            [("PAYBATCH__POLL__TIMEOUT".to_owned(), "1s".to_owned())],
            &paybatch_demo::protocols(),
        )
        .unwrap(),
    )
}

fn options(out: &Path) -> SubmitOptions {
    SubmitOptions {
        output: Some(OutputSpec {
            path: out.to_path_buf(),
            format: Format::Kvp,
        }),
        ..SubmitOptions::default()
    }
}

async fn drop_files(world: &LocalWorld, folder: &str) -> Vec<String> {
    let backend = world.backend(0).await.unwrap();
    let mut names: Vec<String> = backend
        .list(folder)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    names.sort();
    names
}

/// Every invoice of the input reached the gateway exactly once.
fn assert_processed_once(world: &LocalWorld, transactions: usize) {
    let journal = gateway_sim::Journal::read(world.gateway_state.join("journal.jsonl")).unwrap();
    let invoices: HashSet<String> = journal.iter().map(|e| e.invoice.clone().unwrap()).collect();
    assert_eq!(
        (journal.len(), invoices.len()),
        (transactions, transactions),
        "each transaction exactly once"
    );
}

/// A run that stops with the batch Reserved or RequestUploaded reports its lines `unknown`
/// with a note naming the batch, and the next run finishes that same batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_of_an_untriggered_batch_are_unknown_and_the_rerun_finishes_that_batch() {
    // (what the drop refuses, the state the batch is left in)
    let cases = [
        (Deny::WriteRequest, "Reserved"),
        (Deny::WriteProcess, "RequestUploaded"),
    ];
    for (deny, state) in cases {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(6, 10, 21);
        let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
        let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
        let settings = settings(&world);
        let job = load_job(&world, &settings);
        let out = dir.path().join("out.kvp");
        let name = spec.account_name(0);
        let denying = DenyingDrop {
            inner: world.backend(0).await.unwrap(),
            deny,
        };
        let orch = Orchestrator::builder(settings.clone())
            .protocol(
                &name,
                paybatch_demo::sola_drop(&settings, &name, Arc::new(denying)).unwrap(),
            )
            .build()
            .unwrap();
        let report = orch
            .submit(job.clone(), &options(&out), Shutdown::never())
            .await
            .unwrap();
        drop(orch);
        assert!(
            !report.is_complete(),
            "{deny:?}: the exit status is non-zero"
        );
        let failure = report.accounts[&name].summary.failure.clone().unwrap();
        assert!(failure.contains("permission denied"), "{deny:?}: {failure}");
        let rows = read_output(&out);
        assert_eq!(rows.len(), 6);
        let note = format!(
            "batch 1 of account {name} is not finished (state {state}); re-run the same submit to finish it — do not resubmit these elsewhere"
        );
        for row in &rows {
            assert_eq!(
                (row["outcome"].as_str(), row["xSequenceNumber"].as_str()),
                ("unknown", "1"),
                "{deny:?}: {row:?}"
            );
            assert!(row["xError"].starts_with(&note), "{deny:?}: {row:?}");
        }

        // The same submit again, with access restored: batch 1 itself is finished.
        let orch = Orchestrator::builder(settings.clone()).build().unwrap();
        let report = orch
            .submit(job, &options(&out), Shutdown::never())
            .await
            .unwrap();
        drop(orch);
        assert!(report.is_complete(), "{deny:?}: {report:?}");
        let rows = read_output(&out);
        assert!(
            rows.iter()
                .all(|r| r["xSequenceNumber"] == "1" && r["outcome"] != "unknown"),
            "{deny:?}: {rows:?}"
        );
        assert_processed_once(&world, 6);
        let _ = stop.send(());
        gateway.await.unwrap().unwrap();
    }
}

/// PermissionDenied on COMPLETE is not retried until the Stuck deadline: the account fails at
/// once, the batch stays Triggered (its lines `unknown`), and a later run collects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_storage_error_while_polling_fails_the_account_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(5, 10, 22);
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let settings = settings(&world);
    let job = load_job(&world, &settings);
    let out = dir.path().join("out.kvp");
    let name = spec.account_name(0);
    let ledger = Arc::new(Ledger::open(&settings.ledger.path).unwrap());
    let denying = DenyingDrop {
        inner: world.backend(0).await.unwrap(),
        deny: Deny::ReadComplete,
    };
    let orch = Orchestrator::builder(settings.clone())
        .ledger(Arc::new(sequence_ledger::SledLedger::new(ledger.clone())))
        .protocol(
            &name,
            paybatch_demo::sola_drop(&settings, &name, Arc::new(denying)).unwrap(),
        )
        .build()
        .unwrap();
    let report = orch
        .submit(job.clone(), &options(&out), Shutdown::never())
        .await
        .unwrap();
    drop(orch);
    let failure = report.accounts[&name].summary.failure.clone().unwrap();
    assert!(
        failure.contains("batch 1: polling for COMPLETE failed")
            && failure.contains("permission denied")
            && failure.contains("stays Triggered"),
        "{failure}"
    );
    let account = AccountId::new(name.as_str()).unwrap();
    let state = ledger.batch(&account, seq(1)).unwrap().unwrap().state;
    assert_eq!(
        state,
        BatchState::Triggered,
        "not Stuck: no waiting for the deadline"
    );
    assert!(report.accounts[&name].stuck.is_empty());
    assert_eq!(report.accounts[&name].pending, [1]);
    for row in read_output(&out) {
        assert_eq!(row["outcome"], "unknown", "{row:?}");
        assert!(row["xError"].contains("(state Triggered)"), "{row:?}");
    }

    let orch = Orchestrator::builder(settings.clone())
        .ledger(Arc::new(sequence_ledger::SledLedger::new(ledger.clone())))
        .build()
        .unwrap();
    let report = orch
        .submit(job, &options(&out), Shutdown::never())
        .await
        .unwrap();
    drop(orch);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        ledger.batch(&account, seq(1)).unwrap().unwrap().state,
        BatchState::Cleaned
    );
    assert_processed_once(&world, 5);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

fn seq(n: u32) -> kvp_format::SequenceNumber {
    kvp_format::SequenceNumber::new(n).unwrap()
}

/// Binds `positions` to the account's next number exactly as the driver would.
async fn bind(
    ledger: &Ledger,
    orch: &Orchestrator,
    job: &Job,
    account: &AccountId,
    positions: std::ops::Range<usize>,
) {
    let protocol = orch.protocol_for(account.as_str()).await.unwrap();
    let sequence = ledger.next_sequence(account).unwrap();
    let txs: Vec<_> = positions.map(|p| job.transaction(p).unwrap()).collect();
    let encoded: Vec<Vec<u8>> = txs
        .iter()
        .map(|t| {
            let mut out = Vec::new();
            LineFields::encode(&t.fields, &mut out);
            out
        })
        .collect();
    let lines: Vec<BatchLine<'_>> = encoded
        .iter()
        .enumerate()
        .map(|(i, fields)| BatchLine {
            index: i as u64,
            fields: LineFields::from_canonical(fields),
        })
        .collect();
    let payload = protocol.encode_request(sequence, &lines).unwrap();
    let new = NewBatch {
        sequence,
        request_len: payload.len() as u64,
        external_reference: None,
        lines: txs
            .iter()
            .enumerate()
            .map(|(i, t)| NewBinding {
                client_ref: t.reference.clone(),
                index: i as u64,
                content_digest: sequence_ledger::content_digest(
                    t.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            })
            .collect(),
    };
    assert!(matches!(
        ledger.reserve(account, new).unwrap(),
        Reserve::Reserved(_)
    ));
}

/// Two batches of the input are bound (as after a crash) and the gateway never answers: the
/// first becomes Stuck during the resume, and the second is neither uploaded nor triggered
/// (PROCESS_2 before COMPLETE_1 would break PROTOCOL.md §2 item 5); it stays Reserved with its
/// lines `unknown`, and the never-bound rest is `not_processed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_gets_stuck_while_resuming_stops_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(30, 10, 23);
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    let settings = settings(&world);
    let job = load_job(&world, &settings);
    let out = dir.path().join("out.kvp");
    let name = spec.account_name(0);
    let account = AccountId::new(name.as_str()).unwrap();
    let ledger = Arc::new(Ledger::open(&settings.ledger.path).unwrap());
    let orch = Orchestrator::builder(settings.clone())
        .ledger(Arc::new(sequence_ledger::SledLedger::new(ledger.clone())))
        .build()
        .unwrap();
    bind(&ledger, &orch, &job, &account, 0..10).await;
    bind(&ledger, &orch, &job, &account, 10..20).await;
    // No gateway: COMPLETE_1 never comes.
    let report = orch
        .submit(job.clone(), &options(&out), Shutdown::never())
        .await
        .unwrap();
    drop(orch);
    let entry = &report.accounts[&name];
    let failure = entry.summary.failure.clone().unwrap();
    assert!(
        failure.contains("batch 1 is Stuck") && failure.contains("later batches were not"),
        "{failure}"
    );
    assert_eq!(
        (entry.stuck.as_slice(), entry.pending.as_slice()),
        ([1].as_slice(), [2].as_slice())
    );
    let state = |n| ledger.batch(&account, seq(n)).unwrap().unwrap().state;
    assert_eq!(
        (state(1), state(2)),
        (BatchState::Stuck, BatchState::Reserved)
    );
    assert_eq!(
        drop_files(&world, "Request").await,
        ["Request/PROCESS_1.KVP", "Request/REQUEST_1.KVP"],
        "nothing of batch 2 reached the gateway"
    );
    let rows = read_output(&out);
    assert_eq!(rows.len(), 30);
    for (n, row) in rows.iter().enumerate() {
        let (outcome, seq, note) = match n {
            0..10 => ("unknown", "1", "(state Stuck: no COMPLETE by the deadline"),
            10..20 => ("unknown", "2", "(state Reserved)"),
            _ => ("not_processed", "", "batch 1 is Stuck"),
        };
        assert_eq!(
            (
                row["outcome"].as_str(),
                row.get("xSequenceNumber").map_or("", String::as_str)
            ),
            (outcome, seq),
            "line {n}: {row:?}"
        );
        assert!(row["xError"].contains(note), "line {n}: {row:?}");
    }

    // The gateway comes back: the re-run collects batch 1 (late COMPLETE), then finishes 2 and
    // sends the rest, each transaction exactly once.
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let orch = Orchestrator::builder(settings.clone())
        .ledger(Arc::new(sequence_ledger::SledLedger::new(ledger.clone())))
        .build()
        .unwrap();
    // Batch 1 is Stuck and polled once on resume: wait until the gateway has answered it.
    let backend = world.backend(0).await.unwrap();
    for _ in 0..3000 {
        if backend.head("Response/COMPLETE_1.KVP").await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let report = orch
        .submit(job, &options(&out), Shutdown::never())
        .await
        .unwrap();
    drop(orch);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        (state(1), state(2)),
        (BatchState::Cleaned, BatchState::Cleaned)
    );
    assert_processed_once(&world, 30);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

/// An error while finishing the first of two bound batches stops the account the same way:
/// the second is still reported (`unknown`, bound to its number), not left out of the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_finishing_a_bound_batch_still_reports_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(30, 10, 24);
    let world = LocalWorld::create(dir.path(), spec.clone(), Format::Kvp).unwrap();
    let settings = settings(&world);
    let job = load_job(&world, &settings);
    let out = dir.path().join("out.kvp");
    let name = spec.account_name(0);
    let account = AccountId::new(name.as_str()).unwrap();
    let ledger = Arc::new(Ledger::open(&settings.ledger.path).unwrap());
    let denying = DenyingDrop {
        inner: world.backend(0).await.unwrap(),
        deny: Deny::WriteRequest,
    };
    let orch = Orchestrator::builder(settings.clone())
        .ledger(Arc::new(sequence_ledger::SledLedger::new(ledger.clone())))
        .protocol(
            &name,
            paybatch_demo::sola_drop(&settings, &name, Arc::new(denying)).unwrap(),
        )
        .build()
        .unwrap();
    bind(&ledger, &orch, &job, &account, 0..10).await;
    bind(&ledger, &orch, &job, &account, 10..20).await;
    let report = orch
        .submit(job, &options(&out), Shutdown::never())
        .await
        .unwrap();
    drop(orch);
    assert_eq!(report.accounts[&name].pending, [1, 2]);
    let rows = read_output(&out);
    assert_eq!(rows.len(), 30, "every input line is in the output");
    for (n, row) in rows.iter().enumerate() {
        let (outcome, seq) = match n {
            0..10 => ("unknown", "1"),
            10..20 => ("unknown", "2"),
            _ => ("not_processed", ""),
        };
        assert_eq!(
            (
                row["outcome"].as_str(),
                row.get("xSequenceNumber").map_or("", String::as_str)
            ),
            (outcome, seq),
            "line {n}: {row:?}"
        );
        assert!(
            row["xError"].contains("permission denied"),
            "line {n}: {row:?}"
        );
    }
    assert!(drop_files(&world, "Request").await.is_empty());
}
