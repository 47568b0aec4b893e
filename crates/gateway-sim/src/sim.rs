//! `GatewaySim`: the accounts, their state, and the polling loop.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kvp_format::{Secret, SequenceNumber};
use storage_backends::{Backend, BackendOptions, Location};

use crate::book::Book;
use crate::clock::{Clock, SystemClock, unix_millis};
use crate::error::{Error, Result};
use crate::flaky::FlakyBackend;
use crate::journal::{Journal, JournalEntry};
use crate::jsonl::{self, write_durably};
use crate::knobs::Knobs;
use crate::process::Merchants;
use crate::vault::Vault;

/// One batch account (one SFTP login / batch credential) the simulator serves.
#[derive(Debug, Clone)]
pub struct SimAccount {
    /// The account's name: `[A-Za-z0-9._-]`, 1–64 characters (it names state files).
    pub name: String,
    /// The account's drop (`Request/` and `Response/` under its root).
    pub backend: Arc<dyn Backend>,
    /// The batch upload credential PROCESS files must carry in `xKey`.
    pub batch_key: Secret<String>,
    /// The merchant API keys REQUEST lines may use in `xKey`.
    pub merchant_keys: Vec<Secret<String>>,
    /// Behaviour switches.
    pub knobs: Knobs,
}

impl SimAccount {
    /// An account with default (well-behaved) knobs.
    pub fn new(
        name: impl Into<String>,
        backend: Arc<dyn Backend>,
        batch_key: impl Into<String>,
        merchant_keys: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        SimAccount {
            name: name.into(),
            backend,
            batch_key: Secret::new(batch_key.into()),
            merchant_keys: merchant_keys
                .into_iter()
                .map(|k| Secret::new(k.into()))
                .collect(),
            knobs: Knobs::default(),
        }
    }

    /// An account whose drop is opened from `location` (wrapped in the retry and concurrency
    /// limits of [`storage_backends::open`]): what the `paybatch gateway-sim` command uses.
    ///
    /// # Errors
    /// [`Error::Open`] when the backend cannot be opened (bad options, server unreachable).
    pub async fn open(
        name: impl Into<String>,
        location: &Location,
        options: &BackendOptions,
        batch_key: Secret<String>,
        merchant_keys: Vec<Secret<String>>,
    ) -> Result<SimAccount> {
        let name = name.into();
        let backend = storage_backends::open(location, options)
            .await
            .map_err(|source| Error::Open {
                account: name.clone(),
                source,
            })?;
        Ok(SimAccount {
            name,
            backend,
            batch_key,
            merchant_keys,
            knobs: Knobs::default(),
        })
    }

    /// Replaces the knobs.
    #[must_use]
    pub fn with_knobs(mut self, knobs: Knobs) -> Self {
        self.knobs = knobs;
        self
    }
}

/// Options of the whole simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where the state lives (accepted numbers, journal, token vault). Only one simulator may
    /// use a state directory at a time.
    pub state_dir: PathBuf,
    /// Pause between polls in [`GatewaySim::run`] (tokio time).
    pub poll_interval: Duration,
    /// The clock for the duplicate window and expiry checks.
    pub clock: Arc<dyn Clock>,
    /// In [`GatewaySim::run`], after a poll that found nothing anywhere, double the pause
    /// (from `poll_interval`) up to this much; any work resets it. Zero (the default) keeps
    /// the pause at `poll_interval`. Saves the CPU that polling many idle drops costs.
    pub idle_backoff: Duration,
}

impl SimOptions {
    /// Options with a 200 ms poll interval and the system clock.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        SimOptions {
            state_dir: state_dir.into(),
            poll_interval: Duration::from_millis(200),
            clock: Arc::new(SystemClock),
            idle_backoff: Duration::ZERO,
        }
    }

    /// Sets [`SimOptions::idle_backoff`].
    #[must_use]
    pub fn with_idle_backoff(mut self, max_pause: Duration) -> Self {
        self.idle_backoff = max_pause;
        self
    }

    /// Sets the poll interval.
    #[must_use]
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Counts of one or more polls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunStats {
    /// Batches answered with a COMPLETE `xStatus=Success`.
    pub batches_succeeded: u64,
    /// Batches answered with a COMPLETE error (validation failure or gateway-error knob).
    pub batches_failed: u64,
    /// PROCESS files ignored (stale or invalid number).
    pub batches_ignored: u64,
    /// REQUEST lines processed.
    pub lines: u64,
    /// Lines approved (`xResult=A`).
    pub approved: u64,
    /// Lines declined (`xResult=D`).
    pub declined: u64,
    /// Lines answered with an error (`xResult=E`).
    pub errors: u64,
    /// Storage operations that failed (retried on the next poll).
    pub storage_errors: u64,
    /// Polls these counts cover (one per [`GatewaySim::run_once`]).
    pub polls: u64,
}

impl std::ops::AddAssign for RunStats {
    fn add_assign(&mut self, o: RunStats) {
        self.batches_succeeded += o.batches_succeeded;
        self.batches_failed += o.batches_failed;
        self.batches_ignored += o.batches_ignored;
        self.lines += o.lines;
        self.approved += o.approved;
        self.declined += o.declined;
        self.errors += o.errors;
        self.storage_errors += o.storage_errors;
        self.polls += o.polls;
    }
}

impl RunStats {
    /// Batches that got a COMPLETE.
    pub fn batches_answered(&self) -> u64 {
        self.batches_succeeded + self.batches_failed
    }

    /// True when nothing happened: no batch seen, no line, no storage failure.
    pub fn is_idle(&self) -> bool {
        RunStats { polls: 0, ..*self } == RunStats::default()
    }
}

/// Files accepted and answered but not yet written (storage failed): retried first.
#[derive(Debug)]
pub(crate) struct Pending {
    pub sequence: SequenceNumber,
    pub response: Option<bytes::Bytes>,
    pub complete: bytes::Bytes,
}

/// The mutable state of one account.
#[derive(Debug)]
pub(crate) struct AccountState {
    pub name: String,
    pub backend: Arc<dyn Backend>,
    pub batch_key: Secret<String>,
    pub merchants: Merchants,
    pub knobs: Knobs,
    pub accepted: Option<SequenceNumber>,
    pub accepted_path: PathBuf,
    pub book: Book,
    /// Line views reused by every batch of the account.
    pub views: kvp_format::ViewBuf,
    /// The journal lines of the batch in progress (kept between batches for its capacity).
    pub journal_buf: Vec<u8>,
    /// Batches this instance wrote a COMPLETE for (drives the crash knob).
    pub answered: u64,
    pub pending: Option<Pending>,
}

impl AccountState {
    /// Persists `seq` as the last accepted number (atomic file replace + fsync) and only then
    /// updates memory.
    pub(crate) fn accept(&mut self, seq: SequenceNumber) -> Result<()> {
        write_durably(&self.accepted_path, format!("{seq}\n").as_bytes())?;
        self.accepted = Some(seq);
        Ok(())
    }
}

/// What every account shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub clock: Arc<dyn Clock>,
    pub vault: Mutex<Vault>,
    pub journal: Mutex<Journal>,
    pub next_ref: AtomicU64,
    /// Set when the crash knob fired: (account, sequence, point).
    pub crash: Mutex<Option<(String, u32, crate::knobs::CrashPoint)>>,
}

impl Shared {
    pub(crate) fn next_ref_num(&self) -> u64 {
        self.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn vault(&self) -> std::sync::MutexGuard<'_, Vault> {
        self.vault.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The simulated gateway.
#[derive(Debug)]
pub struct GatewaySim {
    shared: Arc<Shared>,
    accounts: Vec<Arc<tokio::sync::Mutex<AccountState>>>,
    state_dir: PathBuf,
    poll_interval: Duration,
    idle_backoff: Duration,
    /// Held (an OS file lock) for the simulator's lifetime; released on drop or process death.
    _lock: std::fs::File,
}

/// The first `xRefNum` a fresh state directory hands out.
const FIRST_REF_NUM: u64 = 3_000_000_001;

impl GatewaySim {
    /// Opens the state in `options.state_dir` (creating it) and prepares `accounts`.
    ///
    /// The transaction book is rebuilt from the journal, so a new simulator over the same
    /// state directory knows every earlier approval and never re-accepts a number. The
    /// directory is locked until the simulator is dropped.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid or repeated account name; [`Error::InUse`] when
    /// another live simulator holds the state directory; [`Error::State`] /
    /// [`Error::Journal`] when the state directory cannot be read or created.
    pub fn new(accounts: Vec<SimAccount>, options: SimOptions) -> Result<GatewaySim> {
        let dir = &options.state_dir;
        let accounts_dir = dir.join("accounts");
        // Its vault and journal hold tokens and card fingerprints: folders it creates are 0700.
        kvp_format::owner_only::create_dir_all(&accounts_dir)
            .map_err(|e| Error::state(&accounts_dir, "create state directory", e))?;
        let lock = lock_state_dir(dir)?;
        let vault = Vault::open(dir)?;
        let journal_path = dir.join(Journal::FILE_NAME);
        let mut seen = HashSet::new();
        for a in &accounts {
            check_name(&a.name)?;
            if !seen.insert(a.name.as_str()) {
                return Err(Error::Config {
                    account: a.name.clone(),
                    message: "configured twice".into(),
                });
            }
        }
        // Replay the journal line by line: a load run's journal can be far larger than the
        // books it rebuilds.
        let mut books: HashMap<String, Book> = accounts
            .iter()
            .map(|a| (a.name.clone(), Book::default()))
            .collect();
        let mut max_ref = FIRST_REF_NUM - 1;
        jsonl::for_each(&journal_path, |e: JournalEntry| {
            if let Ok(r) = e.ref_num.parse::<u64>() {
                max_ref = max_ref.max(r);
            }
            if let Some(book) = books.get_mut(&e.account) {
                book.apply(&e);
            }
        })?;
        let now_ms = unix_millis(options.clock.now());
        let mut states = Vec::with_capacity(accounts.len());
        for a in accounts {
            let mut book = books.remove(&a.name).unwrap_or_default();
            book.prune_now(now_ms);
            let accepted_path = accounts_dir.join(format!("{}.accepted", a.name));
            let accepted = read_accepted(&accepted_path)?;
            let merchants =
                Merchants::new(a.merchant_keys.iter().map(|k| k.expose().as_str()), &vault);
            states.push(Arc::new(tokio::sync::Mutex::new(AccountState {
                backend: FlakyBackend::wrap(a.backend, a.knobs.storage),
                name: a.name,
                batch_key: a.batch_key,
                merchants,
                knobs: a.knobs,
                accepted,
                accepted_path,
                book,
                views: kvp_format::ViewBuf::new(),
                journal_buf: Vec::new(),
                answered: 0,
                pending: None,
            })));
        }
        Ok(GatewaySim {
            shared: Arc::new(Shared {
                clock: options.clock,
                vault: Mutex::new(vault),
                journal: Mutex::new(Journal::open_append(&journal_path)?),
                next_ref: AtomicU64::new(max_ref + 1),
                crash: Mutex::new(None),
            }),
            accounts: states,
            state_dir: options.state_dir,
            poll_interval: options.poll_interval,
            idle_backoff: options.idle_backoff,
            _lock: lock,
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The journal file (read it with [`Journal::read`]).
    pub fn journal_path(&self) -> PathBuf {
        self.state_dir.join(Journal::FILE_NAME)
    }

    /// The last sequence number accepted for `account`, if any.
    pub async fn accepted(&self, account: &str) -> Option<SequenceNumber> {
        for a in &self.accounts {
            let a = a.lock().await;
            if a.name == account {
                return a.accepted;
            }
        }
        None
    }

    /// One poll of every account: handles every PROCESS file present, in arrival order.
    /// Accounts are polled in parallel tasks; batches of one account never overlap.
    /// Dropping the returned future mid-poll aborts those tasks, which is a crash as far as
    /// the batches in progress are concerned (see the crate docs' guarantees).
    ///
    /// Storage failures are logged, counted in [`RunStats::storage_errors`] and retried on the
    /// next poll; they are not errors.
    ///
    /// # Errors
    /// [`Error::State`] / [`Error::Journal`] when the state cannot be persisted (the simulator
    /// must stop: it can no longer promise exactly-once), [`Error::SimulatedCrash`] when the
    /// crash knob fires (and on every later call).
    pub async fn run_once(&self) -> Result<RunStats> {
        // One task per account, so big batches of different accounts use every worker thread.
        let mut tasks = tokio::task::JoinSet::new();
        for account in &self.accounts {
            let (shared, account) = (self.shared.clone(), account.clone());
            tasks.spawn(async move { shared.poll_account(&account).await });
        }
        let mut total = RunStats {
            polls: 1,
            ..RunStats::default()
        };
        let mut first_err = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(s)) => total += s,
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Only cancellation is left, and nothing cancels these tasks.
                Err(_) => {}
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Polls until `shutdown` completes, then returns the totals. `shutdown` is honoured
    /// between polls, so a batch in progress is always finished first.
    ///
    /// # Errors
    /// As [`GatewaySim::run_once`]; the loop stops at the first error.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<RunStats> {
        tokio::pin!(shutdown);
        let mut total = RunStats::default();
        let longest = self.idle_backoff.max(self.poll_interval);
        let mut pause = self.poll_interval;
        loop {
            let stats = self.run_once().await?;
            pause = if stats.is_idle() {
                (pause * 2).min(longest)
            } else {
                self.poll_interval
            };
            total += stats;
            tokio::select! {
                () = &mut shutdown => return Ok(total),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

fn lock_state_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::state(&path, "open lock file", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::InUse { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::state(&path, "lock", e)),
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            account: name.to_owned(),
            message: "account names are 1-64 characters of A-Z a-z 0-9 . _ -".into(),
        })
    }
}

fn read_accepted(path: &Path) -> Result<Option<SequenceNumber>> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse::<SequenceNumber>().map(Some).map_err(|_| {
            Error::state(
                path,
                "parse accepted sequence number",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a sequence number"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::state(path, "read accepted sequence number", e)),
    }
}
