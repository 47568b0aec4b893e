//! Crash tests: the test binary re-executes itself as a child that works on a ledger and is
//! killed with SIGKILL — at named points inside reserve/transition/store_results/set_floor/
//! prune and after a deferred step (`PAYBATCH_CRASH_AT`), or from outside at an arbitrary
//! moment. The parent then reopens the ledger and checks the invariants
//! (`common::check_invariants`), that every durable operation the child saw succeed is still
//! there, that a deferred one is there whenever a later durable one began after it returned
//! (and, when it is lost, so is everything the child began after it), and that numbers never
//! go back or repeat across lives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, BatchOutcome, BatchState, CRASH_ENV, Commit, Durability, LEDGER_CRASH_POINTS,
    Ledger, LedgerOptions, NewBatch, NewBinding, PerLineAnswer, Reserve, StoredResult, Transition,
    Verdict,
};

const CHILD_DIR: &str = "SEQUENCE_LEDGER_TEST_CHILD_DIR";
const CHILD_LIFE: &str = "SEQUENCE_LEDGER_TEST_CHILD_LIFE";
const CHILD_ROUNDS: &str = "SEQUENCE_LEDGER_TEST_CHILD_ROUNDS";
const CHILD_THREADS: &str = "SEQUENCE_LEDGER_TEST_CHILD_THREADS";
const CHILD_FLUSH_ONLY: &str = "SEQUENCE_LEDGER_TEST_CHILD_FLUSH_ONLY";
const HOLD_DIR: &str = "SEQUENCE_LEDGER_TEST_HOLD_DIR";
const ACCOUNTS: [&str; 3] = ["acme", "globex", "initech"];

/// The child's half of the crash tests: does nothing unless the parent set `CHILD_DIR`.
#[test]
fn child_workload_entry_point() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let life: u32 = std::env::var(CHILD_LIFE).unwrap().parse().unwrap();
    let rounds: u32 = std::env::var(CHILD_ROUNDS).unwrap().parse().unwrap();
    let threaded = std::env::var_os(CHILD_THREADS).is_some();
    workload(Path::new(&dir), life, rounds, threaded);
}

/// The child's half of the lock test: holds the ledger open until killed.
#[test]
fn child_hold_entry_point() {
    let Some(dir) = std::env::var_os(HOLD_DIR) else {
        return;
    };
    let _ledger = Ledger::open(Path::new(&dir).join("ledger")).unwrap();
    std::fs::write(Path::new(&dir).join("ready"), b"ready").unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// Appends, around every ledger call, `begin <op>` before it and `<op>` once it returned; the
/// page cache survives SIGKILL, so no fsync is needed.
/// Each line is one `write` under a mutex, so threads never interleave inside a line.
struct Journal(std::sync::Mutex<std::fs::File>);

impl Journal {
    fn write(&self, line: &str) {
        let mut f = self.0.lock().unwrap();
        f.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    fn run<T>(&self, line: String, op: impl FnOnce() -> T) -> T {
        self.write(&format!("begin {line}"));
        let out = op();
        self.write(&line);
        out
    }
}

fn seq(n: u32) -> SequenceNumber {
    SequenceNumber::new(n).unwrap()
}

fn finish(l: &Ledger, a: &AccountId, n: SequenceNumber, state: BatchState, j: &Journal) {
    let mut state = state;
    let step = |j: &Journal, state: &mut BatchState, t: Transition| {
        *state = j
            .run(format!("state {a} {n} {}", t.target().name()), || {
                l.transition(a, n, t)
            })
            .unwrap()
            .state;
    };
    if state == BatchState::Reserved {
        step(j, &mut state, Transition::RequestUploaded);
    }
    if state == BatchState::RequestUploaded {
        step(j, &mut state, Transition::Triggered);
    }
    if matches!(state, BatchState::Triggered | BatchState::Stuck) {
        step(
            j,
            &mut state,
            Transition::Completed(Verdict::new(BatchOutcome::Success, "Success")),
        );
    }
    if let BatchState::Completed(_) = state {
        let lines = l.batch(a, n).unwrap().unwrap().line_count;
        let results = (0..lines)
            .map(|index| StoredResult {
                index,
                fields: kvp_format::Record::from(vec![
                    ("xResult".into(), "A".into()),
                    ("xRefNum".into(), format!("{n}-{index}")),
                ]),
            })
            .collect();
        state = j
            .run(format!("state {a} {n} Collected"), || {
                l.store_results(a, n, results)
            })
            .unwrap()
            .state;
    }
    if state == BatchState::Collected {
        step(j, &mut state, Transition::Cleaned);
    }
    assert!(state.is_final(), "{state}");
}

fn workload(dir: &Path, life: u32, rounds: u32, threaded: bool) {
    let durability = if std::env::var_os(CHILD_FLUSH_ONLY).is_some() {
        Durability::FlushOnly
    } else {
        Durability::Fsync
    };
    let l = Ledger::open_with(
        dir.join("ledger"),
        LedgerOptions::with_durability(durability),
    )
    .unwrap();
    let j = Journal(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("journal"))
            .unwrap(),
    ));
    j.write(&format!("life {life}"));
    // Recovery: finish whatever the previous life left in flight, lowest numbers first.
    for (a, rec) in l.in_flight().unwrap() {
        finish(&l, &a, rec.sequence, rec.state, &j);
    }
    if threaded {
        // One thread per account: concurrent writers share flushes (group commit).
        std::thread::scope(|s| {
            for name in ACCOUNTS {
                let (l, j) = (&l, &j);
                s.spawn(move || {
                    for r in 0..rounds {
                        one_round(l, j, name, life, r);
                    }
                });
            }
        });
    } else {
        for r in 0..rounds {
            for name in ACCOUNTS {
                one_round(&l, &j, name, life, r);
            }
        }
    }
}

fn results_for(l: &Ledger, a: &AccountId, n: SequenceNumber) -> Vec<StoredResult> {
    let lines = l.batch(a, n).unwrap().unwrap().line_count;
    (0..lines)
        .map(|index| StoredResult {
            index,
            fields: kvp_format::Record::from(vec![
                ("xResult".into(), "A".into()),
                ("xRefNum".into(), format!("{n}-{index}")),
            ]),
        })
        .collect()
}

/// One batch of one account. Rounds with `r % 3 == 1` record what may be repeated after a
/// crash as deferred steps (journal lines `lazy ...`) and the verdict with the results in
/// one write, as `paybatch submit` does: three fsyncs per batch instead of six.
fn one_round(l: &Ledger, j: &Journal, name: &str, life: u32, r: u32) {
    let a = AccountId::new(name).unwrap();
    if r % 7 == 3 {
        let floor = l.next_sequence(&a).unwrap().next().unwrap();
        j.run(format!("floor {a} {floor}"), || l.set_floor(&a, floor))
            .unwrap();
    }
    if r % 5 == 1 && name == ACCOUNTS[0] {
        // Everything cleaned so far: at least a millisecond ago.
        std::thread::sleep(Duration::from_millis(2));
        let cutoff = std::time::SystemTime::now();
        let ms = cutoff
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        j.run(format!("prune {a} {ms}"), || l.prune(cutoff))
            .unwrap();
    }
    let n = l.next_sequence(&a).unwrap();
    let lines = (0..3)
        .map(|i| NewBinding {
            client_ref: format!("{name}-{life}-{r}-{i}"),
            index: i,
            content_digest: sequence_ledger::content_digest([(
                "xRef",
                format!("{life}-{r}-{i}").as_str(),
            )]),
        })
        .collect();
    let new = NewBatch {
        sequence: n,
        request_len: 10,
        external_reference: None,
        lines,
    };
    let reserved = j
        .run(format!("reserved {a} {n}"), || l.reserve(&a, new))
        .unwrap();
    let Reserve::Reserved(_) = reserved else {
        panic!("single writer")
    };
    let lazy = r % 3 == 1;
    let step = |t: Transition| {
        let (prefix, commit) = if lazy && t.can_defer() {
            ("lazy ", Commit::Deferred)
        } else {
            ("", Commit::Durable)
        };
        j.run(
            format!("{prefix}state {a} {n} {}", t.target().name()),
            || l.transition_with(&a, n, t, commit),
        )
        .unwrap();
    };
    if r % 5 == 4 {
        step(Transition::Abandoned {
            reason: "test".into(),
        });
        return;
    }
    step(Transition::RequestUploaded);
    step(Transition::Triggered);
    if r % 6 == 5 {
        step(Transition::Stuck);
    }
    if r % 4 == 2 {
        let v = Verdict {
            processed_count: Some(0),
            ..Verdict::new(BatchOutcome::GatewayError, "Error")
        };
        step(Transition::Completed(v));
        j.run(format!("state {a} {n} Collected"), || {
            l.store_results(&a, n, vec![])
        })
        .unwrap();
        step(Transition::Cleaned);
    } else if lazy {
        let results = results_for(l, &a, n);
        let ok = Transition::Completed(Verdict::new(BatchOutcome::Success, "Success"));
        j.run(format!("state {a} {n} Collected"), || {
            l.complete_and_store(&a, n, ok, results, PerLineAnswer::Read)
        })
        .unwrap();
        step(Transition::Cleaned);
    } else {
        let state = l.batch(&a, n).unwrap().unwrap().state;
        finish(l, &a, n, state, j);
    }
}

fn spawn_child(
    dir: &Path,
    life: u32,
    rounds: u32,
    crash_at: Option<&str>,
    threaded: bool,
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    child_command(&mut cmd, dir, life, rounds, crash_at, threaded);
    cmd.spawn().unwrap()
}

/// Adds the child workload's arguments and environment to `cmd` (the test binary itself, or a
/// tracer that runs it).
fn child_command(
    cmd: &mut Command,
    dir: &Path,
    life: u32,
    rounds: u32,
    crash_at: Option<&str>,
    threaded: bool,
) {
    cmd.args([
        "--exact",
        "child_workload_entry_point",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(CHILD_DIR, dir)
    .env(CHILD_LIFE, life.to_string())
    .env(CHILD_ROUNDS, rounds.to_string())
    .env_remove(CRASH_ENV)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(point) = crash_at {
        cmd.env(CRASH_ENV, point);
    }
    if threaded {
        cmd.env(CHILD_THREADS, "1");
    } else {
        cmd.env_remove(CHILD_THREADS);
    }
}

/// Whether the operation of one journal line (`reserved a n`, `state a n S`, `floor a n`) is in
/// the ledger.
fn present(l: &Ledger, line: &str) -> bool {
    let line = line.strip_prefix("lazy ").unwrap_or(line);
    let parts: Vec<&str> = line.split(' ').collect();
    let a = AccountId::new(parts[1]).unwrap();
    if parts[0] == "prune" {
        // Every batch cleaned before the cut-off has its results dropped (or kept, rejected).
        let cutoff: u64 = parts[2].parse().unwrap();
        return l.accounts().unwrap().iter().all(|a| {
            l.batches(a).unwrap().iter().all(|b| {
                let cleaned = b
                    .transitions
                    .iter()
                    .find(|s| s.state == BatchState::Cleaned)
                    .is_some_and(|s| s.at_unix_ms < cutoff);
                !cleaned || b.is_rejected() || b.results_pruned_at.is_some()
            })
        });
    }
    let n = seq(parts[2].parse().unwrap());
    match parts[0] {
        "floor" => l.account_info(&a).unwrap().floor >= Some(n),
        "reserved" => l.batch(&a, n).unwrap().is_some(),
        "state" => l
            .batch(&a, n)
            .unwrap()
            .is_some_and(|rec| rec.transitions.iter().any(|s| s.state.name() == parts[3])),
        other => panic!("journal line {other}"),
    }
}

/// Checks the journal against the reopened ledger: every acknowledged durable operation is
/// there, no number was handed out twice, and — when the child died after a flush — so is the
/// operation it was in the middle of. A deferred (`lazy`) operation may be missing only if no
/// durable operation began after it returned (a durable flush covers every earlier write), and
/// then nothing the child began after it in the same life is there (sled's log is recovered as
/// a prefix: a lost write is never followed by a kept one).
fn check_journal(l: &Ledger, dir: &Path, died_after_flush: bool) {
    let text = std::fs::read_to_string(dir.join("journal")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut reserved = std::collections::BTreeSet::new();
    let mut pending: Option<&str> = None;
    // (position of the ack, op) of every acknowledged deferred op.
    let mut lazy: Vec<(usize, &str)> = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        if line.starts_with("life ") {
            pending = None;
            continue;
        }
        if let Some(op) = line.strip_prefix("begin ") {
            pending = Some(op);
            continue;
        }
        pending = None;
        if line.starts_with("lazy ") {
            lazy.push((at, line));
            continue;
        }
        assert!(present(l, line), "acknowledged `{line}` is gone");
        if line.starts_with("reserved ") {
            assert!(reserved.insert(*line), "`{line}` handed out twice");
        }
    }
    if died_after_flush {
        let op = pending.expect("the child died inside a ledger call");
        assert!(present(l, op), "`{op}` was flushed but is gone");
    }
    for (acked, op) in lazy {
        if present(l, op) {
            continue;
        }
        // Lost: nothing after it in the same life may have become durable.
        for later in lines[acked + 1..]
            .iter()
            .take_while(|l| !l.starts_with("life "))
        {
            // A prune's presence is "nothing old has results left", true of a lost one too.
            let Some(begun) = later
                .strip_prefix("begin ")
                .filter(|b| !b.starts_with("prune "))
            else {
                continue;
            };
            assert!(
                !present(l, begun) || begun == op,
                "deferred `{op}` is gone but `{begun}`, begun after it returned, is there"
            );
        }
    }
}

fn assert_killed(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{what}: child was not killed by SIGKILL: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn reopen_and_check(
    dir: &Path,
    before: &common::HighWater,
    died_after_flush: bool,
) -> common::HighWater {
    let l = Ledger::open(dir.join("ledger")).unwrap();
    let high = common::check_invariants(&l);
    common::assert_not_backwards(before, &high);
    check_journal(&l, dir, died_after_flush);
    high
}

#[test]
fn killed_at_every_named_point_the_ledger_keeps_its_invariants() {
    // Every point, at its 1st, 2nd and 7th hit; three lives per directory so that recovery
    // after a kill is itself killed.
    for hit in [1, 2, 7] {
        let dir = tempfile::tempdir().unwrap();
        let mut high = common::HighWater::new();
        for (life, point) in (0u32..).zip(LEDGER_CRASH_POINTS) {
            let target = format!("{point}#{hit}");
            let child = spawn_child(dir.path(), life, 50, Some(&target), false);
            assert_killed(child, &target);
            high = reopen_and_check(dir.path(), &high, point.ends_with("after_flush"));
        }
        // A last life without a kill finishes everything and keeps counting up.
        let out = spawn_child(dir.path(), 99, 2, None, true)
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = reopen_and_check(dir.path(), &high, false);
        let l = Ledger::open(dir.path().join("ledger")).unwrap();
        assert!(l.in_flight().unwrap().is_empty());
        assert!(after.values().all(Option::is_some));
    }
}

#[test]
fn killed_at_named_points_with_concurrent_writers() {
    // Three threads share flushes (group commit): whatever any of them saw acknowledged must
    // survive, whichever thread reached the point.
    let dir = tempfile::tempdir().unwrap();
    let mut high = common::HighWater::new();
    for (life, point) in (0u32..).zip(LEDGER_CRASH_POINTS) {
        let target = format!("{point}#4");
        let child = spawn_child(dir.path(), life, 50, Some(&target), true);
        assert_killed(child, &target);
        high = reopen_and_check(dir.path(), &high, false);
    }
}

#[test]
fn killed_from_outside_at_arbitrary_moments() {
    let dir = tempfile::tempdir().unwrap();
    let mut high = common::HighWater::new();
    let journal = dir.path().join("journal");
    for life in 0..6u32 {
        let before = std::fs::metadata(&journal).map_or(0, |m| m.len());
        let mut child = spawn_child(dir.path(), life, 10_000, None, life % 2 == 1);
        // Kill after the child has made some progress; how much varies with the machine.
        let wanted = before + 200 + 137 * u64::from(life);
        while std::fs::metadata(&journal).map_or(0, |m| m.len()) < wanted {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child ended on its own: {status:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        assert_killed(child, "external kill");
        high = reopen_and_check(dir.path(), &high, false);
    }
}

#[test]
fn a_second_process_is_told_the_pid_of_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_hold_entry_point", "--test-threads=1"])
        .env(HOLD_DIR, dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ready = dir.path().join("ready");
    while !ready.exists() {
        assert!(child.try_wait().unwrap().is_none(), "holder died");
        std::thread::sleep(Duration::from_millis(5));
    }
    let path: PathBuf = dir.path().join("ledger");
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(err, sequence_ledger::Error::InUse { pid: Some(p), .. } if p == child.id()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("ledger {} is in use by pid {}", path.display(), child.id())
    );
    assert!(matches!(
        Ledger::open_read_only(&path),
        Err(sequence_ledger::Error::InUse { .. })
    ));
    child.kill().unwrap();
    assert_killed(child, "holder");
    // The kernel released the lock with the process: no stale lock.
    Ledger::open(&path).unwrap();
}

/// "Flushed" means durable, seen from the kernel's side. The child workload runs under
/// `strace`; the journal's `begin <op>` and `<op>` writes mark where each ledger call starts
/// and returns. Every acknowledged durable call must have written sled's log (`db`) and then
/// `fdatasync`ed it (or `fsync`ed) after its last write and before returning; deferred calls
/// (`lazy ...`) mostly sync nothing. The same workload
/// with `Durability::FlushOnly` fails that check for most calls (sled syncs on its own only
/// now and then), so the check can fail.
///
/// Needs `strace` (`tests/support/install.sh` installs it; with `PAYBATCH_REQUIRE_SERVERS=1`, as
/// in CI, a missing strace fails the test). Skipped only where ptrace is not permitted.
#[test]
fn every_acknowledged_write_is_fdatasynced_before_the_call_returns() {
    if !strace_usable() {
        return;
    }
    for flush_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace");
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-y", "-qq", "-s", "256", "-o"])
            .arg(&trace)
            .args([
                "-e",
                "trace=write,pwrite64,pwritev,pwritev2,fsync,fdatasync,sync_file_range",
            ])
            .arg(std::env::current_exe().unwrap());
        child_command(&mut cmd, dir.path(), 1, 4, None, false);
        if flush_only {
            cmd.env(CHILD_FLUSH_ONLY, "1");
        } else {
            cmd.env_remove(CHILD_FLUSH_ONLY);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&trace).unwrap();
        let log = format!("{}/db>", dir.path().join("ledger").display());
        let journal = format!("{}>", dir.path().join("journal").display());
        let (calls, deferred): (Vec<TracedCall>, Vec<TracedCall>) =
            traced_calls(&text, &log, &journal)
                .into_iter()
                .partition(|c| !c.op.starts_with("lazy "));
        // 4 rounds × 3 accounts, each a reserve and up to 5 transitions, and a floor now and then.
        assert!(calls.len() >= 30, "{} calls traced:\n{text}", calls.len());
        // A deferred step syncs nothing of its own (the next durable call's flush covers it):
        // most show no sync at all, or deferring would save nothing.
        let deferred_synced = deferred
            .iter()
            .filter(|c| c.events.contains(&LogEvent::Sync))
            .count();
        assert!(
            deferred.len() >= 4 && deferred_synced * 2 < deferred.len(),
            "{deferred_synced} of {} deferred calls synced",
            deferred.len()
        );
        let mut unsynced = Vec::new();
        for call in &calls {
            let last_write = call.events.iter().rposition(|e| *e == LogEvent::Write);
            let Some(last_write) = last_write else {
                panic!("`{}` returned without writing sled's log", call.op);
            };
            if !call.events[last_write..].contains(&LogEvent::Sync) {
                unsynced.push((call.op.as_str(), &call.events));
            }
        }
        if flush_only {
            // sled fsyncs its log itself now and then (segment bookkeeping), so a few calls
            // may look synced; most must not, or this check could not tell the two apart.
            assert!(
                unsynced.len() * 2 > calls.len(),
                "FlushOnly: only {} of {} calls unsynced",
                unsynced.len(),
                calls.len()
            );
        } else {
            assert!(
                unsynced.is_empty(),
                "returned without an fdatasync after the last log write: {unsynced:?}"
            );
        }
    }
}

/// What one traced ledger call did to sled's log file, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogEvent {
    Write,
    /// `sync_file_range`: what sled's own `flush()` ends with.
    Range,
    /// `fdatasync` or `fsync`.
    Sync,
}

struct TracedCall {
    op: String,
    events: Vec<LogEvent>,
}

/// Splits an `strace -f -y` trace into the ledger calls between the journal's `begin <op>` and
/// `<op>` lines, with the log file events in between (from any thread: sled may write from its
/// own). A failed sync fails the test.
fn traced_calls(trace: &str, log: &str, journal: &str) -> Vec<TracedCall> {
    let mut calls = Vec::new();
    let mut open: Option<TracedCall> = None;
    for line in trace.lines() {
        let Some((_pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let name = call.split('(').next().unwrap_or("");
        if name == "write" && call.contains(journal) {
            let text = call.split_once(", \"").map_or("", |(_, t)| t);
            if let Some(op) = text.strip_prefix("begin ") {
                let op = op.split("\\n").next().unwrap_or(op).to_owned();
                open = Some(TracedCall {
                    op,
                    events: Vec::new(),
                });
            } else if let Some(done) = open.take() {
                calls.push(done);
            }
            continue;
        }
        if !call.contains(log) {
            continue;
        }
        let event = match name {
            "write" | "pwrite64" | "pwritev" | "pwritev2" => LogEvent::Write,
            "sync_file_range" => LogEvent::Range,
            "fsync" | "fdatasync" => {
                assert!(!call.contains("= -1"), "failed sync: {line}");
                LogEvent::Sync
            }
            _ => continue,
        };
        if let Some(current) = open.as_mut() {
            current.events.push(event);
        }
    }
    calls
}

/// Whether `strace` can trace a child here. A missing strace fails under
/// `PAYBATCH_REQUIRE_SERVERS=1` and skips (saying so) otherwise; ptrace refused by the
/// machine's security settings skips with a message.
fn strace_usable() -> bool {
    let required = std::env::var("PAYBATCH_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
    match Command::new("strace")
        .args(["-qq", "-e", "trace=none", "true"])
        .output()
    {
        Err(e) => {
            assert!(
                !required,
                "strace is required (PAYBATCH_REQUIRE_SERVERS=1): {e}; tests/support/install.sh installs it"
            );
            eprintln!("SKIPPED: strace not found ({e}); tests/support/install.sh installs it");
            false
        }
        Ok(out) if !out.status.success() => {
            eprintln!(
                "SKIPPED: strace cannot trace here: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        Ok(_) => true,
    }
}
