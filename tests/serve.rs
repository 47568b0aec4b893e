//! `paybatch serve` through the real binary: a job survives SIGKILL of the server (at a named
//! crash point, and at a moment picked from outside) and finishes exactly once after a
//! restart; SIGTERM stops it cleanly (exit 0) and the next start resumes what was running;
//! the status page shows the accounts and a Stuck batch in headless Chromium; two nodes on one
//! PostgreSQL ledger share accounts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use orchestrator::Format;
use paybatch_demo::{DemoSpec, World, spawn_gateway};
use serde_json::Value;

mod common;
use common::{journal_invoices, paybatch_cmd, read_records, s};

const TOKEN: &str = "serve-test-token";

/// A running `paybatch serve` and the addresses it printed.
struct Server {
    child: Child,
    api: String,
    admin: String,
    stderr: mpsc::Receiver<String>,
}

/// Starts `paybatch serve` on ephemeral ports with its data under `data`; `env` adds variables
/// (a crash point, a poll timeout).
fn serve(world: &World, data: &Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = paybatch_cmd(["serve", "--config", &s(&world.config)]);
    cmd.env("PAYBATCH__SERVE__LISTEN", "127.0.0.1:0")
        .env("PAYBATCH__SERVE__ADMIN_LISTEN", "127.0.0.1:0")
        .env("PAYBATCH__SERVE__DATA_DIR", data)
        .env("PAYBATCH_SERVE_TOKENS", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // "paybatch: serving the API on http://A and metrics, ... on http://B"
    let mut addresses = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if let Some(rest) = line.strip_prefix("paybatch: serving the API on ") {
            let urls: Vec<String> = rest
                .split_whitespace()
                .filter(|w| w.starts_with("http"))
                .map(str::to_owned)
                .collect();
            addresses = Some(urls);
            break;
        }
    }
    let Some(urls) = addresses else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve did not print its addresses");
    };
    Server {
        child,
        api: urls[0].clone(),
        admin: urls[1].clone(),
        stderr: rx,
    }
}

impl Server {
    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    async fn submit(&self, body: Vec<u8>) -> String {
        let r = Self::client()
            .post(format!("{}/v1/jobs?format=kvp", self.api))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    async fn job(&self, id: &str) -> Value {
        Self::client()
            .get(format!("{}/v1/jobs/{id}", self.api))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls until `done` holds for the job (bounded).
    async fn wait_for(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..1200 {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id}: condition not reached");
    }

    /// Waits for the process to end (off the async threads) and returns its exit code.
    async fn exit(mut self) -> (Option<i32>, Vec<String>) {
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            (status, self.stderr)
        })
        .await
        .unwrap();
        let lines: Vec<String> = status.1.try_iter().collect();
        (status.0.code(), lines)
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

fn world(dir: &Path, transactions: usize, seed: u64) -> World {
    let spec = DemoSpec {
        accounts: 3,
        transactions,
        max_batch_lines: 10,
        failing_accounts: 0,
        seed,
    };
    World::create(dir, spec, Format::Kvp).unwrap()
}

/// The job's results: every input line once, in order, final, processed exactly once.
async fn assert_finished_exactly_once(server: &Server, world: &World, id: &str, data: &Path) {
    let job = server
        .wait_for(id, |j| j["state"] == "complete" || j["state"] == "failed")
        .await;
    assert_eq!(job["state"], "complete", "{job}");
    let r = Server::client()
        .get(format!("{}/v1/jobs/{id}/results", server.api))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let out = data.join("fetched.kvp");
    std::fs::write(&out, r.bytes().await.unwrap()).unwrap();
    let inputs = read_records(&world.input, None);
    let outputs = read_records(&out, None);
    assert_eq!(inputs.len(), outputs.len());
    let journal = journal_invoices(world);
    for (i, o) in inputs.iter().zip(&outputs) {
        assert_eq!(i["ref"], o["ref"]);
        common::assert_processed_once(i, o, &journal);
    }
    assert_eq!(journal.len(), inputs.len(), "nothing else was processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_then_restart_finishes_the_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 120, 31);
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let data: PathBuf = dir.path().join("serve-data");
    let input = std::fs::read(&world.input).unwrap();

    // The server kills itself (SIGKILL) right after its second PROCESS file.
    let server = serve(
        &world,
        &data,
        &[("PAYBATCH_CRASH_AT", "orchestrator.after_process#2")],
    );
    let id = server.submit(input.clone()).await;
    let (code, lines) = server.exit().await;
    assert_eq!(code, None, "killed by a signal: {lines:?}");

    let server = serve(&world, &data, &[]);
    assert_finished_exactly_once(&server, &world, &id, &data).await;
    let job = server.job(&id).await;
    assert_eq!(job["runs"], 2, "{job}");

    // A second job, killed from outside while it runs, finishes after a restart too.
    let second = dir.path().join("second.kvp");
    let text = String::from_utf8(input)
        .unwrap()
        .replace("ref=T", "ref=U")
        .replace("INV-", "JNV-");
    std::fs::write(&second, &text).unwrap();
    let id2 = server.submit(text.into_bytes()).await;
    server.wait_for(&id2, |j| j["state"] != "accepted").await;
    server.signal("-KILL");
    let (code, _) = server.exit().await;
    assert_eq!(code, None);
    let server = serve(&world, &data, &[]);
    let job = server
        .wait_for(&id2, |j| j["state"] == "complete" || j["state"] == "failed")
        .await;
    assert_eq!(job["state"], "complete", "{job}");
    let journal = journal_invoices(&world);
    assert_eq!(journal.len(), 240, "both jobs' transactions");
    assert!(
        journal.values().all(|n| *n == 1),
        "each processed exactly once"
    );
    server.signal("-TERM");
    assert_eq!(server.exit().await.0, Some(0));
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_the_next_start_resumes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 60, 32);
    let data = dir.path().join("serve-data");
    // No gateway yet: the job's batches wait for their COMPLETE.
    let server = serve(&world, &data, &[]);
    let id = server.submit(std::fs::read(&world.input).unwrap()).await;
    server.wait_for(&id, |j| j["state"] == "running").await;
    server.signal("-TERM");
    let (code, lines) = server.exit().await;
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("stopping")), "{lines:?}");
    let record: Value = serde_json::from_slice(
        &std::fs::read(data.join("jobs").join(&id).join("job.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "running", "left to be resumed");

    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let server = serve(&world, &data, &[]);
    assert_finished_exactly_once(&server, &world, &id, &data).await;
    server.signal("-TERM");
    assert_eq!(server.exit().await.0, Some(0));
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 5, 33);
    let o = paybatch_cmd(["serve", "--config", &s(&world.config)])
        .env("PAYBATCH__SERVE__LISTEN", "127.0.0.1:0")
        .env("PAYBATCH__SERVE__ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("PAYBATCH_SERVE_TOKENS")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("PAYBATCH_SERVE_TOKENS"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Issue 14 with issue 13: two `serve` nodes on one PostgreSQL ledger, each given a job that
/// holds transactions of every account. The accounts' leases make the nodes take turns; both
/// jobs complete and every transaction is processed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_ledger_share_every_account() {
    let Some(url) = ledger_postgres::test_support::server_url("serve two nodes") else {
        return;
    };
    let url = ledger_postgres::test_support::fresh_database_url(&url, "serve_two_nodes").await;
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 80, 33);
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    let text = std::fs::read_to_string(&world.input).unwrap();
    let mut halves = [String::new(), String::new()];
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        halves[i % 2].push_str(line);
        halves[i % 2].push('\n');
    }
    let env = [("PAYBATCH__LEDGER__URL", url.as_str())];
    let nodes = [0, 1].map(|i| serve(&world, &dir.path().join(format!("node-{i}")), &env));
    let mut ids = Vec::new();
    for (node, half) in nodes.iter().zip(&halves) {
        ids.push(node.submit(half.clone().into_bytes()).await);
    }
    for (node, id) in nodes.iter().zip(&ids) {
        let job = node
            .wait_for(id, |j| j["state"] == "complete" || j["state"] == "failed")
            .await;
        assert_eq!(job["state"], "complete", "{job}");
    }
    let journal = journal_invoices(&world);
    assert_eq!(journal.len(), 80, "both halves processed");
    assert!(
        journal.values().all(|n| *n == 1),
        "each processed exactly once: {journal:?}"
    );
    for node in nodes {
        node.signal("-TERM");
        assert_eq!(node.exit().await.0, Some(0));
    }
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

/// Headless Chromium, as the test support installs it; `None` (with a message) when absent and
/// the servers are not required.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        let o = Command::new("which").arg(name).output().ok()?;
        o.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    });
    if found.is_none() {
        assert!(
            std::env::var("PAYBATCH_REQUIRE_SERVERS").as_deref() != Ok("1"),
            "chromium is missing: run tests/support/install.sh"
        );
        eprintln!("skipping: chromium is not installed (tests/support/install.sh installs it)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_accounts_and_a_stuck_batch_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 30, 34);
    let data = dir.path().join("serve-data");
    let (stop, gateway) = spawn_gateway(world.gateway(false).await.unwrap());
    // An account whose drop nobody answers: its batch becomes Stuck after a second.
    let idle = dir.path().join("idle-drop");
    std::fs::create_dir_all(&idle).unwrap();
    let mut config = std::fs::read_to_string(&world.config).unwrap();
    config.push_str(&format!(
        "[accounts.idle]\nlocation = \"file://{}\"\nbatch_key = \"idle-bk\"\nmerchant_key = \"idle-mk\"\n",
        idle.display()
    ));
    std::fs::write(&world.config, config).unwrap();
    let server = serve(&world, &data, &[("PAYBATCH__POLL__TIMEOUT", "1s")]);
    let mut body = std::fs::read(&world.input).unwrap();
    body.extend_from_slice(
        b"account=idle&ref=idle-1&xCommand=cc:sale&xToken=tok1&xAmount=3.00&xInvoice=IDLE-1\n",
    );
    let id = server.submit(body).await;
    let job = server
        .wait_for(&id, |j| j["state"] == "complete" || j["state"] == "failed")
        .await;
    assert_eq!(job["state"], "failed", "{job}");

    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/", server.admin);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--dump-dom", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<table id=\"stuck\">"), "{dom}");
    assert!(dom.contains("Stuck batch 1"), "{dom}");
    for account in ["acct-001", "acct-002", "acct-003", "idle"] {
        assert!(
            dom.contains(&format!("<td>{account}</td>")),
            "{account}: {dom}"
        );
    }
    // The account with the Stuck batch is listed first.
    let accounts = &dom[dom.find("id=\"accounts\"").unwrap()..];
    assert!(
        accounts.find("<td>idle</td>").unwrap() < accounts.find("<td>acct-001</td>").unwrap(),
        "{dom}"
    );
    assert!(dom.contains(&id), "the job is listed: {dom}");
    server.signal("-TERM");
    assert_eq!(server.exit().await.0, Some(0));
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}
