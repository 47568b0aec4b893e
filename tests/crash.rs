//! Crash tests: the real binary is SIGKILLed at named points (and at random moments), then
//! re-run; the gateway-sim journal must show every transaction processed exactly once and the
//! output must be complete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use orchestrator::demo::{DemoSpec, World, spawn_gateway};
use orchestrator::{Format, InputReader, InputRecord, RecordSource};

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn submit(world: &World, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paybatch"));
    cmd.args([
        "-q",
        "submit",
        "--config",
        &s(&world.config),
        &s(&world.input),
        "--wait",
        "--output",
        &s(out),
    ])
    .env_remove("PAYBATCH_CRASH_AT")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn check_invariants(world: &World, out: &Path) {
    let failing = world.spec.account_name(world.spec.accounts - 1);
    let mut journal: HashMap<String, usize> = HashMap::new();
    for e in gateway_sim::Journal::read(world.gateway_state.join("journal.jsonl")).unwrap() {
        *journal.entry(e.invoice.unwrap_or_default()).or_insert(0) += 1;
    }
    let mut reader = InputReader::open(&world.input, None).unwrap();
    let mut rec = InputRecord::default();
    let mut inputs = Vec::new();
    while reader.read_record(&mut rec).unwrap() {
        inputs.push(rec.fields.iter().cloned().collect::<HashMap<_, _>>());
    }
    let mut reader = InputReader::open(out, None).unwrap();
    let mut outputs = Vec::new();
    while reader.read_record(&mut rec).unwrap() {
        outputs.push(rec.fields.iter().cloned().collect::<HashMap<_, _>>());
    }
    assert_eq!(outputs.len(), inputs.len(), "output complete");
    for (i, o) in inputs.iter().zip(&outputs) {
        assert_eq!(i["ref"], o["ref"]);
        if i["account"] == failing {
            assert_eq!(o["outcome"], "not_processed");
            assert!(!journal.contains_key(&i["xInvoice"]));
        } else {
            assert!(
                matches!(o["outcome"].as_str(), "approved" | "declined" | "error"),
                "{o:?}"
            );
            assert_eq!(
                journal.get(&i["xInvoice"]),
                Some(&1),
                "{} processed exactly once",
                i["ref"]
            );
        }
    }
    for a in 0..world.spec.accounts {
        let response = world.drop_dir(a).join("Response");
        let left = std::fs::read_dir(&response).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "account {a}: Response/ cleaned");
    }
}

fn world(dir: &Path, seed: u64) -> World {
    let spec = DemoSpec {
        accounts: 3,
        transactions: 150,
        max_batch_lines: 20,
        failing_accounts: 1,
        seed,
    };
    World::create(dir, spec, Format::Kvp).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_named_point_then_resume() {
    let points: Vec<String> = orchestrator::CRASH_POINTS
        .iter()
        .chain(
            [
                "reserve.after_flush",
                "transition.after_flush",
                "results.after_flush",
            ]
            .iter(),
        )
        .flat_map(|p| [format!("{p}#1"), format!("{p}#4")])
        .collect();
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let world = world(dir.path(), 21);
        let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
        let out = world.root.join("out.kvp");
        let mut cmd = submit(&world, &out);
        cmd.env("PAYBATCH_CRASH_AT", &point);
        let crashed = run(cmd).await;
        assert!(
            crashed.status.code().is_none(),
            "{point}: expected a SIGKILL, got {:?}: {}",
            crashed.status,
            String::from_utf8_lossy(&crashed.stderr)
        );
        let resumed = run(submit(&world, &out)).await;
        assert_eq!(
            resumed.status.code(),
            Some(0),
            "{point}: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        check_invariants(&world, &out);
        let _ = stop.send(());
        gateway.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 33);
    let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
    let out = world.root.join("out.kvp");
    let mut rng = fastrand::Rng::with_seed(99);
    for _ in 0..8 {
        let mut child = submit(&world, &out).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(5..120))).await;
        let _ = child.kill();
        let _ = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap();
    }
    let resumed = run(submit(&world, &out)).await;
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    check_invariants(&world, &out);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}
