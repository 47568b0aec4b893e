//! Live progress of a run: counters for bars, and which accounts have waited long for a
//! COMPLETE (the "slow" ones that get a line of their own).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kvp_format::SequenceNumber;

/// A batch waiting for its COMPLETE longer than this is "slow": it gets a progress line (and
/// an info log line every `SLOW_AFTER` while it keeps waiting).
pub const SLOW_AFTER: Duration = Duration::from_secs(30);

/// Live progress of a run, shared with whoever draws it: the driver counts, a reader takes a
/// [`Progress::snapshot`] (from another task or thread) and asks for
/// [`Progress::slow_batches`].
#[derive(Debug, Default)]
pub struct Progress {
    transactions: AtomicU64,
    batches_uploaded: AtomicU64,
    lines_uploaded: AtomicU64,
    batches_completed: AtomicU64,
    lines_completed: AtomicU64,
    batches_stuck: AtomicU64,
    accounts_total: AtomicU64,
    accounts_done: AtomicU64,
    /// Per account, the batch it is polling for and since when (unix ms of its trigger).
    waiting: Mutex<BTreeMap<String, (SequenceNumber, u64)>>,
    /// Failed gateway/storage steps per (account, [`StorageErrorKind`]), for metrics.
    storage_errors: Mutex<BTreeMap<(String, StorageErrorKind), u64>>,
    /// Per account waiting for its lease: who holds it, until when (the ledger's clock).
    lease_waits: Mutex<BTreeMap<String, (String, SystemTime)>>,
}

/// An account waiting for its lease, held by another process (a shared ledger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseWait {
    /// The account.
    pub account: String,
    /// Who holds its lease (host, pid, id).
    pub holder: String,
    /// Until when, unless renewed (by the ledger's clock).
    pub until: SystemTime,
}

impl fmt::Display for LeaseWait {
    /// The plain line: `acme: waiting for its lease, held by host pid 7 (id) until 2026-…Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: waiting for its lease, held by {} until {}",
            self.account,
            self.holder,
            humantime::format_rfc3339_seconds(self.until)
        )
    }
}

/// How a failed step at an account's storage or gateway was classified
/// ([`gateway_protocol::Error::is_transient`]), as counted by [`Progress::storage_errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// A failure that may go away (a timeout, a dropped connection): the step is retried.
    Transient,
    /// A failure waiting will not cure (access denied, a bad configuration): the account
    /// stopped.
    Permanent,
}

impl StorageErrorKind {
    /// `transient` or `permanent` (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

/// The counters of a [`Progress`] at one moment. Each counter is read on its own (no lock),
/// so counters read together may be a step apart; each one only grows during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// Transactions in the input.
    pub transactions: u64,
    /// Batches triggered.
    pub batches_uploaded: u64,
    /// Transactions in triggered batches.
    pub lines_uploaded: u64,
    /// Batches collected and cleaned.
    pub batches_completed: u64,
    /// Transactions in collected batches.
    pub lines_completed: u64,
    /// Batches that became Stuck.
    pub batches_stuck: u64,
    /// Accounts with work in this run.
    pub accounts_total: u64,
    /// Accounts finished (or failed).
    pub accounts_done: u64,
}

/// An account whose current batch has waited for COMPLETE at least some time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowBatch {
    /// The account.
    pub account: String,
    /// The batch's sequence number.
    pub sequence: SequenceNumber,
    /// How long since it was triggered.
    pub waited: Duration,
}

impl fmt::Display for SlowBatch {
    /// The plain line: `acme: batch 17 waiting for COMPLETE for 1m05s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: batch {} waiting for COMPLETE for {}",
            self.account,
            self.sequence,
            format_waited(self.waited)
        )
    }
}

/// A short human duration, whole seconds: `45s`, `2m05s`, `1h02m03s`.
pub fn format_waited(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Whether a batch that has waited `waited` is due another slow-batch log line; `next` is when
/// the next one is due (start it at [`SLOW_AFTER`]). Polls are spaced up to
/// `poll.max_interval` apart, so lines come at most once per [`SLOW_AFTER`].
pub fn slow_log_due(waited: Duration, next: &mut Duration) -> bool {
    if waited < *next {
        return false;
    }
    *next = waited + SLOW_AFTER;
    true
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Progress {
    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProgressSnapshot {
            transactions: get(&self.transactions),
            batches_uploaded: get(&self.batches_uploaded),
            lines_uploaded: get(&self.lines_uploaded),
            batches_completed: get(&self.batches_completed),
            lines_completed: get(&self.lines_completed),
            batches_stuck: get(&self.batches_stuck),
            accounts_total: get(&self.accounts_total),
            accounts_done: get(&self.accounts_done),
        }
    }

    /// The run's input holds `count` transactions.
    pub(crate) fn set_transactions(&self, count: u64) {
        self.transactions.store(count, Ordering::Relaxed);
    }
    /// An account with work was started.
    pub(crate) fn account_started(&self) {
        self.accounts_total.fetch_add(1, Ordering::Relaxed);
    }
    /// An account's task ended (finished or failed).
    pub(crate) fn account_finished(&self) {
        self.accounts_done.fetch_add(1, Ordering::Relaxed);
    }
    /// A batch of `lines` transactions was triggered.
    pub(crate) fn uploaded(&self, lines: u64) {
        self.batches_uploaded.fetch_add(1, Ordering::Relaxed);
        self.lines_uploaded.fetch_add(lines, Ordering::Relaxed);
    }
    /// A batch of `lines` transactions was collected and cleaned.
    pub(crate) fn completed(&self, lines: u64) {
        self.batches_completed.fetch_add(1, Ordering::Relaxed);
        self.lines_completed.fetch_add(lines, Ordering::Relaxed);
    }
    /// A batch became Stuck.
    pub(crate) fn stuck(&self, _lines: u64) {
        self.batches_stuck.fetch_add(1, Ordering::Relaxed);
    }

    /// `account` polls for `sequence`'s COMPLETE, triggered at `since_unix_ms`.
    pub(crate) fn begin_wait(&self, account: &str, sequence: SequenceNumber, since_unix_ms: u64) {
        self.lock()
            .insert(account.to_owned(), (sequence, since_unix_ms));
    }

    /// `account` no longer waits (verdict, Stuck, error or shutdown).
    pub(crate) fn end_wait(&self, account: &str) {
        self.lock().remove(account);
    }

    /// A step at `account`'s storage or gateway failed: counted when the worker retries a
    /// transient failure and when a storage or gateway failure stops the account.
    pub(crate) fn storage_error(&self, account: &str, kind: StorageErrorKind) {
        let mut map = self
            .storage_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry((account.to_owned(), kind)).or_default() += 1;
    }

    /// Failed storage/gateway steps so far, per account and kind (only grows; what a
    /// `paybatch_storage_errors_total{account,kind}` counter shows).
    pub fn storage_errors(&self) -> Vec<(String, StorageErrorKind, u64)> {
        let map = self
            .storage_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|((account, kind), n)| (account.clone(), *kind, *n))
            .collect()
    }

    /// `account` waits for its lease, which `holder` holds until `until`.
    pub(crate) fn begin_lease_wait(&self, account: &str, holder: String, until: SystemTime) {
        self.lease_waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(account.to_owned(), (holder, until));
    }

    /// The accounts waiting for their lease now, by account.
    pub fn lease_waits(&self) -> Vec<LeaseWait> {
        self.lease_waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(account, (holder, until))| LeaseWait {
                account: account.clone(),
                holder: holder.clone(),
                until: *until,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (SequenceNumber, u64)>> {
        // The map holds plain values; a panic elsewhere cannot leave it half-written.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accounts whose current batch has waited for COMPLETE at least `at_least` by now,
    /// longest first (for per-account progress lines; see [`SLOW_AFTER`]).
    pub fn slow_batches(&self, at_least: Duration) -> Vec<SlowBatch> {
        self.slow_batches_at(now_unix_ms(), at_least)
    }

    /// [`Progress::slow_batches`] as of `now_unix_ms`.
    pub fn slow_batches_at(&self, now_unix_ms: u64, at_least: Duration) -> Vec<SlowBatch> {
        let mut out: Vec<SlowBatch> = self
            .lock()
            .iter()
            .map(|(account, &(sequence, since))| SlowBatch {
                account: account.clone(),
                sequence,
                waited: Duration::from_millis(now_unix_ms.saturating_sub(since)),
            })
            .filter(|s| s.waited >= at_least)
            .collect();
        out.sort_by(|a, b| b.waited.cmp(&a.waited).then(a.account.cmp(&b.account)));
        out
    }
}

/// Clears an account's lease-waiting entry however the wait ends.
pub(crate) struct LeaseWaitGuard<'a> {
    pub progress: &'a Progress,
    pub account: &'a str,
}

impl Drop for LeaseWaitGuard<'_> {
    fn drop(&mut self) {
        self.progress
            .lease_waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.account);
    }
}

/// Clears an account's waiting entry however the wait ends (including `?` and shutdown).
pub(crate) struct WaitGuard<'a> {
    pub progress: &'a Progress,
    pub account: &'a str,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.progress.end_wait(self.account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SequenceNumber {
        SequenceNumber::new(n).unwrap()
    }

    #[test]
    fn waited_is_short_and_whole_seconds() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m00s"),
            (125, "2m05s"),
            (3723, "1h02m03s"),
            (90_000, "25h00m00s"),
        ] {
            assert_eq!(format_waited(Duration::from_secs(secs)), text, "{secs}");
        }
        assert_eq!(format_waited(Duration::from_millis(59_999)), "59s");
    }

    #[test]
    fn the_plain_line_names_account_sequence_and_wait() {
        let slow = SlowBatch {
            account: "acme".into(),
            sequence: seq(17),
            waited: Duration::from_secs(65),
        };
        assert_eq!(
            slow.to_string(),
            "acme: batch 17 waiting for COMPLETE for 1m05s"
        );
    }

    #[test]
    fn only_accounts_waiting_long_enough_are_slow_longest_first() {
        let p = Progress::default();
        let t0 = 1_000_000;
        p.begin_wait("fast", seq(3), t0 + 50_000);
        p.begin_wait("slow", seq(9), t0);
        p.begin_wait("slower", seq(2), t0 - 40_000);
        let now = t0 + 60_000;
        let slow = p.slow_batches_at(now, SLOW_AFTER);
        let names: Vec<(&str, u64)> = slow
            .iter()
            .map(|s| (s.account.as_str(), s.waited.as_secs()))
            .collect();
        assert_eq!(names, [("slower", 100), ("slow", 60)]);
        p.end_wait("slower");
        {
            let _guard = WaitGuard {
                progress: &p,
                account: "slow",
            };
        }
        assert_eq!(p.slow_batches_at(now, SLOW_AFTER), []);
        assert_eq!(p.slow_batches_at(now, Duration::ZERO).len(), 1, "fast");
    }

    #[test]
    fn the_snapshot_counts_what_the_driver_reported() {
        let p = Progress::default();
        assert_eq!(p.snapshot(), ProgressSnapshot::default());
        p.set_transactions(100);
        p.account_started();
        p.account_started();
        p.uploaded(40);
        p.uploaded(20);
        p.completed(40);
        p.stuck(20);
        p.account_finished();
        assert_eq!(
            p.snapshot(),
            ProgressSnapshot {
                transactions: 100,
                batches_uploaded: 2,
                lines_uploaded: 60,
                batches_completed: 1,
                lines_completed: 40,
                batches_stuck: 1,
                accounts_total: 2,
                accounts_done: 1,
            }
        );
        p.set_transactions(7);
        assert_eq!(
            p.snapshot().transactions,
            7,
            "a new run's input replaces the count"
        );
    }

    #[test]
    fn storage_errors_are_counted_per_account_and_kind() {
        let p = Progress::default();
        assert_eq!(p.storage_errors(), []);
        p.storage_error("beta", StorageErrorKind::Permanent);
        p.storage_error("acme", StorageErrorKind::Transient);
        p.storage_error("acme", StorageErrorKind::Transient);
        assert_eq!(
            p.storage_errors(),
            [
                ("acme".to_owned(), StorageErrorKind::Transient, 2),
                ("beta".to_owned(), StorageErrorKind::Permanent, 1),
            ]
        );
    }

    #[test]
    fn slow_log_lines_come_every_slow_after_at_most() {
        let mut next = SLOW_AFTER;
        let due: Vec<bool> = [0, 10, 29, 30, 31, 45, 59, 60, 61, 95, 100]
            .into_iter()
            .map(|s| slow_log_due(Duration::from_secs(s), &mut next))
            .collect();
        assert_eq!(
            due,
            [
                false, false, false, true, false, false, false, true, false, true, false
            ]
        );
    }
}
