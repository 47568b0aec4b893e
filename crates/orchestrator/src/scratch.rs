//! Scratch folders for a job's spill files, and removing the ones a killed process left.
//!
//! A job spills its validated input (`paybatch-job-*`) and, while merging, its results
//! (`paybatch-results-*`) into owner-only folders under the system's temporary directory
//! (`TMPDIR`). They hold whole transactions, card numbers included, so they must not outlive
//! the process. A normal end, an error or Ctrl-C removes them; a SIGKILL, an OOM kill or a
//! power cut cannot. So each folder holds `owner.lock`, locked (`flock`) by the process that
//! made it for as long as it lives — the kernel lets go of the lock when the process dies,
//! however it dies — and each new scratch folder, once made and locked, removes its siblings
//! whose lock is free: their process is gone, and so is any use for their contents.
//!
//! A sibling is removed only when all of these hold, so a live job's folder is never touched:
//! its name starts with one of our prefixes; it is a folder (not a link) of this user's, mode
//! 0700, as ours are; it is not one of this process's own (a lock on a network file system may
//! be per process); it holds `owner.lock` and that lock is free; and the folder has not changed
//! for [`ABANDONED_AFTER`] (a folder is made, then locked; a new folder whose lock is already
//! gone fails its job instead of running unlocked).
//! Folders without `owner.lock` (made by versions before this one) are left alone: without a
//! lock there is no telling whether their process still runs.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// The names our scratch folders start with.
pub(crate) const PREFIXES: [&str; 2] = ["paybatch-job-", "paybatch-results-"];

/// The lock file inside a scratch folder.
const LOCK: &str = "owner.lock";

/// How long a folder must have been unchanged before it can count as abandoned.
pub(crate) const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// This process's own scratch folders, never taken for abandoned ones.
static OURS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn ours() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    OURS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An owner-only scratch folder under `TMPDIR`, locked while this value lives and removed
/// when it is dropped.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
    /// Taken in `drop`: the folder is removed while it is still locked and still ours.
    dir: Option<tempfile::TempDir>,
    lock: Option<File>,
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        drop(self.dir.take());
        drop(self.lock.take());
        ours().remove(&self.path);
    }
}

/// The system's temporary directory, absolute (a relative `TMPDIR` would make the folders'
/// paths and the sweep's listing disagree).
fn temp_parent() -> PathBuf {
    let tmp = std::env::temp_dir();
    std::path::absolute(&tmp).unwrap_or(tmp)
}

impl ScratchDir {
    /// A new scratch folder named `prefix…` (one of [`PREFIXES`]) in the system's temporary
    /// directory; then the abandoned ones there are removed (best effort: a failure to remove
    /// one is logged, not returned).
    ///
    /// # Errors
    /// [`Error::Io`] when the folder or its lock cannot be made.
    pub(crate) fn create(prefix: &str) -> Result<ScratchDir> {
        let parent = temp_parent();
        let scratch = ScratchDir::create_in(&parent, prefix)?;
        let removed = remove_abandoned(&parent, scratch.path(), SystemTime::now());
        if removed > 0 {
            tracing::info!(
                folder = %parent.display(),
                removed,
                "removed scratch folders left by paybatch processes that were killed"
            );
        }
        Ok(scratch)
    }

    /// A new locked scratch folder in `parent` (no sweep).
    fn create_in(parent: &Path, prefix: &str) -> Result<ScratchDir> {
        let parent = parent.to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(kvp_format::owner_only::dir_permissions())
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        let path = dir.path().join(LOCK);
        let mut lock =
            kvp_format::owner_only::create_new(&path).map_err(|e| Error::io(&path, e))?;
        lock.try_lock().map_err(|e| {
            Error::io(
                &path,
                match e {
                    TryLockError::Error(e) => e,
                    TryLockError::WouldBlock => std::io::Error::other("locked by another process"),
                },
            )
        })?;
        // The folder could have been taken for abandoned between its making and its locking
        // (a process stopped for over a minute there): then the lock is on a removed file.
        let still_ours = std::fs::metadata(&path)
            .ok()
            .zip(lock.metadata().ok())
            .is_some_and(|(named, held)| named.ino() == held.ino() && named.dev() == held.dev());
        if !still_ours {
            return Err(Error::io(
                &path,
                std::io::Error::other("the scratch folder was removed while it was being made"),
            ));
        }
        // For a person looking at the folder; the lock, not this, decides.
        writeln!(lock, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
        let path = dir.path().to_path_buf();
        ours().insert(path.clone());
        Ok(ScratchDir {
            path,
            dir: Some(dir),
            lock: Some(lock),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the abandoned scratch folders in `parent` (see the module docs) as of `now`, and
/// returns how many. `mine` is a scratch folder this process just made: only folders of its
/// owner are candidates.
pub(crate) fn remove_abandoned(parent: &Path, mine: &Path, now: SystemTime) -> usize {
    let Ok(uid) = std::fs::metadata(mine).map(|m| m.uid()) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = entry.path();
        let own = ours().contains(&path);
        if !own && abandoned(&path, uid, now) {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(folder = %path.display(), error = %e, "cannot remove an abandoned scratch folder");
                }
            }
        }
    }
    removed
}

/// Whether `path` is a scratch folder of user `uid` whose process is gone.
fn abandoned(path: &Path, uid: u32, now: SystemTime) -> bool {
    // symlink_metadata: a link named like ours is not ours to follow.
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let quiet = meta
        .modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age >= ABANDONED_AFTER);
    let like_ours =
        meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o777 == 0o700;
    if !like_ours || !quiet {
        return false;
    }
    let lock = PathBuf::from(path).join(LOCK);
    // Read access is enough for flock. A missing lock file means "cannot tell".
    let Ok(file) = OpenOptions::new().read(true).open(&lock) else {
        return false;
    };
    // Taken here, the lock is dropped with `file` right after: the folder is removed either
    // way, and no live process can take it (it is not theirs).
    file.try_lock().is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A folder `name` in `parent` as a process would leave it: `owner.lock` (held by the
    /// returned file when `held`) and a spill file with a card number in it.
    fn left(parent: &Path, name: &str, lock: Option<bool>) -> (PathBuf, Option<File>) {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join("input.spill"), "xCardNum=4111111111111111").unwrap();
        let holder = lock.and_then(|held| {
            let f = File::create(dir.join(LOCK)).unwrap();
            held.then(|| {
                f.try_lock().unwrap();
                f
            })
        });
        (dir, holder)
    }

    #[test]
    fn only_folders_whose_process_is_gone_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        let (dead_job, _) = left(p, "paybatch-job-dead", Some(false));
        let (dead_results, _) = left(p, "paybatch-results-dead", Some(false));
        let (live, _holder) = left(p, "paybatch-job-live", Some(true));
        let (legacy, _) = left(p, "paybatch-job-legacy", None);
        let (other, _) = left(p, "someone-elses-dead", Some(false));
        let (open, _) = left(p, "paybatch-job-open-to-all", Some(false));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&dead_job, p.join("paybatch-job-link")).unwrap();
        let mine = ScratchDir::create_in(p, "paybatch-job-").unwrap();

        // Nothing has been quiet long enough yet.
        assert_eq!(remove_abandoned(p, mine.path(), SystemTime::now()), 0);
        let later = SystemTime::now() + ABANDONED_AFTER + Duration::from_secs(1);
        assert_eq!(remove_abandoned(p, mine.path(), later), 2);
        assert!(!dead_job.exists());
        assert!(!dead_results.exists());
        assert!(mine.path().join(LOCK).exists(), "this process's own folder");
        for kept in [&live, &legacy, &other, &open] {
            assert!(kept.join("input.spill").exists(), "{}", kept.display());
        }
        // The dangling link stays: it is not a folder of ours.
        assert!(std::fs::symlink_metadata(p.join("paybatch-job-link")).is_ok());
    }

    #[test]
    fn a_scratch_folder_is_locked_while_it_lives_and_gone_after() {
        let tmp = tempfile::tempdir().unwrap();
        let scratch = ScratchDir::create_in(tmp.path(), "paybatch-job-").unwrap();
        let path = scratch.path().to_path_buf();
        let uid = std::fs::metadata(&path).unwrap().uid();
        let later = SystemTime::now() + ABANDONED_AFTER + Duration::from_secs(1);
        assert!(!abandoned(&path, uid, later), "held by this value");
        assert!(ours().contains(&path));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(scratch);
        assert!(!path.exists());
        assert!(!ours().contains(&path));
    }
}
