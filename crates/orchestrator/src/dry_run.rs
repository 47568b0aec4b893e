//! `--dry-run`: write the exact REQUEST/PROCESS files a submit would upload into a local
//! folder (`DIR/ACCOUNT/Request/…`), numbered from the ledger's next number, reserving nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sequence_ledger::AccountId;
use serde::Serialize;

use crate::driver::{Orchestrator, plan_with_ledger};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::protocol::{GatewayProtocol, RequestLine};
use crate::sola::SolaFileDrop;

/// One batch a dry run wrote.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunBatch {
    /// The account.
    pub account: String,
    /// The number it would get (if nothing else reserves one first).
    pub sequence: u32,
    /// Lines in it.
    pub lines: u64,
    /// The REQUEST file written.
    pub request: PathBuf,
}

impl Orchestrator {
    /// Writes what [`Orchestrator::submit`] would upload for `job` under `dir`, without
    /// reserving numbers or touching any drop. Transactions already bound in the ledger are
    /// left out (a real run would finish their batches, not create new ones).
    ///
    /// The files contain the real keys and card numbers, exactly as they would be uploaded:
    /// they are written owner-only where the filesystem allows.
    ///
    /// # Errors
    /// Missing secrets, ledger errors, [`Error::Io`].
    pub async fn dry_run(&self, job: Arc<Job>, dir: &Path) -> Result<Vec<DryRunBatch>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
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
            let plan = plan_with_ledger(
                &self.ledger,
                &job,
                &account,
                &name,
                &positions,
                max,
                self.rejected,
            )
            .map_err(|e| *e)?;
            let mut sequence =
                self.ledger
                    .next_sequence(&account)
                    .map_err(|source| Error::Ledger {
                        account: name.clone(),
                        source,
                    })?;
            let settings = self.settings.account(&name)?;
            let root = dir.join(&name);
            std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
            let location = storage_backends::Location::parse(&format!("file://{}", root.display()))
                .map_err(|e| Error::setting("dry-run", e.to_string()))?;
            let backend =
                storage_backends::open(&location, &storage_backends::BackendOptions::default())
                    .await
                    .map_err(|source| Error::Storage {
                        account: name.clone(),
                        path: String::new(),
                        source,
                    })?;
            let sola = SolaFileDrop::new(
                &name,
                backend.clone(),
                settings.batch_key(&name)?,
                settings.merchant_key(&name)?,
                &self.settings.gateway,
            );
            for batch in &plan.fresh {
                let mut txs = Vec::with_capacity(batch.len());
                for &pos in batch {
                    txs.push(job.transaction(pos as usize)?);
                }
                let lines: Vec<RequestLine<'_>> = txs
                    .iter()
                    .enumerate()
                    .map(|(i, t)| RequestLine {
                        index: i as u64,
                        fields: &t.fields,
                    })
                    .collect();
                let payload = sola.encode_request(sequence, &lines)?;
                let request =
                    kvp_format::FileName::new(kvp_format::FileKind::Request, sequence).path();
                let process =
                    kvp_format::FileName::new(kvp_format::FileKind::Process, sequence).path();
                backend
                    .put(&request, payload)
                    .await
                    .map_err(|source| Error::Storage {
                        account: name.clone(),
                        path: request.clone(),
                        source,
                    })?;
                backend
                    .put(&process, sola.encode_process(sequence, batch.len() as u64))
                    .await
                    .map_err(|source| Error::Storage {
                        account: name.clone(),
                        path: process.clone(),
                        source,
                    })?;
                out.push(DryRunBatch {
                    account: name.clone(),
                    sequence: sequence.get(),
                    lines: batch.len() as u64,
                    request: root.join(&request),
                });
                sequence = sequence.next().ok_or_else(|| Error::Resume {
                    account: name.clone(),
                    message: "sequence numbers exhausted".into(),
                })?;
            }
        }
        Ok(out)
    }
}
