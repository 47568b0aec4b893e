//! Several `paybatch submit` processes on one shared PostgreSQL ledger, through the binary, with
//! gateway-sim in this test process: two inputs sharing every account, each transaction
//! processed once and no PROCESS ignored; a submit killed mid-run whose accounts another takes
//! over once its leases expired; a submit paused past its leases that cannot commit after it
//! resumes. Test server: `PAYBATCH_TEST_PG_URL` (skipped with a message without it, a failure
//! with `PAYBATCH_REQUIRE_SERVERS=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kvp_format::FileKind;
use ledger_postgres::test_support::{fresh_database_url, server_url};
use orchestrator::Format;
use paybatch_demo::{DemoSpec, World, spawn_gateway};

mod common;
use common::{journal_invoices, paybatch_cmd, read_records, run, s, text};

/// A world of `accounts` accounts and `transactions` transactions (batches of at most
/// `max_batch_lines`), its input split into two inputs that share every account, and a fresh
/// database for the ledger.
struct Shared {
    _dir: tempfile::TempDir,
    world: World,
    inputs: [PathBuf; 2],
    url: String,
}

async fn shared(test: &str, accounts: usize, transactions: usize, lines: usize) -> Option<Shared> {
    let url = server_url(test)?;
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        accounts,
        transactions,
        max_batch_lines: lines,
        failing_accounts: 0,
        seed: 11,
    };
    let world = World::create(dir.path(), spec, Format::Jsonl).unwrap();
    // Alternate records: both inputs hold transactions of every account.
    let text = std::fs::read_to_string(&world.input).unwrap();
    let mut halves = [String::new(), String::new()];
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        halves[i % 2].push_str(line);
        halves[i % 2].push('\n');
    }
    let inputs = [0, 1].map(|i| dir.path().join(format!("input-{i}.jsonl")));
    for (path, half) in inputs.iter().zip(&halves) {
        std::fs::write(path, half).unwrap();
    }
    let url = fresh_database_url(&url, test).await;
    Some(Shared {
        _dir: dir,
        world,
        inputs,
        url,
    })
}

impl Shared {
    /// `paybatch submit --wait` of input `i` on the shared ledger, with leases of `ttl`.
    fn submit(&self, i: usize, ttl: &str) -> Command {
        let out = self.output(i);
        let mut cmd = paybatch_cmd([
            "submit".to_owned(),
            "--config".into(),
            s(&self.world.config),
            s(&self.inputs[i]),
            "--wait".into(),
            "--output".into(),
            s(&out),
        ]);
        cmd.env("PAYBATCH__LEDGER__URL", &self.url)
            .env("PAYBATCH__LEDGER__LEASE_TTL", ttl)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn output(&self, i: usize) -> PathBuf {
        self.world.root.join(format!("out-{i}.jsonl"))
    }

    /// `paybatch status --json` on the shared ledger.
    async fn status(&self) -> serde_json::Value {
        let mut cmd = paybatch_cmd(["status", "--json", "--config"]);
        cmd.arg(&self.world.config)
            .env("PAYBATCH__LEDGER__URL", &self.url);
        let o = run(cmd).await;
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Submit 0 SIGKILLed at crash point `point`, with leases of one second.
    async fn killed_at(&self, point: &str) {
        let mut killed = self.submit(0, "1s");
        killed.env("PAYBATCH_CRASH_AT", point);
        let killed = run(killed).await;
        assert!(
            killed.status.code().is_none(),
            "SIGKILLed: {}",
            text(&killed)
        );
    }

    /// Submit 1 (leases of one second, polls of three) takes the account over and stops at
    /// batch 1, saying `why`.
    async fn second_stops_at_batch_1(&self, why: &str) {
        let mut blocked = self.submit(1, "1s");
        blocked.env("PAYBATCH__POLL__TIMEOUT", "3s");
        let blocked = run(blocked).await;
        assert_eq!(blocked.status.code(), Some(1), "{}", text(&blocked));
        let err = String::from_utf8_lossy(&blocked.stderr);
        assert!(err.contains("batch 1") && err.contains(why), "{err}");
    }

    /// How many batches of the first account are in each state.
    async fn batches(&self) -> serde_json::Value {
        self.status().await["accounts"][0]["batches"].clone()
    }

    /// The first account's drop.
    async fn drop(&self) -> std::sync::Arc<dyn storage_backends::Backend> {
        let (location, options) = &self.world.targets[0];
        storage_backends::open(location, options).await.unwrap()
    }

    /// With the gateway running (stopped by `stop`), submit 0 again: it finishes from the
    /// ledger; then every transaction of both inputs was processed once, no PROCESS ignored.
    async fn rerun_first_then_check(
        &self,
        stop: tokio::sync::oneshot::Sender<()>,
        gateway: tokio::task::JoinHandle<paybatch_demo::Result<gateway_sim::RunStats>>,
    ) {
        let again = run(self.submit(0, "1s")).await;
        assert_eq!(again.status.code(), Some(0), "{}", text(&again));
        self.assert_output_final(0);
        stop.send(()).unwrap();
        let stats = gateway.await.unwrap().unwrap();
        assert_eq!(stats.batches_ignored, 0, "{stats:?}");
        self.assert_each_processed_once();
    }

    /// Every transaction of both inputs was processed by the gateway exactly once.
    fn assert_each_processed_once(&self) {
        let journal = journal_invoices(&self.world);
        for input in &self.inputs {
            for rec in read_records(input, None) {
                assert_eq!(
                    journal.get(&rec["xInvoice"]),
                    Some(&1),
                    "{} processed exactly once",
                    rec["ref"]
                );
            }
        }
    }

    /// Input `i`'s output: one final record per input record, in input order.
    fn assert_output_final(&self, i: usize) {
        let input = read_records(&self.inputs[i], None);
        let output = read_records(&self.output(i), None);
        assert_eq!(output.len(), input.len());
        for (i, o) in input.iter().zip(&output) {
            assert_eq!(i["ref"], o["ref"]);
            assert!(
                matches!(o["outcome"].as_str(), "approved" | "declined" | "error"),
                "{o:?}"
            );
        }
    }
}

/// The drop path of batch 1's file of `kind`.
fn batch_1(kind: kvp_format::FileKind) -> String {
    kvp_format::FileName::new(kind, kvp_format::SequenceNumber::new(1).unwrap()).path()
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

fn finish(child: std::process::Child) -> Output {
    child.wait_with_output().unwrap()
}

/// Every transaction once, no PROCESS ignored: the two processes took turns per account (the
/// lease), each reserving numbers above the other's, never both a batch of one account in
/// flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_submits_sharing_every_account_process_each_transaction_once() {
    let Some(t) = shared("two_submits_sharing", 3, 240, 20).await else {
        return;
    };
    let (stop, gateway) = spawn_gateway(t.world.gateway(true).await.unwrap());
    let a = t.submit(0, "30s").spawn().unwrap();
    let b = t.submit(1, "30s").spawn().unwrap();
    let (a, b) = tokio::task::spawn_blocking(move || (finish(a), finish(b)))
        .await
        .unwrap();
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    stop.send(()).unwrap();
    let stats = gateway.await.unwrap().unwrap();
    assert_eq!(stats.batches_ignored, 0, "{stats:?}");
    t.assert_output_final(0);
    t.assert_output_final(1);
    t.assert_each_processed_once();
    // Each account's numbers 1..=N with no gap: both processes reserved from one sequence.
    let status = t.status().await;
    for a in status["accounts"].as_array().unwrap() {
        let batches: u64 = a["batches"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(a["last_sequence"].as_u64(), Some(batches), "{a}");
        assert_eq!(a["batches"]["Cleaned"].as_u64(), Some(batches), "{a}");
        assert!(a.get("lease").is_none(), "leases released at the end: {a}");
    }
}

/// A submit killed (SIGKILL) right after writing a PROCESS holds its accounts until their
/// leases expire: `status` names the holder, the other submit says it waits, then takes the
/// accounts over and finishes the killed one's batches; the killed one re-run finishes its own
/// from the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_submit_is_taken_over_once_its_leases_expire() {
    let Some(t) = shared("killed_submit_taken_over", 2, 80, 10).await else {
        return;
    };
    let (stop, gateway) = spawn_gateway(t.world.gateway(true).await.unwrap());
    let mut killed = t.submit(0, "6s");
    killed.env("PAYBATCH_CRASH_AT", "orchestrator.after_process");
    let killed = run(killed).await;
    assert!(
        killed.status.code().is_none(),
        "SIGKILLed: {}",
        text(&killed)
    );
    // Its lease outlives it.
    let status = t.status().await;
    let held: Vec<&serde_json::Value> = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.get("lease"))
        .collect();
    assert!(!held.is_empty(), "{status}");
    let holder = held[0]["holder"].as_str().unwrap().to_owned();
    // The other one waits for it, says so, then finishes everything.
    let other = run(t.submit(1, "2s")).await;
    assert_eq!(other.status.code(), Some(0), "{}", text(&other));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("waiting for its lease, held by") && err.contains(&holder),
        "{err}"
    );
    t.assert_output_final(1);
    // The killed one re-run: what the other finished is in the ledger; the rest is sent now.
    let again = run(t.submit(0, "2s")).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    t.assert_output_final(0);
    stop.send(()).unwrap();
    gateway.await.unwrap().unwrap();
    t.assert_each_processed_once();
}

/// A submit paused (SIGSTOP) past its lease while its batch is triggered: the other submit
/// takes the account over and collects that batch; resumed (SIGCONT), the paused one cannot
/// commit anything (its lease is lost, every write fenced), stops the account, and still
/// reports its lines by the ledger (the other's results: none `not_processed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_paused_past_its_lease_cannot_commit_after_it_resumes() {
    let Some(t) = shared("paused_submit_cannot_commit", 1, 20, 10).await else {
        return;
    };
    // No gateway yet: the first submit triggers its first batch and waits for its answer.
    let paused = t.submit(0, "2s").spawn().unwrap();
    let pid = paused.id();
    let mut triggered = false;
    for _ in 0..600 {
        let status = t.status().await;
        if status["accounts"][0]["batches"]["Triggered"].as_u64() == Some(1) {
            triggered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(triggered, "the first submit never triggered its batch");
    signal(pid, "STOP");
    let (stop, gateway) = spawn_gateway(t.world.gateway(true).await.unwrap());
    // The other submit waits for the paused one's lease to expire, then finishes batch 1 and
    // its own batches.
    let other = run(t.submit(1, "2s")).await;
    assert_eq!(other.status.code(), Some(0), "{}", text(&other));
    t.assert_output_final(1);
    let before = t.status().await;
    signal(pid, "CONT");
    let paused = tokio::task::spawn_blocking(move || finish(paused))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&paused.stderr);
    assert_eq!(paused.status.code(), Some(1), "{}", text(&paused));
    assert!(err.contains("lease"), "{err}");
    // Nothing moved after it resumed.
    let after = t.status().await;
    assert_eq!(
        before["accounts"][0]["batches"],
        after["accounts"][0]["batches"]
    );
    assert_eq!(
        before["accounts"][0]["last_sequence"],
        after["accounts"][0]["last_sequence"]
    );
    // Its lines (all in batch 1) with the results the other collected: final, none
    // `not_processed`.
    t.assert_output_final(0);
    stop.send(()).unwrap();
    let stats = gateway.await.unwrap().unwrap();
    assert_eq!(stats.batches_ignored, 0, "{stats:?}");
    t.assert_each_processed_once();
}

/// A submit killed after it published its REQUEST, before it recorded the upload, leaves its
/// batch `Reserved` (never triggered: PROCESS follows the recorded upload). Once its lease
/// expired, the other submit releases that batch (its lines go into a new batch when their
/// input runs again) — but not while the drop holds that batch's PROCESS, which contradicts
/// the ledger: the gateway may process it, so releasing would report its lines
/// `not_processed`. Then the account stops, naming the batch, and the batch stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_batch_is_released_at_a_takeover_only_when_the_drop_shows_no_trigger() {
    let Some(t) = shared("reserved_batch_takeover", 1, 20, 10).await else {
        return;
    };
    t.killed_at("orchestrator.after_request").await;
    assert_eq!(t.batches().await["Reserved"], 1);
    // The batch's PROCESS turns up in the drop (no gateway is watching it).
    let drop = t.drop().await;
    let (request, process) = (batch_1(FileKind::Request), batch_1(FileKind::Process));
    drop.put(&process, bytes::Bytes::from_static(b"\n"))
        .await
        .unwrap();
    t.second_stops_at_batch_1("recorded as never triggered")
        .await;
    assert_eq!(t.batches().await["Reserved"], 1);
    assert!(
        read_records(&t.output(1), None)
            .iter()
            .all(|o| o["outcome"] == "not_processed"),
        "nothing of input 1 was bound"
    );
    // Without it, the batch is released (its REQUEST, this ledger's, withdrawn from the drop)
    // and both inputs go through, each transaction once.
    assert!(
        drop.head(&request).await.is_ok(),
        "the killed submit's REQUEST"
    );
    drop.delete(&process).await.unwrap();
    let (stop, gateway) = spawn_gateway(t.world.gateway(true).await.unwrap());
    let other = run(t.submit(1, "1s")).await;
    assert_eq!(other.status.code(), Some(0), "{}", text(&other));
    t.assert_output_final(1);
    let batches = t.batches().await;
    assert_eq!(batches["Abandoned"], 1, "{batches}");
    assert!(batches.get("Reserved").is_none(), "{batches}");
    assert!(
        drop.head(&request).await.is_err(),
        "the released batch's REQUEST is withdrawn"
    );
    t.rerun_first_then_check(stop, gateway).await;
}

/// A submit killed after it recorded its batch's upload, before it wrote PROCESS, leaves the
/// batch `RequestUploaded`; the other submit takes it over and triggers it — but only when the
/// REQUEST under its number still carries the transactions the ledger bound to it. A REQUEST
/// replaced in the meantime (same line count, other transactions) is neither triggered nor
/// overwritten: the account stops naming it. With the original back, the takeover triggers
/// and collects it, and every transaction is processed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_batch_is_triggered_at_a_takeover_only_when_its_request_is_its_own() {
    let Some(t) = shared("uploaded_batch_takeover", 1, 20, 10).await else {
        return;
    };
    t.killed_at("orchestrator.after_uploaded").await;
    assert_eq!(t.batches().await["RequestUploaded"], 1);
    // Another REQUEST under the same number: the first line twice, the last one gone.
    let drop = t.drop().await;
    let (request, process) = (batch_1(FileKind::Request), batch_1(FileKind::Process));
    let ours = drop.get(&request).await.unwrap();
    let text_of = String::from_utf8(ours.to_vec()).unwrap();
    let lines: Vec<&str> = text_of.lines().collect();
    assert_eq!(lines.len(), 10);
    let mut foreign = vec![lines[0]];
    foreign.extend(&lines[..lines.len() - 1]);
    let foreign = format!("{}\n", foreign.join("\n"));
    drop.put(&request, bytes::Bytes::from(foreign.clone()))
        .await
        .unwrap();
    t.second_stops_at_batch_1("neither overwritten nor triggered")
        .await;
    assert_eq!(t.batches().await["RequestUploaded"], 1);
    assert!(
        drop.head(&process).await.is_err(),
        "no PROCESS for a REQUEST this ledger did not write"
    );
    assert_eq!(drop.get(&request).await.unwrap(), foreign.as_bytes());
    // With its own REQUEST back, the takeover triggers it and collects it.
    drop.put(&request, ours).await.unwrap();
    let (stop, gateway) = spawn_gateway(t.world.gateway(true).await.unwrap());
    let other = run(t.submit(1, "1s")).await;
    assert_eq!(other.status.code(), Some(0), "{}", text(&other));
    t.assert_output_final(1);
    t.rerun_first_then_check(stop, gateway).await;
}
