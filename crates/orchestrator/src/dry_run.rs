//! `--dry-run`: write the files a submit would put at each account's gateway into a local
//! folder (`DIR/ACCOUNT/…`, in the account's own protocol: Sola `Request/REQUEST_X.KVP` and
//! `Request/PROCESS_X.KVP`, APS `BATCH_REFERENCE.csv`), numbered from the ledger's next number,
//! reserving nothing and touching no drop or service. Card data and keys are masked unless
//! asked otherwise; every folder and file is owner-only.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use kvp_format::owner_only;
use sequence_ledger::AccountId;
use serde::Serialize;

use crate::driver::Orchestrator;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::planning::plan_with_ledger;
use gateway_protocol::{BatchLine, Masking};

/// One batch a dry run wrote.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunBatch {
    /// The account.
    pub account: String,
    /// The number it would get (if nothing else reserves one first).
    pub sequence: u32,
    /// Lines in it.
    pub lines: u64,
    /// The first file written: the REQUEST (Sola) or the batch file (APS).
    pub request: PathBuf,
    /// Every file written for the batch, in the order the gateway would get them.
    pub files: Vec<PathBuf>,
}

impl Orchestrator {
    /// Writes what [`Orchestrator::submit`] would upload for `job` under `dir`
    /// ([`gateway_protocol::Account::batch_files`] of each account), without reserving numbers
    /// or touching any drop or service. Transactions already bound in the ledger are left out
    /// (a real run would finish their batches, not create new ones).
    ///
    /// With [`Masking::Masked`] card numbers show first 6 / last 4 and CVV, track data,
    /// account and routing numbers and keys are `[REDACTED]`; with [`Masking::Unmasked`] the
    /// files are the exact bytes that would be uploaded and must be treated like the drop.
    /// Either way `dir` (when created here), every account folder under it and every file are
    /// owner-only (0700 / 0600).
    ///
    /// # Errors
    /// Missing secrets, ledger errors, [`Error::Io`].
    pub fn dry_run(&self, job: Arc<Job>, dir: &Path, masking: Masking) -> Result<Vec<DryRunBatch>> {
        owner_only::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let mut out = Vec::new();
        for (idx, positions) in job.positions_by_account().into_iter().enumerate() {
            let Some(name) = job.accounts().get(idx).cloned() else {
                continue;
            };
            if positions.is_empty() {
                continue;
            }
            let account = AccountId::new(name.as_str()).map_err(|source| Error::Ledger {
                account: name.clone(),
                source,
            })?;
            let max = self.settings.max_batch_lines(&name);
            let view = self
                .ledger
                .blocking_view(&account)
                .map_err(Error::ledger(&account))?;
            let plan =
                plan_with_ledger(view.as_ref(), &job, &name, &positions, max, self.rejected)?;
            let mut sequence = view.next_sequence().map_err(|source| Error::Ledger {
                account: name.clone(),
                source,
            })?;
            let root = dir.join(&name);
            owner_only::private_dir(&root).map_err(|e| Error::io(&root, e))?;
            let settings = self.settings.account(&name)?;
            for batch in &plan.fresh {
                let txs = job.batch(idx, batch)?;
                let mut lines = Vec::with_capacity(txs.len());
                for (i, tx) in txs.iter().enumerate() {
                    lines.push(BatchLine {
                        index: i as u64,
                        fields: tx?.fields,
                    });
                }
                let mut files = Vec::new();
                for file in settings.batch_files(sequence, &lines, masking)? {
                    let path = root.join(relative(&name, &file.path)?);
                    if let Some(parent) = path.parent() {
                        owner_only::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                    }
                    owner_only::write(&path, &file.bytes).map_err(|e| Error::io(&path, e))?;
                    files.push(path);
                }
                out.push(DryRunBatch {
                    account: name.clone(),
                    sequence: sequence.get(),
                    lines: batch.len() as u64,
                    request: files.first().cloned().unwrap_or_else(|| root.clone()),
                    files,
                });
                sequence = sequence.next().ok_or_else(|| Error::Ledger {
                    account: name.clone(),
                    source: sequence_ledger::Error::Exhausted {
                        account: account.clone(),
                        last: sequence,
                    },
                })?;
            }
        }
        Ok(out)
    }
}

/// A protocol's relative file path as a path under the account's folder: plain names only, so
/// a file can never land outside it.
fn relative(account: &str, path: &str) -> Result<PathBuf> {
    let rel = Path::new(path);
    if path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("dry run: account {account}'s protocol named a file outside its folder"),
            ),
        ));
    }
    Ok(rel.to_path_buf())
}
