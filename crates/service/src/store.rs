//! The data directory: accepted inputs, job records and results, owner-only.
//!
//! ```text
//! DATA_DIR/                 0700
//!   incoming/<random>/      a body being received (removed at start: never accepted)
//!   jobs/<id>/              one accepted job (0700)
//!     input                 the body as received (0600, fsynced before the job exists)
//!     job.json              its record (replaced atomically: temp + fsync + rename + fsync dir)
//!     results.kvp           the merged output once the run ended (results.csv/.jsonl on demand)
//! ```
//! A job exists once its folder is renamed from `incoming/` to `jobs/` and `jobs/` is fsynced:
//! the input and the first record are durable before that rename, so after any crash a job is
//! either whole or was never accepted (and never answered 202).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use kvp_format::owner_only;
use orchestrator::Format;

use crate::error::{Error, Result};
use crate::record::{JobId, JobRecord};

const RECORD: &str = "job.json";
const INPUT: &str = "input";

/// The data directory (blocking calls: run them off the async threads).
#[derive(Debug, Clone)]
pub struct JobStore {
    root: PathBuf,
}

/// A folder under `incoming/` receiving one body; [`JobStore::commit`] turns it into a job,
/// dropping it removes it.
#[derive(Debug)]
pub struct Incoming {
    dir: PathBuf,
    committed: bool,
}

impl Incoming {
    /// Where the body goes.
    pub fn input(&self) -> PathBuf {
        self.dir.join(INPUT)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl JobStore {
    /// Opens (creating) the data directory, owner-only, and removes bodies never accepted.
    ///
    /// # Errors
    /// [`Error::Io`] when a folder cannot be created or cleaned.
    pub fn open(root: &Path) -> Result<Self> {
        owner_only::private_dir(root).map_err(|e| Error::io(root, e))?;
        for sub in ["jobs", "incoming"] {
            let dir = root.join(sub);
            owner_only::private_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let incoming = root.join("incoming");
        for entry in std::fs::read_dir(&incoming).map_err(|e| Error::io(&incoming, e))? {
            let path = entry.map_err(|e| Error::io(&incoming, e))?.path();
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn job_dir(&self, id: &JobId) -> PathBuf {
        self.root.join("jobs").join(id.as_str())
    }

    /// A fresh folder for a body.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn incoming(&self) -> Result<Incoming> {
        let dir = self
            .root
            .join("incoming")
            .join(format!("{:016x}", fastrand::u64(..)));
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        std::fs::set_permissions(&dir, owner_only::dir_permissions())
            .map_err(|e| Error::io(&dir, e))?;
        Ok(Incoming {
            dir,
            committed: false,
        })
    }

    /// Makes a received body a job: fsyncs the input, writes the record, renames the folder
    /// into `jobs/` and fsyncs `jobs/`. Durable when this returns.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Record`].
    pub fn commit(&self, mut incoming: Incoming, record: &JobRecord) -> Result<()> {
        let input = incoming.input();
        File::open(&input)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&input, e))?;
        write_record(&incoming.dir, record)?;
        let target = self.job_dir(&record.id);
        std::fs::rename(&incoming.dir, &target).map_err(|e| Error::io(&target, e))?;
        incoming.committed = true;
        sync_dir(&self.root.join("jobs"))
    }

    /// Replaces a job's record atomically (temp, fsync, rename, fsync of the folder).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Record`].
    pub fn save(&self, record: &JobRecord) -> Result<()> {
        write_record(&self.job_dir(&record.id), record)
    }

    /// Every job's record, oldest first.
    ///
    /// # Errors
    /// [`Error::Io`] reading the folder; [`Error::Record`] for a record that does not parse.
    pub fn load_all(&self) -> Result<Vec<JobRecord>> {
        let jobs = self.root.join("jobs");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&jobs).map_err(|e| Error::io(&jobs, e))? {
            let dir = entry.map_err(|e| Error::io(&jobs, e))?.path();
            let path = dir.join(RECORD);
            let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let record: JobRecord =
                serde_json::from_slice(&text).map_err(|source| Error::Record { path, source })?;
            out.push(record);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The job's input.
    pub fn input(&self, id: &JobId) -> PathBuf {
        self.job_dir(id).join(INPUT)
    }

    /// The job's merged results in `format` (written by the run in KVP; the others converted
    /// from it on demand by [`JobStore::results_in`]).
    pub fn results(&self, id: &JobId, format: Format) -> PathBuf {
        self.job_dir(id)
            .join(format!("results.{}", format.extension()))
    }

    /// Removes a job's results before it runs again (the run writes them anew).
    ///
    /// # Errors
    /// [`Error::Io`] other than "not there".
    pub fn clear_results(&self, id: &JobId) -> Result<()> {
        for format in [Format::Kvp, Format::Csv, Format::Jsonl] {
            let path = self.results(id, format);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(())
    }

    /// The results in `format`, converting the run's KVP output once (records and fields in
    /// the same order, CSV with the same columns as `submit --output x.csv`); `None` when the
    /// run wrote none. `lead` are the ref and account field names (the first CSV columns).
    ///
    /// # Errors
    /// [`Error::Engine`] reading or writing a results file.
    pub fn results_in(
        &self,
        id: &JobId,
        format: Format,
        lead: [&str; 2],
    ) -> Result<Option<PathBuf>> {
        let kvp = self.results(id, Format::Kvp);
        if !kvp.is_file() {
            return Ok(None);
        }
        let target = self.results(id, format);
        if target.is_file() {
            return Ok(Some(target));
        }
        let mut reader = orchestrator::InputReader::open(&kvp, Some(Format::Kvp))?;
        let mut writer = orchestrator::OutputWriter::create(&target, format, &lead)?;
        let mut rec = orchestrator::InputRecord::default();
        while orchestrator::RecordSource::read_record(&mut reader, &mut rec)? {
            writer.write(&rec.fields)?;
        }
        Ok(Some(writer.finish()?))
    }
}

fn write_record(dir: &Path, record: &JobRecord) -> Result<()> {
    let path = dir.join(RECORD);
    let tmp = dir.join(format!("{RECORD}.tmp"));
    let text = serde_json::to_vec_pretty(record).map_err(|source| Error::Record {
        path: path.clone(),
        source,
    })?;
    let mut file = owner_only::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::record::JobState;

    fn record(id: JobId) -> JobRecord {
        JobRecord {
            id,
            state: JobState::Accepted,
            created: "2026-01-01T00:00:00Z".into(),
            finished: None,
            format: "kvp".into(),
            transactions: 1,
            bytes: 4,
            body_sha256: "00".into(),
            idempotency_key: None,
            totals: Default::default(),
            accounts: Vec::new(),
            error: None,
            results: false,
            runs: 0,
        }
    }

    #[test]
    fn a_job_exists_once_committed_and_unaccepted_bodies_go() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let store = JobStore::open(&root).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);

        let abandoned = store.incoming().unwrap();
        std::fs::write(abandoned.input(), "half").unwrap();
        std::mem::forget(abandoned); // a crash: nothing removes it
        let incoming = store.incoming().unwrap();
        owner_only::write(&incoming.input(), "a=b\n").unwrap();
        let id = JobId::new(std::time::SystemTime::now());
        let mut rec = record(id.clone());
        store.commit(incoming, &rec).unwrap();
        assert_eq!(store.load_all().unwrap(), [rec.clone()]);
        assert_eq!(std::fs::read(store.input(&id)).unwrap(), b"a=b\n");
        assert_eq!(mode(&store.input(&id)), 0o600);
        assert_eq!(
            mode(&root.join("jobs").join(id.as_str()).join(RECORD)),
            0o600
        );

        rec.state = JobState::Complete;
        store.save(&rec).unwrap();
        let reopened = JobStore::open(&root).unwrap();
        assert_eq!(reopened.load_all().unwrap(), [rec]);
        assert_eq!(std::fs::read_dir(root.join("incoming")).unwrap().count(), 0);

        let dropped = reopened.incoming().unwrap();
        drop(dropped);
        assert_eq!(std::fs::read_dir(root.join("incoming")).unwrap().count(), 0);
    }
}
