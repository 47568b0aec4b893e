//! The ledger itself: opening (and migrating), the durable point of every write, the lock.
//! The writes are in `reserve.rs`, `transition.rs`, `answer.rs` and `prune.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvp_format::owner_only;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::codec::{FORMAT_KEY, FORMAT_VERSION};
use crate::crash::crash_point;
use crate::durable::{Durability, LOCK_FILE, LockFile, LockMode, Syncer, TRANSIENT_LOCK_WAIT};
use crate::error::{Error, Result};
use crate::index::RefIndex;

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
    /// Bytes the idempotency index may keep of accounts no one is working on (default
    /// [`LedgerOptions::DEFAULT_INDEX_BUDGET`]). An account's index (about 48 bytes per
    /// reference it ever bound) is built from its batches the first time it is asked about;
    /// when the whole index is over this budget, an account's index is dropped as it goes idle
    /// (its lease given back), and built again if the account comes back. A million references
    /// would otherwise stay resident.
    pub index_budget: usize,
}

impl LedgerOptions {
    /// 16 MiB.
    pub const DEFAULT_CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

    /// 4 MiB: about 90,000 references of accounts no one is working on.
    pub const DEFAULT_INDEX_BUDGET: usize = 4 * 1024 * 1024;

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

    /// These options with the index of idle accounts kept up to `bytes`.
    #[must_use]
    pub fn index_budget(mut self, bytes: usize) -> Self {
        self.index_budget = bytes;
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
            index_budget: LedgerOptions::DEFAULT_INDEX_BUDGET,
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

/// Whether a write is durable when the call returns, or with the next durable write.
///
/// Every step of a batch that must survive a crash before the caller acts on it is durable
/// whatever is asked (see the crate README, "Which steps need an fsync"). The others can be
/// repeated after a crash and may be recorded [`Commit::Deferred`]: written to the database
/// but not flushed, so they cost no fsync of their own. A deferred step becomes durable with
/// the next durable write of any account (sled's log is written in order: a flush covers every
/// earlier write), with [`Ledger::sync`], or when the ledger is dropped; after a crash it may
/// be lost, and then so is every write after it — never an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Commit {
    /// Flushed and fsynced before the call returns.
    #[default]
    Durable,
    /// Durable with the next durable write, where the step allows it
    /// ([`crate::Transition::can_defer`]).
    Deferred,
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
    /// Per batch: its lines' references and content digests (`refs.rs`).
    pub(crate) batch_refs: sled::Tree,
    /// Per collected batch: its results (`results.rs`).
    pub(crate) batch_results: sled::Tree,
    /// The idempotency index, built from `batch_refs` (`index.rs`).
    pub(crate) index: RefIndex,
    access: Access,
    /// Serialises writers inside this process: checks that span several keys (the trigger
    /// order) are made under it. sled's flush happens after it is released, so concurrent
    /// writers share flushes.
    pub(crate) write: Mutex<()>,
    /// Group commit: writes committed so far (counted after their sled transaction).
    commits: AtomicU64,
    /// Group commit: the commit count the last completed flush + fsync covered. Held while
    /// flushing, so a writer that waited for it may find its write already durable.
    synced: Mutex<u64>,
}

pub(crate) enum Abort {
    LostRace(kvp_format::SequenceNumber),
    Failed(Error),
}

impl From<Error> for Abort {
    fn from(e: Error) -> Self {
        Abort::Failed(e)
    }
}

pub(crate) fn abort<T>(
    a: impl Into<Abort>,
) -> std::result::Result<T, ConflictableTransactionError<Abort>> {
    Err(ConflictableTransactionError::Abort(a.into()))
}

pub(crate) fn txn_error(context: &'static str) -> impl FnOnce(TransactionError<Abort>) -> Error {
    move |e| match e {
        TransactionError::Abort(Abort::Failed(e)) => e,
        TransactionError::Abort(_) => Error::Corrupt {
            what: context.to_string(),
            detail: "unexpected abort".to_string(),
        },
        TransactionError::Storage(source) => Error::Storage { context, source },
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Ledger {
    /// Opens (creating if missing) the ledger directory at `path` for reading and writing, with
    /// fsync durability. The directory is made owner-only (0700, and 0600 for the files in it,
    /// whatever the umask): it holds transaction data. A ledger of format version 1 is
    /// migrated to this layout first (durably, safe to interrupt: the next open finishes it).
    /// The reference index of an account is loaded the first time the account is asked about.
    ///
    /// # Errors
    /// [`Error::InUse`] when another process (or another `Ledger` in this one) has it open;
    /// [`Error::UnsupportedFormat`] for a ledger of a later layout version; [`Error::Corrupt`]
    /// for data a migration cannot read; [`Error::Io`] / [`Error::Storage`] for filesystem
    /// trouble.
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
            options.index_budget,
        )?;
        ledger.init_format()?;
        tracing::debug!(path = %ledger.path.display(), "ledger opened");
        Ok(ledger)
    }

    /// Opens the ledger at `path` without changing any of its files: it takes a shared lock
    /// (so no writer is mid-way), copies the database to a private temporary directory, lets
    /// the lock go and opens the copy (migrating the copy, not the ledger, when it is of format
    /// version 1). Every mutating method then fails with [`Error::ReadOnly`]. The copy is
    /// removed when the `Ledger` is dropped.
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
        let ledger = Ledger::from_db(
            path,
            db,
            Access::ReadOnly { _copy: copy },
            LedgerOptions::DEFAULT_INDEX_BUDGET,
        )?;
        // A ledger of an older layout is migrated in the private copy: the original is left
        // as it is, for the next read-write open to migrate.
        ledger.init_format()?;
        Ok(ledger)
    }

    fn from_db(path: PathBuf, db: sled::Db, access: Access, index_budget: usize) -> Result<Ledger> {
        let tree = |name: &str| db.open_tree(name).map_err(Error::storage("opening a tree"));
        Ok(Ledger {
            accounts: tree("accounts")?,
            batches: tree("batches")?,
            open: tree("open")?,
            batch_refs: tree("batch_refs")?,
            batch_results: tree("batch_results")?,
            index: RefIndex::new(index_budget),
            db,
            path,
            access,
            write: Mutex::new(()),
            commits: AtomicU64::new(0),
            synced: Mutex::new(0),
        })
    }

    pub(crate) fn meta(&self) -> Result<sled::Tree> {
        self.db
            .open_tree("meta")
            .map_err(Error::storage("opening a tree"))
    }

    /// Returns the stored version, if any, after checking it is one this code reads: its own
    /// or one it migrates from.
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
        if found != FORMAT_VERSION && !crate::migrate::FROM.contains(&found) {
            return Err(Error::UnsupportedFormat {
                path: self.path.clone(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        Ok(Some(found))
    }

    /// Writes the version of a new ledger, migrates an older layout, or finishes a migration
    /// a crash interrupted.
    fn init_format(&self) -> Result<()> {
        match self.check_format()? {
            Some(FORMAT_VERSION) => return self.finish_migration(),
            Some(old) => return self.migrate(old),
            None => {}
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

    pub(crate) fn writer(&self, operation: &'static str) -> Result<MutexGuard<'_, ()>> {
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
    pub(crate) fn durable(&self, op: &'static str) -> Result<()> {
        let mine = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let (after_write, after_flush) = match op {
            "reserve" => ("reserve.after_write", "reserve.after_flush"),
            "transition" => ("transition.after_write", "transition.after_flush"),
            "results" => ("results.after_write", "results.after_flush"),
            "floor" => ("floor.after_write", "floor.after_flush"),
            "prune" => ("prune.after_write", "prune.after_flush"),
            _ => ("open.after_write", "open.after_flush"),
        };
        crash_point(after_write);
        self.flush_upto(mine)?;
        crash_point(after_flush);
        Ok(())
    }

    /// The end of a write that may wait for the next durable one (crash point
    /// `deferred.after_write`): counted, so that [`Ledger::sync`] and the next flush know it
    /// is there, but not flushed.
    pub(crate) fn deferred(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
        crash_point("deferred.after_write");
    }

    /// The end of a write committed as `commit` asks, when the step is `deferrable`.
    pub(crate) fn committed(
        &self,
        op: &'static str,
        deferrable: bool,
        commit: Commit,
    ) -> Result<()> {
        if commit == Commit::Deferred && deferrable {
            self.deferred();
            Ok(())
        } else {
            self.durable(op)
        }
    }

    /// Flushes and fsyncs unless a completed flush already covered commit number `mine`.
    fn flush_upto(&self, mine: u64) -> Result<()> {
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
        Ok(())
    }

    /// Makes every write so far durable, deferred ones included ([`Commit::Deferred`]):
    /// flushed and fsynced before returning. Nothing to do (and no fsync) when every write is
    /// durable already. Also done when the ledger is dropped.
    ///
    /// # Errors
    /// Storage and I/O errors of the flush.
    pub fn sync(&self) -> Result<()> {
        if let Access::ReadOnly { .. } = self.access {
            return Ok(());
        }
        self.flush_upto(self.commits.load(Ordering::SeqCst))
    }

    /// Whether some write is not durable yet (a deferred step since the last flush).
    pub fn has_deferred_writes(&self) -> bool {
        let synced = *self
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        synced < self.commits.load(Ordering::SeqCst)
    }
}

impl Drop for Ledger {
    /// Deferred steps become durable: a process that ends normally loses none.
    fn drop(&mut self) {
        if self.has_deferred_writes()
            && let Err(e) = self.sync()
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not make deferred ledger writes durable");
        }
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
mod format2_tests;
#[cfg(test)]
mod tests;
