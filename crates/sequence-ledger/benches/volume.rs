//! Volume benchmark: the ledger's share of a large run, and its size on disk.
//!
//! `cargo bench -p sequence-ledger --bench volume` (numbers in the crate README). Two shapes:
//! - **large**: 1,000,000 transactions in 200 batches of 5,000 for one account, each batch
//!   reserved, uploaded, triggered, completed, given realistic per-line results (the fields a
//!   Sola RESPONSE line carries) and cleaned, with fsync durability; then the directory's size
//!   per transaction, a re-run's idempotency check of every reference after a reopen (and the
//!   memory the index took), every batch's results read back, and a prune of everything;
//! - **small**: 2,000 accounts with one batch of 20 lines each, the same steps: the cost per
//!   batch, dominated by fsyncs — with every step durable and with the deferred steps, from
//!   one thread and from eight (group commit).
//!
//! Sizes can be changed with `LEDGER_BENCH_BATCHES`, `LEDGER_BENCH_LINES` and
//! `LEDGER_BENCH_ACCOUNTS` (e.g. for a quick run). CPU time is this process's user + system
//! time from `/proc/self/stat`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, BatchOutcome, Commit, Ledger, NewBatch, NewBinding, PerLineAnswer, Reserve,
    StoredResult, Transition, Verdict,
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of this process so far.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ")".
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Allocated bytes (blocks) and apparent bytes of every file under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut blocks, mut len) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            let (b, l) = disk_usage(&entry.path());
            blocks += b;
            len += l;
        } else {
            blocks += meta.blocks() * 512;
            len += meta.len();
        }
    }
    (blocks, len)
}

fn client_ref(n: u64) -> String {
    format!("order-{n:09}")
}

fn digest(n: u64) -> [u8; 32] {
    sequence_ledger::sha256(&n.to_le_bytes())
}

/// The fields gateway-sim writes for an approved card sale (xIndex and xSequenceNumber are not
/// kept by the caller).
fn result_fields(seq: u32, n: u64) -> Vec<(String, String)> {
    let f = |k: &str, v: String| (k.to_string(), v);
    vec![
        f("xResult", "A".into()),
        f("xStatus", "Approved".into()),
        f("xError", String::new()),
        f("xErrorCode", "00000".into()),
        f("xRefNum", format!("{}", 3_000_000_000 + n)),
        f("xInvoice", format!("INV-{n:08}")),
        f("xBatch", seq.to_string()),
        f("xAuthAmount", format!("{}.{:02}", 1 + n % 500, n % 100)),
        f(
            "xToken",
            format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15),
        ),
        f("xAuthCode", format!("{:06}", n % 1_000_000)),
        f("xMaskedCardNumber", "4xxxxxxxxxxx1111".into()),
        f("xCardType", "Visa".into()),
    ]
}

/// One kind of call: how many, and how long they took. CPU time per call is read from
/// `/proc` around each call only when `per_call_cpu` is set (large batches): for small ones
/// the two reads would cost more than the call.
#[derive(Default)]
struct Phase {
    wall: Duration,
    cpu: Duration,
    calls: u64,
    per_call_cpu: bool,
}

impl Phase {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (w, c) = (Instant::now(), self.per_call_cpu.then(cpu));
        let out = f();
        self.wall += w.elapsed();
        if let Some(c) = c {
            self.cpu += cpu().saturating_sub(c);
        }
        self.calls += 1;
        out
    }

    fn print(&self, name: &str, lines: u64) {
        let per_call = |d: Duration| d.as_secs_f64() * 1e6 / self.calls.max(1) as f64;
        let cpu = if self.per_call_cpu {
            format!(
                "{:>9.1} µs cpu/call  {:>7.2} µs cpu/line",
                per_call(self.cpu),
                self.cpu.as_secs_f64() * 1e6 / lines.max(1) as f64
            )
        } else {
            String::new()
        };
        println!(
            "  {name:<18} {:>6} calls  {:>9.1} µs wall/call  {:>10.0} calls/s  {cpu}",
            self.calls,
            per_call(self.wall),
            self.calls as f64 / self.wall.as_secs_f64().max(1e-9),
        );
    }
}

#[derive(Default)]
struct Phases {
    reserve: Phase,
    uploaded: Phase,
    triggered: Phase,
    completed: Phase,
    results: Phase,
    cleaned: Phase,
}

impl Phases {
    fn new(per_call_cpu: bool) -> Self {
        let p = || Phase {
            per_call_cpu,
            ..Phase::default()
        };
        Phases {
            reserve: p(),
            uploaded: p(),
            triggered: p(),
            completed: p(),
            results: p(),
            cleaned: p(),
        }
    }

    fn absorb(&mut self, other: Phases) {
        for (a, b) in [
            (&mut self.reserve, other.reserve),
            (&mut self.uploaded, other.uploaded),
            (&mut self.triggered, other.triggered),
            (&mut self.completed, other.completed),
            (&mut self.results, other.results),
            (&mut self.cleaned, other.cleaned),
        ] {
            a.wall += b.wall;
            a.cpu += b.cpu;
            a.calls += b.calls;
        }
    }

    /// Prints each kind of call, then the whole run: `wall` and `cpu` measured around it.
    fn print(&self, lines: u64, wall: Duration, cpu: Duration) {
        self.reserve.print("reserve", lines);
        self.uploaded.print("request_uploaded", lines);
        self.triggered.print("triggered", lines);
        if self.completed.calls > 0 {
            self.completed.print("completed", lines);
            self.results.print("store_results", lines);
        } else {
            self.results.print("complete_and_store", lines);
        }
        self.cleaned.print("cleaned", lines);
        let batches = self.reserve.calls.max(1) as f64;
        println!(
            "  whole run: {:.2} s wall, {:.2} s cpu (user + sys, all threads): {:.2} µs cpu per line, {:.0} µs cpu per batch, {:.0} batches/s",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / lines.max(1) as f64,
            cpu.as_secs_f64() * 1e6 / batches,
            batches / wall.as_secs_f64().max(1e-9),
        );
    }
}

/// How a batch's steps are recorded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Every step durable, the verdict and the results in two writes (six fsyncs per batch).
    EveryStepDurable,
    /// Triggered and Cleaned deferred, the verdict and the results in one durable write
    /// (`complete_and_store`): three fsyncs per batch.
    Deferred,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::EveryStepDurable => "every step durable (6 fsyncs per batch)",
            Flow::Deferred => {
                "deferred Triggered/Cleaned, verdict + results in one write (3 fsyncs per batch)"
            }
        }
    }
}

/// One batch from reservation to Cleaned; `first` is the global number of its first line.
fn one_batch(l: &Ledger, a: &AccountId, lines: u64, first: u64, p: &mut Phases, flow: Flow) {
    let seq = l.next_sequence(a).unwrap();
    let new = NewBatch {
        sequence: seq,
        request_len: 240 * lines,
        external_reference: None,
        lines: (0..lines)
            .map(|i| NewBinding {
                client_ref: client_ref(first + i),
                index: i,
                content_digest: digest(first + i),
            })
            .collect(),
    };
    let Reserve::Reserved(_) = p.reserve.time(|| l.reserve(a, new).unwrap()) else {
        panic!("not reserved")
    };
    p.uploaded
        .time(|| l.transition(a, seq, Transition::RequestUploaded).unwrap());
    let commit = match flow {
        Flow::EveryStepDurable => Commit::Durable,
        Flow::Deferred => Commit::Deferred,
    };
    p.triggered.time(|| {
        l.transition_with(a, seq, Transition::Triggered, commit)
            .unwrap()
    });
    let verdict = Verdict {
        processed_count: Some(lines),
        ..Verdict::new(BatchOutcome::Success, "Success")
    };
    let results: Vec<StoredResult> = (0..lines)
        .map(|i| StoredResult {
            index: i,
            fields: result_fields(seq.get(), first + i).into(),
        })
        .collect();
    match flow {
        Flow::EveryStepDurable => {
            p.completed.time(|| {
                l.transition(a, seq, Transition::Completed(verdict))
                    .unwrap()
            });
            p.results.time(|| l.store_results(a, seq, results).unwrap());
        }
        Flow::Deferred => {
            p.results.time(|| {
                l.complete_and_store(
                    a,
                    seq,
                    Transition::Completed(verdict),
                    results,
                    PerLineAnswer::Read,
                )
                .unwrap()
            });
        }
    }
    p.cleaned.time(|| {
        l.transition_with(a, seq, Transition::Cleaned, commit)
            .unwrap()
    });
}

/// This process's resident memory now and at its peak, from `/proc/self/status`.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

fn large(dir: &Path, flow: Flow) {
    let batches = env_or("LEDGER_BENCH_BATCHES", 200);
    let lines = env_or("LEDGER_BENCH_LINES", 5000);
    let total = batches * lines;
    println!(
        "large: {total} transactions in {batches} batches of {lines}, one account, fsync, {}",
        flow.name()
    );
    let path = dir.join(format!("large-{}", flow as u8));
    let a = AccountId::new("acme").unwrap();
    let mut p = Phases::new(true);
    let (w, c) = (Instant::now(), cpu());
    {
        let l = Ledger::open(&path).unwrap();
        for b in 0..batches {
            one_batch(&l, &a, lines, b * lines, &mut p, flow);
        }
    }
    p.print(total, w.elapsed(), cpu().saturating_sub(c));
    let (blocks, len) = disk_usage(&path);
    let (blob_blocks, _) = disk_usage(&path.join("blobs"));
    println!(
        "  on disk: {:.1} MiB allocated ({:.0} bytes per transaction; {:.0} of them in blobs/), {:.1} MiB apparent ({:.0} bytes per transaction)",
        blocks as f64 / 1048576.0,
        blocks as f64 / total as f64,
        blob_blocks as f64 / total as f64,
        len as f64 / 1048576.0,
        len as f64 / total as f64,
    );
    drop(Ledger::open(&path).unwrap());
    let (blocks, _) = disk_usage(&path);
    let (blob_blocks, _) = disk_usage(&path.join("blobs"));
    println!(
        "  on disk after a reopen: {:.1} MiB allocated ({:.0} bytes per transaction; {:.0} of them in blobs/)",
        blocks as f64 / 1048576.0,
        blocks as f64 / total as f64,
        blob_blocks as f64 / total as f64,
    );
    // A re-run: reopen, then check every reference (all bound, same content), and read every
    // batch's results back.
    let (w, c, (rss_before, _)) = (Instant::now(), cpu(), rss());
    let l = Ledger::open(&path).unwrap();
    let mut bound = 0u64;
    for n in 0..total {
        if l.check_reference(&a, &client_ref(n), &digest(n))
            .unwrap()
            .is_some()
        {
            bound += 1;
        }
    }
    assert_eq!(bound, total);
    let (rss_after, _) = rss();
    println!(
        "  reopen + check_reference of every ref: {:.2} s wall, {:.2} s cpu ({:.2} µs cpu per ref); resident memory +{:.1} MiB ({:.0} bytes per ref)",
        w.elapsed().as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64() * 1e6 / total as f64,
        rss_after.saturating_sub(rss_before) as f64 / 1048576.0,
        rss_after.saturating_sub(rss_before) as f64 / total as f64,
    );
    let (w, c) = (Instant::now(), cpu());
    let mut fields = 0usize;
    for s in 1..=batches {
        let seq = SequenceNumber::new(u32::try_from(s).unwrap()).unwrap();
        for r in l.results(&a, seq).unwrap() {
            fields += r.fields.len();
        }
    }
    assert!(fields > 0);
    println!(
        "  results() of every batch (owned copies): {:.2} s wall, {:.2} s cpu ({:.2} µs cpu per line)",
        w.elapsed().as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64() * 1e6 / total as f64
    );
    let (w, c) = (Instant::now(), cpu());
    let mut bytes = 0usize;
    for s in 1..=batches {
        let seq = SequenceNumber::new(u32::try_from(s).unwrap()).unwrap();
        for r in l.batch_results(&a, seq).unwrap().iter() {
            bytes += r.fields().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        }
    }
    assert!(bytes > 0);
    println!(
        "  batch_results() of every batch (borrowed): {:.2} s wall, {:.2} s cpu ({:.2} µs cpu per line)",
        w.elapsed().as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64() * 1e6 / total as f64
    );
    let (w, c) = (Instant::now(), cpu());
    for n in 0..total {
        let b = l.binding_with(&a, &client_ref(n), &digest(n)).unwrap();
        assert!(b.is_some());
    }
    println!(
        "  binding_with() of every ref: {:.2} s wall, {:.2} s cpu ({:.2} µs cpu per ref)",
        w.elapsed().as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64() * 1e6 / total as f64
    );
    drop(l);
    let l = Ledger::open(&path).unwrap();
    let (w, c) = (Instant::now(), cpu());
    let pruned = l.prune(std::time::SystemTime::now()).unwrap();
    println!(
        "  prune of every batch: {} batches, {} lines, {:.1} MiB of results dropped in {:.2} s wall, {:.2} s cpu",
        pruned.batches,
        pruned.lines,
        pruned.bytes as f64 / 1048576.0,
        w.elapsed().as_secs_f64(),
        cpu().saturating_sub(c).as_secs_f64(),
    );
}

/// `threads` workers share the accounts (as `paybatch submit` drives accounts concurrently):
/// their durable writes share flushes (group commit).
fn small(dir: &Path, flow: Flow, threads: u64) {
    let accounts = env_or("LEDGER_BENCH_ACCOUNTS", 2000);
    let lines = 20;
    println!(
        "small: {accounts} accounts, one batch of {lines} lines each, {threads} thread(s), fsync, {}",
        flow.name()
    );
    let path = dir.join(format!("small-{}-{threads}", flow as u8));
    let mut p = Phases::new(false);
    let (w, c) = (Instant::now(), cpu());
    {
        let l = Ledger::open(&path).unwrap();
        let parts: Vec<Phases> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let l = &l;
                    s.spawn(move || {
                        let mut p = Phases::new(false);
                        for i in (t..accounts).step_by(threads as usize) {
                            let a = AccountId::new(format!("merchant-{i:05}")).unwrap();
                            one_batch(l, &a, lines, i * lines, &mut p, flow);
                        }
                        p
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for part in parts {
            p.absorb(part);
        }
    }
    p.print(accounts * lines, w.elapsed(), cpu().saturating_sub(c));
    let (blocks, _) = disk_usage(&path);
    println!(
        "  on disk: {:.1} MiB allocated ({:.0} bytes per transaction)",
        blocks as f64 / 1048576.0,
        blocks as f64 / (accounts * lines) as f64
    );
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if only.as_deref().is_none_or(|o| "large".contains(o)) {
        large(dir.path(), Flow::Deferred);
    }
    if only.as_deref().is_none_or(|o| "small".contains(o)) {
        for (flow, threads) in [
            (Flow::EveryStepDurable, 1),
            (Flow::Deferred, 1),
            (Flow::EveryStepDurable, 8),
            (Flow::Deferred, 8),
        ] {
            small(dir.path(), flow, threads);
        }
    }
}
