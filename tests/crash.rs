//! Crash tests: the real binary is SIGKILLed at named points (and at random moments), then
//! re-run; the gateway-sim journal must show every transaction processed exactly once and the
//! output must be complete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use orchestrator::Format;
use paybatch_demo::{DemoSpec, World, spawn_gateway};

mod common;
use common::{
    assert_processed_once, crash_at_then_resume, journal_invoices, read_records, run,
    submit_wait_cmd,
};

fn check_invariants(world: &World, out: &Path) {
    let failing = world.spec.account_name(world.spec.accounts - 1);
    let journal = journal_invoices(world);
    let inputs = read_records(&world.input, None);
    let outputs = read_records(out, None);
    assert_eq!(outputs.len(), inputs.len(), "output complete");
    for (i, o) in inputs.iter().zip(&outputs) {
        assert_eq!(i["ref"], o["ref"]);
        if i["account"] == failing {
            assert_eq!(o["outcome"], "not_processed");
            assert!(!journal.contains_key(&i["xInvoice"]));
        } else {
            assert_processed_once(i, o, &journal);
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
        crash_at_then_resume(&world.config, &world.input, &out, &point).await;
        check_invariants(&world, &out);
        let _ = stop.send(());
        gateway.await.unwrap().unwrap();
    }
}

/// SIGKILLs at random moments spread over a whole run. An uninterrupted run of the world is
/// timed first; each fresh world is then killed at a moment drawn over that span, its resume
/// is killed at a moment drawn over what is left, and a last run must finish it. Kills that
/// land after the process exited are harmless (and counted as missed, not failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_then_resume() {
    const KILLS: usize = 30;
    const KILLS_PER_WORLD: usize = 2;
    // Keeps the test bounded on a slow machine: no new world is started after this, once
    // at least MIN_KILLS kills were made.
    const BUDGET: Duration = Duration::from_secs(45);
    const MIN_KILLS: usize = 10;
    let full = {
        let dir = tempfile::tempdir().unwrap();
        let world = world(dir.path(), 33);
        let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
        let out = world.root.join("out.kvp");
        let started = Instant::now();
        let done = run(submit_wait_cmd(&world.config, &world.input, &out)).await;
        let full = started.elapsed();
        assert_eq!(
            done.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        check_invariants(&world, &out);
        let _ = stop.send(());
        gateway.await.unwrap().unwrap();
        full
    };
    let mut rng = fastrand::Rng::with_seed(99);
    let began = Instant::now();
    let (mut kills, mut landed) = (0, 0);
    while kills < KILLS && (kills < MIN_KILLS || began.elapsed() < BUDGET) {
        let dir = tempfile::tempdir().unwrap();
        let world = world(dir.path(), 33);
        let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
        let out = world.root.join("out.kvp");
        let mut left = full;
        for _ in 0..KILLS_PER_WORLD {
            let at = left.mul_f64(rng.f64());
            let mut child = submit_wait_cmd(&world.config, &world.input, &out)
                .spawn()
                .unwrap();
            tokio::time::sleep(at).await;
            if child.try_wait().unwrap().is_none() {
                landed += 1;
            }
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait())
                .await
                .unwrap();
            kills += 1;
            // What is left of the work, never less than a tenth of a run (a resume re-reads
            // the ledger and rewrites the output).
            left = left.saturating_sub(at).max(full / 10);
        }
        let resumed = run(submit_wait_cmd(&world.config, &world.input, &out)).await;
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
    eprintln!(
        "uninterrupted run {full:?}; {kills} kills, {landed} while running, in {:?}",
        began.elapsed()
    );
}

/// The `paybatch-*` scratch folders in `tmp`.
fn scratch_folders(tmp: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("paybatch-"))
        })
        .collect();
    found.sort();
    found
}

/// A SIGKILLed submit cannot remove its spill folder, which holds whole transactions (card
/// numbers included). The next run removes it once it has been quiet for a minute — here
/// made to look a minute old — and leaves nothing behind itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spill_of_a_killed_run_is_removed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 33);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
    let out = world.root.join("out.kvp");

    let mut killed = submit_wait_cmd(&world.config, &world.input, &out);
    killed
        .env("TMPDIR", &tmp)
        .env("PAYBATCH_CRASH_AT", "orchestrator.polling");
    let killed = run(killed).await;
    assert!(killed.status.code().is_none(), "{killed:?}");
    let left = scratch_folders(&tmp);
    assert_eq!(left.len(), 1, "{left:?}");
    let spill = std::fs::read(left[0].join("input.spill")).unwrap();
    assert!(
        spill.windows(10).any(|w| w == b"xCardNum=4"),
        "the spill holds card numbers: why it must go"
    );
    let a_minute_ago = std::time::SystemTime::now() - Duration::from_secs(61);
    std::fs::File::open(&left[0])
        .unwrap()
        .set_modified(a_minute_ago)
        .unwrap();

    let mut resumed = submit_wait_cmd(&world.config, &world.input, &out);
    resumed.env("TMPDIR", &tmp);
    let resumed = run(resumed).await;
    assert_eq!(resumed.status.code(), Some(0), "{resumed:?}");
    assert_eq!(scratch_folders(&tmp), Vec::<std::path::PathBuf>::new());
    check_invariants(&world, &out);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

/// A process killed while it wrote REQUEST_X leaves the publish's temporary file in the drop:
/// hidden from the gateway and from listings, but holding the batch's card numbers. Killed
/// right after reserving, with such files planted for every batch left `Reserved` (what a kill
/// midway through the upload leaves), the resumed run removes exactly those — a temporary
/// file of a number not being resumed stays — and processes every transaction once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_upload_removes_what_the_killed_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 35);
    let (stop, gateway) = spawn_gateway(world.gateway(true).await.unwrap());
    let out = world.root.join("out.kvp");
    let mut killed = submit_wait_cmd(&world.config, &world.input, &out);
    killed.env("PAYBATCH_CRASH_AT", "orchestrator.after_reserve#2");
    let killed = run(killed).await;
    assert!(killed.status.code().is_none(), "{killed:?}");

    let reserved: Vec<(String, u32)> = {
        let ledger = sequence_ledger::Ledger::open_read_only(&world.ledger).unwrap();
        ledger
            .in_flight()
            .unwrap()
            .into_iter()
            .filter(|(_, b)| b.state == sequence_ledger::BatchState::Reserved)
            .map(|(a, b)| (a.to_string(), b.sequence.get()))
            .collect()
    };
    assert!(!reserved.is_empty(), "the kill left a Reserved batch");
    let mut planted = Vec::new();
    for (account, seq) in &reserved {
        let folder = world.root.join("drops").join(account).join("Request");
        std::fs::create_dir_all(&folder).unwrap();
        for kind in ["REQUEST", "PROCESS"] {
            let temp = folder.join(format!(".{kind}_{seq}.KVP.paybatch-tmp.00000000deadbeef"));
            std::fs::write(&temp, "xCardNum=4111111111111111&xExp=1230").unwrap();
            planted.push(temp);
        }
    }
    // Temporary files of numbers not being resumed, one of whose names starts the same way.
    let (account, seq) = &reserved[0];
    let request = world.root.join("drops").join(account).join("Request");
    let others = [
        request.join(".REQUEST_999.KVP.paybatch-tmp.00000000deadbeef"),
        request.join(format!(".REQUEST_{seq}0.KVP.paybatch-tmp.00000000deadbeef")),
    ];
    for other in &others {
        std::fs::write(other, "not a batch being resumed").unwrap();
    }

    let resumed = run(submit_wait_cmd(&world.config, &world.input, &out)).await;
    assert_eq!(resumed.status.code(), Some(0), "{resumed:?}");
    for temp in &planted {
        assert!(!temp.exists(), "{} is still there", temp.display());
    }
    for other in &others {
        assert!(other.exists(), "{} was removed", other.display());
    }
    check_invariants(&world, &out);
    let _ = stop.send(());
    gateway.await.unwrap().unwrap();
}

/// Abandoning a batch that a killed run was uploading removes what the upload left in the
/// drop (no run resumes an abandoned batch to do it), and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoning_a_batch_removes_what_its_killed_upload_left() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path(), 36);
    let out = world.root.join("out.kvp");
    let mut killed = submit_wait_cmd(&world.config, &world.input, &out);
    killed.env("PAYBATCH_CRASH_AT", "orchestrator.after_reserve#1");
    let killed = run(killed).await;
    assert!(killed.status.code().is_none(), "{killed:?}");
    let (account, seq) = {
        let ledger = sequence_ledger::Ledger::open_read_only(&world.ledger).unwrap();
        let (a, b) = ledger
            .in_flight()
            .unwrap()
            .into_iter()
            .find(|(_, b)| b.state == sequence_ledger::BatchState::Reserved)
            .expect("a Reserved batch");
        (a.to_string(), b.sequence.get())
    };
    let folder = world.root.join("drops").join(&account).join("Request");
    std::fs::create_dir_all(&folder).unwrap();
    let temp = folder.join(format!(".REQUEST_{seq}.KVP.paybatch-tmp.0000000000c0ffee"));
    std::fs::write(&temp, "xCardNum=4111111111111111").unwrap();

    let resolved = common::paybatch(&[
        "resolve",
        "--config",
        world.config.to_str().unwrap(),
        "--account",
        &account,
        "--seq",
        &seq.to_string(),
        "--abandon",
        "--reason",
        "test: never sent",
    ]);
    let stderr = String::from_utf8_lossy(&resolved.stderr);
    assert_eq!(resolved.status.code(), Some(0), "{stderr}");
    assert!(!temp.exists());
    // At least the planted one (the killed run may have been uploading it for real).
    assert!(
        stderr.contains("temporary file(s) an interrupted upload left in the drop"),
        "{stderr}"
    );
}
