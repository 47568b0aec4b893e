//! The CPU floor of one batch's file-system work on this machine: the system calls that the
//! order of steps cannot do without for one batch on a local drop (not the submit's checks
//! around them: the REQUEST read back, the look for foreign answers, polls that find nothing),
//! done one after another by one thread
//! with nothing else around them (no ledger engine, no async runtime, no threads to hand work
//! to). What `paybatch submit` spends per batch above this is its own overhead; what it
//! spends below this it cannot spend without dropping an fsync that safety needs.
//!
//! Per batch, as in `crates/orchestrator/README.md`, "Per batch, the fsyncs that safety
//! needs" (each ledger step is an append to one log file, durable ones followed by
//! `fdatasync`, counted once each: no group commit):
//! - reserve: ledger append + fdatasync;
//! - REQUEST_X (~3 KB, twenty lines): create a temporary file, write, fsync, link it to its
//!   name (never over an existing file), unlink the temporary name, fsync the folder;
//! - RequestUploaded: ledger append + fdatasync;
//! - PROCESS_X: the same publish, empty;
//! - Triggered: ledger append;
//! - one poll (list the folder) that finds the answer, read RESPONSE_X and COMPLETE_X;
//! - verdict + results: ledger append (~2 KB) + fdatasync;
//! - delete RESPONSE_X and COMPLETE_X; Cleaned: ledger append.
//!
//! The gateway's RESPONSE/COMPLETE files are written before the clock starts (they are the
//! gateway's work, in another process). CPU is `getrusage(RUSAGE_SELF)`, user + system.
//!
//! `cargo bench --bench fs_floor` (`PAYBATCH_BENCH_BATCHES`, default 5,000, one folder each;
//! the files go under `TMPDIR`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

fn cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec().unsigned_abs())
            + Duration::from_micros(tv.tv_usec().unsigned_abs())
    };
    t(u.user_time()) + t(u.system_time())
}

/// Writes `bytes` to `dir/name` the way the local drop publishes a file.
fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::hard_link(&tmp, dir.join(name)).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
}

struct Log {
    file: File,
    at: u64,
}

impl Log {
    fn append(&mut self, bytes: &[u8], durable: bool) {
        self.file.write_all_at(bytes, self.at).unwrap();
        self.at += bytes.len() as u64;
        if durable {
            self.file.sync_data().unwrap();
        }
    }
}

fn main() {
    let batches: usize = std::env::var("PAYBATCH_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let root = tempfile::tempdir().unwrap();
    let request = vec![b'x'; 3_000];
    let results = vec![b'r'; 2_000];
    let record = vec![b'b'; 300];
    let mut log = Log {
        file: File::create(root.path().join("ledger.log")).unwrap(),
        at: 0,
    };
    let dirs: Vec<_> = (0..batches)
        .map(|i| {
            let d = root.path().join(format!("acct-{i:05}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("RESPONSE_1"), &results).unwrap();
            std::fs::write(d.join("COMPLETE_1"), b"xResult=A&xStatus=Success").unwrap();
            d
        })
        .collect();
    let (wall, cpu0) = (Instant::now(), cpu());
    for dir in &dirs {
        log.append(&record, true);
        publish(dir, "REQUEST_1", &request);
        log.append(&record, true);
        publish(dir, "PROCESS_1", b"");
        log.append(&record, false);
        let listed = std::fs::read_dir(dir).unwrap().count();
        assert!(listed >= 4);
        let mut buf = Vec::new();
        for name in ["RESPONSE_1", "COMPLETE_1"] {
            File::open(dir.join(name))
                .unwrap()
                .read_to_end(&mut buf)
                .unwrap();
        }
        log.append(&buf, true);
        for name in ["RESPONSE_1", "COMPLETE_1"] {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
        log.append(&record, false);
    }
    let (cpu, wall) = (cpu() - cpu0, wall.elapsed());
    println!(
        "fs_floor: {batches} batches, {:.0} µs of CPU per batch ({:.2} s in all), {:.2} ms wall per batch",
        cpu.as_secs_f64() * 1e6 / batches as f64,
        cpu.as_secs_f64(),
        wall.as_secs_f64() * 1e3 / batches as f64,
    );
}
