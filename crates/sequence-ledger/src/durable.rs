//! Making sled's writes survive a power cut, and keeping other processes out.
//!
//! sled 0.34's `flush()` writes its log buffers with `pwrite` and then calls
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on the written range (its source:
//! `pagecache/iobuf.rs`; strace shows no `fsync`). `sync_file_range` pushes the data pages to
//! the device but flushes neither the file's metadata (its size, its block map: a log that grew
//! is unreadable past the old size) nor the device's volatile write cache. After a killed
//! process the page cache still holds everything, so `flush()` alone is enough for
//! `kill -9`; after a power cut it is not. sled also writes blob files (`blobs/<lsn>`, for
//! values too large for a log segment) without any sync, and renames snapshot files
//! (`snap.*`) without syncing the directory.
//!
//! So after every flush [`Syncer::sync`] calls `fdatasync` on `db` (the log; fdatasync also
//! writes the size change and issues a cache flush to the device), `fsync`s each blob file it
//! has not synced before and the `blobs/` directory, and `fsync`s the ledger directory when its
//! entries changed (snapshot renames, new blob directory). On Linux an fsync through our own read-only descriptor writes
//! back every dirty page of the file, whichever descriptor wrote it: the page cache and the
//! inode are shared. The cost is measured in the crate README.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Whether each durable point ends with fsyncs or only with sled's own flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// sled `flush()` then fsync of the log, new blob files and the directories: survives a
    /// power cut (on a device that honours cache flushes). The default.
    #[default]
    Fsync,
    /// sled `flush()` only: survives a killed process, not a power cut. For benchmarks and
    /// tests that measure the difference.
    FlushOnly,
}

/// The name of the lock file inside the ledger directory.
pub(crate) const LOCK_FILE: &str = "paybatch-ledger.lock";

/// Who holds the ledger: an exclusive lock (`flock`) on the lock file, with the holder's pid
/// written in it. The kernel drops the lock when the process dies, so a crash never leaves a
/// stale lock behind; the pid in the file is for the error message, and for telling a
/// transient holder from a real one (see [`LockFile::acquire`]).
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
    /// This lock's entry in [`HELD_HERE`].
    key: PathBuf,
}

/// How long [`LockFile::acquire`] (and the ledger's sled open) wait out a transient holder.
pub(crate) const TRANSIENT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Ledger directories this process holds a [`LockFile`] on right now, with how many.
static HELD_HERE: Mutex<Vec<(PathBuf, usize)>> = Mutex::new(Vec::new());

fn held_here() -> std::sync::MutexGuard<'static, Vec<(PathBuf, usize)>> {
    HELD_HERE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let mut held = held_here();
        if let Some(i) = held.iter().position(|(k, _)| *k == self.key) {
            held[i].1 -= 1;
            if held[i].1 == 0 {
                held.swap_remove(i);
            }
        }
    }
}

/// How a lock is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Exclusive; writes our pid into the file.
    Exclusive,
    /// Shared (readers); writes nothing, so a read-only open changes no file.
    Shared,
}

impl LockFile {
    /// Takes the lock, or fails with [`Error::InUse`] naming the holder's pid.
    ///
    /// A `flock` belongs to an open file description, and a child process forked by any thread
    /// of this one shares every description until it `exec`s: for that moment a lock this
    /// process has already let go of (a dropped ledger, sled's lingering threads) still looks
    /// held. So when the lock file names this very process as the holder and this process
    /// holds no lock on the directory, the holder is such a moment: retry for up to
    /// [`TRANSIENT_LOCK_WAIT`]. A lock held by another process, or really held here, fails at
    /// once.
    pub(crate) fn acquire(dir: &Path, mode: LockMode) -> Result<LockFile> {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let deadline = Instant::now() + TRANSIENT_LOCK_WAIT;
        let path = dir.join(LOCK_FILE);
        let mut file = match mode {
            // No truncate before the lock is ours: the pid of the holder must stay readable.
            LockMode::Exclusive => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path),
            LockMode::Shared => File::open(&path),
        }
        .map_err(Error::io(&path))?;
        loop {
            let locked = match mode {
                LockMode::Exclusive => file.try_lock(),
                LockMode::Shared => file.try_lock_shared(),
            };
            match locked {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    // Best effort: a reader holding a shared lock wrote nothing.
                    let pid: Option<u32> = file
                        .seek(SeekFrom::Start(0))
                        .and_then(|_| file.read_to_string(&mut text))
                        .ok()
                        .and_then(|_| text.trim().parse().ok());
                    let transient = pid == Some(std::process::id())
                        && !held_here().iter().any(|(k, _)| *k == key);
                    if transient && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    return Err(Error::InUse {
                        path: dir.to_path_buf(),
                        pid,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path)(e)),
            }
        }
        if mode == LockMode::Exclusive {
            let pid = std::process::id().to_string();
            let mut write = || -> std::io::Result<()> {
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                file.write_all(pid.as_bytes())?;
                file.sync_data()
            };
            write().map_err(Error::io(&path))?;
        }
        let mut held = held_here();
        match held.iter_mut().find(|(k, _)| *k == key) {
            Some((_, count)) => *count += 1,
            None => held.push((key.clone(), 1)),
        }
        drop(held);
        Ok(LockFile { _file: file, key })
    }
}

/// fsyncs what sled's flush leaves in volatile caches (see the module docs).
#[derive(Debug)]
pub(crate) struct Syncer {
    dir: PathBuf,
    log: File,
    dir_handle: File,
    /// Blob files already fsynced (blobs are written once and never modified).
    synced_blobs: Mutex<HashSet<OsString>>,
    /// The ledger directory's entries when it was last fsynced.
    synced_entries: Mutex<Vec<OsString>>,
}

impl Syncer {
    pub(crate) fn new(dir: &Path) -> Result<Syncer> {
        let log_path = dir.join("db");
        let log = File::open(&log_path).map_err(Error::io(&log_path))?;
        let dir_handle = File::open(dir).map_err(Error::io(dir))?;
        let syncer = Syncer {
            dir: dir.to_path_buf(),
            log,
            dir_handle,
            synced_blobs: Mutex::new(HashSet::new()),
            synced_entries: Mutex::new(Vec::new()),
        };
        // sled wrote `conf` and maybe a snapshot while opening.
        let conf = dir.join("conf");
        if conf.exists() {
            File::open(&conf)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(&conf))?;
        }
        syncer.sync()?;
        Ok(syncer)
    }

    /// Makes everything sled has flushed so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.log
            .sync_data()
            .map_err(Error::io(self.dir.join("db")))?;
        let entries = self.sync_dir()?;
        if entries.iter().any(|e| e == "blobs") {
            self.sync_blobs()?;
        }
        Ok(())
    }

    /// fsyncs the ledger directory when its entries changed since the last fsync (a snapshot
    /// renamed into place, the blob directory created). Listing it costs ~10 µs, an fsync of a
    /// directory ~200 µs on this machine, and sled changes it rarely (a snapshot every million
    /// operations). Returns the current entries.
    fn sync_dir(&self) -> Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(Error::io(&self.dir))? {
            names.push(entry.map_err(Error::io(&self.dir))?.file_name());
        }
        names.sort_unstable();
        let mut synced = self
            .synced_entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *synced != names {
            self.dir_handle.sync_all().map_err(Error::io(&self.dir))?;
            synced.clone_from(&names);
        }
        Ok(names)
    }

    fn sync_blobs(&self) -> Result<()> {
        let blobs = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&blobs)(e)),
        };
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut present = HashSet::new();
        let mut new = 0usize;
        for entry in entries {
            let entry = entry.map_err(Error::io(&blobs))?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                let path = entry.path();
                match File::open(&path).and_then(|f| f.sync_all()) {
                    Ok(()) => new += 1,
                    // sled garbage-collects blobs concurrently; a vanished one needs no sync.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(path)(e)),
                }
            }
            present.insert(name);
        }
        *synced = present;
        if new > 0 {
            File::open(&blobs)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(&blobs))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_exclusive_lock_names_the_holder_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _held = LockFile::acquire(dir.path(), LockMode::Exclusive).unwrap();
        let err = LockFile::acquire(dir.path(), LockMode::Exclusive).unwrap_err();
        match err {
            Error::InUse { pid, .. } => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            LockFile::acquire(dir.path(), LockMode::Shared),
            Err(Error::InUse { .. })
        ));
    }

    #[test]
    fn shared_locks_coexist_and_keep_writers_out() {
        let dir = tempfile::tempdir().unwrap();
        drop(LockFile::acquire(dir.path(), LockMode::Exclusive).unwrap());
        let before = std::fs::read(dir.path().join(LOCK_FILE)).unwrap();
        let a = LockFile::acquire(dir.path(), LockMode::Shared).unwrap();
        let _b = LockFile::acquire(dir.path(), LockMode::Shared).unwrap();
        assert!(matches!(
            LockFile::acquire(dir.path(), LockMode::Exclusive),
            Err(Error::InUse { .. })
        ));
        drop(a);
        assert_eq!(std::fs::read(dir.path().join(LOCK_FILE)).unwrap(), before);
    }

    /// A description of the lock file that still holds the lock after this process let go,
    /// as a child forked by another thread holds it until it `exec`s: waited out, not InUse.
    #[test]
    fn a_transient_holder_in_this_process_is_waited_out() {
        let dir = tempfile::tempdir().unwrap();
        drop(LockFile::acquire(dir.path(), LockMode::Exclusive).unwrap());
        let stray = File::open(dir.path().join(LOCK_FILE)).unwrap();
        stray.try_lock().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(stray);
        });
        let lock = LockFile::acquire(dir.path(), LockMode::Exclusive);
        release.join().unwrap();
        let _held = lock.unwrap();
        // Held for real here: at once InUse, however long the wait could be.
        let again = LockFile::acquire(dir.path(), LockMode::Exclusive);
        assert!(matches!(again, Err(Error::InUse { .. })), "{again:?}");
    }

    #[test]
    fn a_dropped_lock_is_free_again() {
        let dir = tempfile::tempdir().unwrap();
        drop(LockFile::acquire(dir.path(), LockMode::Exclusive).unwrap());
        LockFile::acquire(dir.path(), LockMode::Exclusive).unwrap();
    }

    #[test]
    fn the_syncer_tracks_new_directory_entries_and_blobs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"log").unwrap();
        let syncer = Syncer::new(dir.path()).unwrap();
        let entries = |s: &Syncer| s.synced_entries.lock().unwrap().clone();
        assert_eq!(entries(&syncer), [OsString::from("db")]);
        std::fs::write(dir.path().join("snap.0001"), b"snapshot").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join("blobs").join("77"), b"blob").unwrap();
        syncer.sync().unwrap();
        assert_eq!(
            entries(&syncer),
            ["blobs", "db", "snap.0001"].map(OsString::from)
        );
        let blobs = syncer.synced_blobs.lock().unwrap().clone();
        assert_eq!(blobs, HashSet::from([OsString::from("77")]));
        std::fs::remove_file(dir.path().join("blobs").join("77")).unwrap();
        syncer.sync().unwrap();
        assert!(
            syncer.synced_blobs.lock().unwrap().is_empty(),
            "collected blobs are forgotten"
        );
    }

    #[test]
    fn shared_lock_without_a_lock_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            LockFile::acquire(dir.path(), LockMode::Shared),
            Err(Error::Io { .. })
        ));
    }
}
