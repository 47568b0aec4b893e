//! The ledger itself: opening, reserving, transitions, results.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvp_format::{SequenceNumber, owner_only};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::codec::{self, FORMAT_KEY, FORMAT_VERSION};
use crate::crash::crash_point;
use crate::durable::{Durability, LOCK_FILE, LockFile, LockMode, Syncer, TRANSIENT_LOCK_WAIT};
use crate::error::{Error, Result};
use crate::query::next_after;
use crate::{
    AccountId, AccountInfo, BatchRecord, BatchState, Binding, ConflictKind, NewBatch,
    PerLineAnswer, RefConflict, Release, Reserve, Stamp, StoredResult, Transition,
};

/// Opens sled at `path` while our lock file is held. sled `flock`s `db` itself; with our lock
/// held no other ledger can have it open, so when sled still finds `db` locked the holder is
/// transient: a ledger of this process that was just dropped (sled's background threads close
/// `db` a moment later), or a child process forked by another thread that has not `exec`ed
/// yet (it shares our file descriptions, locks included). Retry for up to
/// [`TRANSIENT_LOCK_WAIT`] instead of failing with sled's "could not acquire lock".
fn open_sled(config: &sled::Config) -> Result<sled::Db> {
    let deadline = Instant::now() + TRANSIENT_LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if is_sled_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other.map_err(Error::storage("opening the database")),
        }
    }
}

/// sled 0.34 reports a held `db` lock only as this I/O error (`Config::try_lock`).
fn is_sled_lock_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string().starts_with("could not acquire lock")
}

/// How [`Ledger::open_with`] opens a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerOptions {
    /// What "durable" means for every write (default: fsync).
    pub durability: Durability,
    /// Bytes of sled's page cache (default [`LedgerOptions::DEFAULT_CACHE_CAPACITY`]). sled's
    /// own default is 1 GiB, which a million-transaction run fills: the cache, not the data
    /// paybatch holds, was most of its peak memory. Reads past the cache go to the OS page
    /// cache, so a smaller one costs little.
    pub cache_capacity: u64,
}

impl LedgerOptions {
    /// 64 MiB.
    pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

    /// Options with the given durability.
    pub fn with_durability(durability: Durability) -> Self {
        LedgerOptions {
            durability,
            ..LedgerOptions::default()
        }
    }

    /// These options with sled's page cache at `bytes`.
    #[must_use]
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// The sled configuration these options open `path` with.
    fn sled_config(&self, path: &Path) -> sled::Config {
        sled::Config::new()
            .path(path)
            .cache_capacity(self.cache_capacity)
    }
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            durability: Durability::default(),
            cache_capacity: LedgerOptions::DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// A read-write ledger holds the lock and syncs; a read-only one works on a private copy.
#[derive(Debug)]
enum Access {
    ReadWrite {
        _lock: LockFile,
        syncer: Option<Syncer>,
    },
    ReadOnly {
        _copy: tempfile::TempDir,
    },
}

/// The durable record of sequence numbers, batches, bindings and results of one deployment.
/// See the crate docs for what each method guarantees after a crash.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    pub(crate) db: sled::Db,
    pub(crate) accounts: sled::Tree,
    pub(crate) batches: sled::Tree,
    pub(crate) open: sled::Tree,
    pub(crate) bindings: sled::Tree,
    pub(crate) results: sled::Tree,
    access: Access,
    /// Serialises writers inside this process: checks that span several keys (the trigger
    /// order) are made under it. sled's flush happens after it is released, so concurrent
    /// writers share flushes.
    write: Mutex<()>,
    /// Group commit: writes committed so far (counted after their sled transaction).
    commits: AtomicU64,
    /// Group commit: the commit count the last completed flush + fsync covered. Held while
    /// flushing, so a writer that waited for it may find its write already durable.
    synced: Mutex<u64>,
}

enum Abort {
    LostRace(SequenceNumber),
    Conflict(Vec<RefConflict>),
    Failed(Error),
}

impl From<Error> for Abort {
    fn from(e: Error) -> Self {
        Abort::Failed(e)
    }
}

fn abort<T>(a: impl Into<Abort>) -> std::result::Result<T, ConflictableTransactionError<Abort>> {
    Err(ConflictableTransactionError::Abort(a.into()))
}

fn txn_error(context: &'static str) -> impl FnOnce(TransactionError<Abort>) -> Error {
    move |e| match e {
        TransactionError::Abort(Abort::Failed(e)) => e,
        TransactionError::Abort(_) => Error::Corrupt {
            what: context.to_string(),
            detail: "unexpected abort".to_string(),
        },
        TransactionError::Storage(source) => Error::Storage { context, source },
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Ledger {
    /// Opens (creating if missing) the ledger directory at `path` for reading and writing, with
    /// fsync durability. The directory is made owner-only (0700, and 0600 for the files in it,
    /// whatever the umask): it holds transaction data.
    ///
    /// # Errors
    /// [`Error::InUse`] when another process (or another `Ledger` in this one) has it open;
    /// [`Error::UnsupportedFormat`] for a ledger of another layout version; [`Error::Io`] /
    /// [`Error::Storage`] for filesystem trouble.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger> {
        Ledger::open_with(path, LedgerOptions::default())
    }

    /// [`Ledger::open`] with options.
    ///
    /// # Errors
    /// As [`Ledger::open`].
    pub fn open_with(path: impl AsRef<Path>, options: LedgerOptions) -> Result<Ledger> {
        let path = path.as_ref().to_path_buf();
        // The ledger holds bindings and stored results (tokens, authorisation codes): its
        // directory is 0700 whatever the umask, and so are missing parents created here.
        owner_only::private_dir(&path).map_err(Error::io(&path))?;
        let lock = LockFile::acquire(&path, LockMode::Exclusive)?;
        let db = open_sled(&options.sled_config(&path))?;
        // sled creates its files with the default mode; narrow what is there (files it makes
        // later are behind the 0700 directory).
        owner_only::restrict_tree(&path).map_err(Error::io(&path))?;
        let syncer = match options.durability {
            Durability::Fsync => Some(Syncer::new(&path)?),
            Durability::FlushOnly => None,
        };
        let ledger = Ledger::from_db(
            path,
            db,
            Access::ReadWrite {
                _lock: lock,
                syncer,
            },
        )?;
        ledger.init_format()?;
        tracing::debug!(path = %ledger.path.display(), "ledger opened");
        Ok(ledger)
    }

    /// Opens the ledger at `path` without changing any of its files: it takes a shared lock
    /// (so no writer is mid-way), copies the database to a private temporary directory, lets
    /// the lock go and opens the copy. Every mutating method then fails with
    /// [`Error::ReadOnly`]. The copy is removed when the `Ledger` is dropped.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no ledger; [`Error::InUse`] while a writer has it
    /// open; [`Error::UnsupportedFormat`]; I/O errors of the copy.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Ledger> {
        let path = path.as_ref().to_path_buf();
        if !path.join("db").is_file() || !path.join(LOCK_FILE).is_file() {
            return Err(Error::NotFound { path });
        }
        let lock = LockFile::acquire(&path, LockMode::Shared)?;
        let copy = tempfile::Builder::new()
            .prefix("paybatch-ledger-ro.")
            .permissions(owner_only::dir_permissions())
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?;
        copy_tree(&path, copy.path())?;
        drop(lock);
        let db = LedgerOptions::default()
            .sled_config(copy.path())
            .open()
            .map_err(Error::storage("opening a copy of the database"))?;
        let ledger = Ledger::from_db(path, db, Access::ReadOnly { _copy: copy })?;
        ledger.check_format()?;
        Ok(ledger)
    }

    fn from_db(path: PathBuf, db: sled::Db, access: Access) -> Result<Ledger> {
        let tree = |name: &str| db.open_tree(name).map_err(Error::storage("opening a tree"));
        Ok(Ledger {
            accounts: tree("accounts")?,
            batches: tree("batches")?,
            open: tree("open")?,
            bindings: tree("bindings")?,
            results: tree("results")?,
            db,
            path,
            access,
            write: Mutex::new(()),
            commits: AtomicU64::new(0),
            synced: Mutex::new(0),
        })
    }

    fn meta(&self) -> Result<sled::Tree> {
        self.db
            .open_tree("meta")
            .map_err(Error::storage("opening a tree"))
    }

    /// Returns the stored version, if any, after checking it is ours.
    fn check_format(&self) -> Result<Option<u32>> {
        let Some(v) = self
            .meta()?
            .get(FORMAT_KEY)
            .map_err(Error::storage("reading the format version"))?
        else {
            return Ok(None);
        };
        let found = <[u8; 4]>::try_from(v.as_ref())
            .map(u32::from_be_bytes)
            .map_err(|_| Error::Corrupt {
                what: "meta format_version".into(),
                detail: format!("{} bytes", v.len()),
            })?;
        if found != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: self.path.clone(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        Ok(Some(found))
    }

    fn init_format(&self) -> Result<()> {
        if self.check_format()?.is_some() {
            return Ok(());
        }
        if !self.accounts.is_empty() || !self.batches.is_empty() {
            return Err(Error::Corrupt {
                what: "meta format_version".into(),
                detail: "missing in a ledger that holds data".into(),
            });
        }
        self.meta()?
            .insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
            .map_err(Error::storage("writing the format version"))?;
        self.durable("open")
    }

    /// The ledger directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self, operation: &'static str) -> Result<MutexGuard<'_, ()>> {
        if let Access::ReadOnly { .. } = self.access {
            return Err(Error::ReadOnly { operation });
        }
        Ok(self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The durable point of every write, called after its sled transaction committed: crash
    /// point `<op>.after_write`, sled flush, fsyncs (see [`Durability`]), crash point
    /// `<op>.after_flush`.
    ///
    /// Group commit: concurrent writers share one flush + fsync. A flush covers every
    /// transaction committed before it starts (sled's log is sequential), so a writer whose
    /// commit number is at most the count read before a completed flush is already durable.
    fn durable(&self, op: &'static str) -> Result<()> {
        let mine = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let (after_write, after_flush) = match op {
            "reserve" => ("reserve.after_write", "reserve.after_flush"),
            "transition" => ("transition.after_write", "transition.after_flush"),
            "results" => ("results.after_write", "results.after_flush"),
            "floor" => ("floor.after_write", "floor.after_flush"),
            _ => ("open.after_write", "open.after_flush"),
        };
        crash_point(after_write);
        {
            let mut synced = self
                .synced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *synced < mine {
                let upto = self.commits.load(Ordering::SeqCst);
                self.db.flush().map_err(Error::storage("flushing"))?;
                if let Access::ReadWrite {
                    syncer: Some(syncer),
                    ..
                } = &self.access
                {
                    syncer.sync()?;
                }
                *synced = upto;
            }
        }
        crash_point(after_flush);
        Ok(())
    }

    /// Reserves `new.sequence` for the account and binds every line's client reference to it,
    /// in one sled transaction, then flushes and fsyncs before returning.
    ///
    /// Guarantees: when this returns `Reserved`, the batch, its bindings and the new
    /// high-water mark survive a killed process and a power cut; the number is strictly greater
    /// than every number the account reserved before (and than its floor) and will never be
    /// handed out again. If the process dies before it returns, either all of it is there after
    /// a restart or none of it is. Two callers racing for the same number: one gets `Reserved`,
    /// the other `LostRace` with the number to use instead. A reference already bound to a
    /// batch that is still live gives `Conflict` and writes nothing; a binding to a batch that
    /// [releases the line](BatchRecord::releases_line_under) is replaced.
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::IndexMismatch`], [`Error::DuplicateReference`] for bad
    /// input; [`Error::Exhausted`] when a lost race leaves no number; [`Error::ReadOnly`];
    /// storage and I/O errors.
    pub fn reserve(&self, account: &AccountId, new: NewBatch) -> Result<Reserve> {
        let seq = new.sequence;
        if new.lines.is_empty() {
            return Err(Error::EmptyBatch {
                account: account.clone(),
                sequence: seq,
            });
        }
        let mut seen = HashSet::with_capacity(new.lines.len());
        for (position, line) in (0u64..).zip(&new.lines) {
            if line.index != position {
                return Err(Error::IndexMismatch {
                    account: account.clone(),
                    sequence: seq,
                    position,
                    index: line.index,
                });
            }
            if !seen.insert(line.client_ref.as_str()) {
                return Err(Error::DuplicateReference {
                    account: account.clone(),
                    sequence: seq,
                    client_ref: line.client_ref.clone(),
                });
            }
        }
        let guard = self.writer("reserve")?;
        // Which already-bound lines of rejected batches have a result of their own (those stay
        // bound). Read before the transaction: sled deadlocks on a plain read inside one, and
        // under the write lock bindings cannot change while results of a collected batch
        // never do.
        let mut with_outcome = HashSet::new();
        for line in &new.lines {
            if let Some(b) = self.binding(account, &line.client_ref)?
                && self
                    .batch(account, b.sequence)?
                    .is_some_and(|h| h.is_rejected())
                && self.line_has_outcome(account, b.sequence, b.index)?
            {
                with_outcome.insert((b.sequence, b.index));
            }
        }
        let record = BatchRecord {
            account: account.clone(),
            sequence: seq,
            state: BatchState::Reserved,
            content_sha256: crate::batch_digest(new.lines.iter().map(|l| &l.content_digest)),
            request_len: new.request_len,
            line_count: new.lines.len() as u64,
            transitions: vec![Stamp {
                state: BatchState::Reserved,
                at_unix_ms: now_ms(),
            }],
            verdict: None,
            complete_fields: None,
            note: None,
            external_reference: new.external_reference.clone(),
            per_line_answer: None,
            gateway_batch_id: None,
        };
        let key = codec::batch_key(account, seq);
        let encoded = codec::encode_batch(&record)?;
        let outcome = (&self.accounts, &self.batches, &self.open, &self.bindings).transaction(
            |(acc, bat, open, bind)| {
                let info = match acc.get(account.as_str())? {
                    Some(v) => codec::decode_account(&v, account).or_else(abort)?,
                    None => AccountInfo::default(),
                };
                if let Some(last) = info.last_used()
                    && seq <= last
                {
                    return abort(Abort::LostRace(last));
                }
                if bat.get(&key)?.is_some() {
                    return abort(Error::Corrupt {
                        what: format!("batch {seq} of account {account}"),
                        detail: "exists above the high-water mark".into(),
                    });
                }
                let mut conflicts = Vec::new();
                for line in &new.lines {
                    let bkey = codec::binding_key(account, &line.client_ref);
                    let Some(v) = bind.get(&bkey)? else { continue };
                    let what = || format!("binding {:?} of account {account}", line.client_ref);
                    let existing = codec::decode_binding(&v, what).or_else(abort)?;
                    let holder_key = codec::batch_key(account, existing.sequence);
                    let released = match bat.get(&holder_key)? {
                        Some(h) => {
                            let holder = codec::decode_batch(&h, what).or_else(abort)?;
                            let has_outcome =
                                with_outcome.contains(&(existing.sequence, existing.index));
                            holder.releases_line_under(Release::AbandonedOrRejected, has_outcome)
                        }
                        None => false,
                    };
                    if !released {
                        let kind = if existing.content_digest == line.content_digest {
                            ConflictKind::AlreadyBound
                        } else {
                            ConflictKind::ContentDiffers
                        };
                        conflicts.push(RefConflict {
                            client_ref: line.client_ref.clone(),
                            index: line.index,
                            existing,
                            kind,
                        });
                    }
                }
                if !conflicts.is_empty() {
                    return abort(Abort::Conflict(conflicts));
                }
                bat.insert(key.as_slice(), encoded.as_slice())?;
                open.insert(
                    key.as_slice(),
                    &[codec::encode_state(BatchState::Reserved)][..],
                )?;
                for line in &new.lines {
                    let binding = Binding {
                        sequence: seq,
                        index: line.index,
                        content_digest: line.content_digest,
                    };
                    bind.insert(
                        codec::binding_key(account, &line.client_ref),
                        &codec::encode_binding(&binding)[..],
                    )?;
                }
                let info = AccountInfo {
                    high_water: Some(seq),
                    ..info
                };
                acc.insert(account.as_str(), &codec::encode_account(&info)[..])?;
                Ok(())
            },
        );
        drop(guard);
        match outcome {
            Ok(()) => {}
            Err(TransactionError::Abort(Abort::LostRace(last))) => {
                return Ok(Reserve::LostRace {
                    next: next_after(account, Some(last))?,
                });
            }
            Err(TransactionError::Abort(Abort::Conflict(conflicts))) => {
                return Ok(Reserve::Conflict { conflicts });
            }
            Err(e) => return Err(txn_error("reserve")(e)),
        }
        self.durable("reserve")?;
        tracing::debug!(%account, sequence = %seq, lines = record.line_count, "batch reserved");
        Ok(Reserve::Reserved(record))
    }

    /// Moves a batch along the state machine (table on [`BatchState`]) in one sled
    /// transaction over the batch, the open-batch index and the account, flushed and fsynced
    /// before returning: after a crash the batch is in the old state or the new one, and once
    /// this returned, in the new one.
    ///
    /// # Errors
    /// [`Error::NoSuchBatch`]; [`Error::IllegalTransition`] (nothing written);
    /// [`Error::OutOfOrder`] for a `Triggered` that would make the gateway ignore a batch;
    /// [`Error::ReadOnly`]; storage and I/O errors.
    pub fn transition(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        to: Transition,
    ) -> Result<BatchRecord> {
        self.apply(account, seq, to, None)
    }

    /// [`Ledger::transition`] by an operator, with a note kept on the batch (e.g. "confirmed
    /// with the gateway by phone"). Same guarantees and errors.
    ///
    /// # Errors
    /// As [`Ledger::transition`].
    pub fn resolve(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        to: Transition,
        note: impl Into<String>,
    ) -> Result<BatchRecord> {
        self.apply(account, seq, to, Some(note.into()))
    }

    fn apply(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        to: Transition,
        note: Option<String>,
    ) -> Result<BatchRecord> {
        let guard = self.writer("change a batch's state")?;
        let mut record = self.existing_batch(account, seq)?;
        let target = to.target();
        if !record.state.can_become(target) {
            return Err(Error::IllegalTransition {
                account: account.clone(),
                sequence: seq,
                from: record.state,
                to: target,
            });
        }
        let mut info = self.account_info(account)?;
        if target == BatchState::Triggered {
            self.check_trigger_order(account, seq, &info)?;
            info.triggered = info.triggered.max(Some(seq));
        }
        record.state = target;
        record.transitions.push(Stamp {
            state: target,
            at_unix_ms: now_ms(),
        });
        match to {
            Transition::Completed(verdict) => record.verdict = Some(verdict),
            Transition::CompletedWith(verdict, fields) => {
                record.verdict = Some(verdict);
                // The fields are public, so a hand-built value may carry an echoed key.
                record.complete_fields = Some(fields.without_sensitive());
            }
            Transition::Abandoned { reason } | Transition::MarkedUnknown { reason } => {
                record.note = Some(reason)
            }
            Transition::RequestUploadedAs { gateway_batch_id } => {
                record.gateway_batch_id = Some(gateway_batch_id);
            }
            _ => {}
        }
        if let Some(note) = note {
            record.note = Some(note);
        }
        let key = codec::batch_key(account, seq);
        let encoded = codec::encode_batch(&record)?;
        (&self.batches, &self.open, &self.accounts)
            .transaction(|(bat, open, acc)| {
                bat.insert(key.as_slice(), encoded.as_slice())?;
                if target.is_final() {
                    open.remove(key.as_slice())?;
                } else {
                    open.insert(key.as_slice(), &[codec::encode_state(target)][..])?;
                }
                if target == BatchState::Triggered {
                    acc.insert(account.as_str(), &codec::encode_account(&info)[..])?;
                }
                Ok::<_, ConflictableTransactionError<Abort>>(())
            })
            .map_err(txn_error("transition"))?;
        drop(guard);
        self.durable("transition")?;
        tracing::debug!(%account, sequence = %seq, state = %target, "batch state changed");
        Ok(record)
    }

    /// PROTOCOL.md §2 items 5 and 6 (see [`BatchState`]). Called under the write lock.
    fn check_trigger_order(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        info: &AccountInfo,
    ) -> Result<()> {
        let blocked = |blocking, blocking_state| Error::OutOfOrder {
            account: account.clone(),
            sequence: seq,
            blocking,
            blocking_state,
        };
        if let Some(t) = info.triggered
            && t >= seq
        {
            let state = self
                .batch(account, t)?
                .map_or(BatchState::Triggered, |b| b.state);
            return Err(blocked(t, state));
        }
        for (other, state) in self.open_batches(account)? {
            let in_flight = matches!(state, BatchState::Triggered | BatchState::Stuck);
            let stranded =
                other < seq && matches!(state, BatchState::Reserved | BatchState::RequestUploaded);
            if other != seq && (in_flight || stranded) {
                return Err(blocked(other, state));
            }
        }
        Ok(())
    }

    /// Stores the per-line results of a `Completed` batch and moves it to `Collected`, in one
    /// sled transaction, flushed and fsynced before returning: after a crash either every
    /// result and the new state are there, or none of them and the old state.
    ///
    /// A gateway-error batch is collected the same way, with whatever lines RESPONSE held
    /// (maybe none): the lines without a result are the ones not processed.
    ///
    /// # Errors
    /// [`Error::NoSuchBatch`]; [`Error::IllegalTransition`] unless the batch is `Completed`;
    /// [`Error::BadResult`] for an index outside the batch or given twice;
    /// [`Error::SensitiveField`] for card data or a key (`kvp_format::is_sensitive`) — the value
    /// is neither stored nor echoed; [`Error::ReadOnly`]; storage and I/O errors.
    pub fn store_results(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        results: Vec<StoredResult>,
    ) -> Result<BatchRecord> {
        self.store_answer(account, seq, results, PerLineAnswer::Read)
    }

    /// [`Ledger::store_results`] saying what the per-line answer held: `results` are its lines
    /// when it was [read](PerLineAnswer::Read) and empty otherwise. For a rejected batch
    /// without a processed count only an [absent](PerLineAnswer::Absent) answer proves that
    /// nothing was processed ([`BatchRecord::is_rejected`]). Same guarantees and errors.
    ///
    /// # Errors
    /// As [`Ledger::store_results`].
    pub fn store_answer(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        let guard = self.writer("store results")?;
        let mut record = self.existing_batch(account, seq)?;
        if !matches!(record.state, BatchState::Completed(_)) {
            return Err(Error::IllegalTransition {
                account: account.clone(),
                sequence: seq,
                from: record.state,
                to: BatchState::Collected,
            });
        }
        let mut seen = HashSet::with_capacity(results.len());
        for r in &results {
            let bad = |reason| Error::BadResult {
                account: account.clone(),
                sequence: seq,
                index: r.index,
                reason,
            };
            if r.index >= record.line_count {
                return Err(bad("beyond the batch's lines"));
            }
            if !seen.insert(r.index) {
                return Err(bad("given twice"));
            }
            if let Some((key, _)) = r.fields.iter().find(|(k, _)| kvp_format::is_sensitive(k)) {
                return Err(Error::SensitiveField {
                    account: account.clone(),
                    sequence: seq,
                    index: r.index,
                    key: key.clone(),
                });
            }
        }
        record.state = BatchState::Collected;
        record.per_line_answer = Some(answer);
        record.transitions.push(Stamp {
            state: BatchState::Collected,
            at_unix_ms: now_ms(),
        });
        let key = codec::batch_key(account, seq);
        let encoded = codec::encode_batch(&record)?;
        let values: Vec<(Vec<u8>, Vec<u8>)> = results
            .iter()
            .map(|r| {
                (
                    codec::result_key(account, seq, r.index),
                    codec::encode_fields(&r.fields),
                )
            })
            .collect();
        (&self.batches, &self.open, &self.results)
            .transaction(|(bat, open, res)| {
                for (k, v) in &values {
                    res.insert(k.as_slice(), v.as_slice())?;
                }
                bat.insert(key.as_slice(), encoded.as_slice())?;
                open.insert(
                    key.as_slice(),
                    &[codec::encode_state(BatchState::Collected)][..],
                )?;
                Ok::<_, ConflictableTransactionError<Abort>>(())
            })
            .map_err(txn_error("store_results"))?;
        drop(guard);
        self.durable("results")?;
        tracing::debug!(%account, sequence = %seq, results = values.len(), "results stored");
        Ok(record)
    }

    /// Sets the operator's floor: the account's gateway has already seen numbers up to
    /// `floor`, so new numbers start above it. It never lowers the high-water mark (numbers
    /// already used stay used); setting a lower floor than before is allowed (a typo can be
    /// corrected). Flushed and fsynced before returning.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; storage and I/O errors.
    pub fn set_floor(&self, account: &AccountId, floor: SequenceNumber) -> Result<()> {
        let guard = self.writer("set a floor")?;
        self.accounts
            .transaction(|acc| {
                let info = match acc.get(account.as_str())? {
                    Some(v) => codec::decode_account(&v, account).or_else(abort)?,
                    None => AccountInfo::default(),
                };
                let info = AccountInfo {
                    floor: Some(floor),
                    ..info
                };
                acc.insert(account.as_str(), &codec::encode_account(&info)[..])?;
                Ok(())
            })
            .map_err(txn_error("set_floor"))?;
        drop(guard);
        self.durable("floor")?;
        tracing::info!(%account, %floor, "sequence floor set");
        Ok(())
    }
}

/// Copies a sled directory (files and `blobs/`), leaving out the lock file.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).map_err(Error::io(from))? {
        let entry = entry.map_err(Error::io(from))?;
        let name = entry.file_name();
        if name == LOCK_FILE {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let kind = entry.file_type().map_err(Error::io(&src))?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dst).map_err(Error::io(&dst))?;
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(Error::io(&src))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
