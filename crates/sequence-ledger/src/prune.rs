//! Retention: dropping the stored results of batches finished long ago.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::codec;
use crate::error::Result;
use crate::ledger::{Abort, now_ms, txn_error};
use crate::{AccountId, Ledger};

/// What [`Ledger::prune`] dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// Batches whose results were dropped.
    pub batches: u64,
    /// Lines whose result was dropped.
    pub lines: u64,
    /// Bytes of stored results dropped (sled reuses the space; the files need not shrink).
    pub bytes: u64,
    /// Batches old enough whose results were kept because the gateway rejected the batch:
    /// which of its lines have an outcome decides which may be sent again.
    pub kept_rejected: u64,
    /// Per account: batches and lines dropped.
    pub by_account: BTreeMap<AccountId, (u64, u64)>,
}

impl Ledger {
    /// Drops the stored results of every batch that was `Cleaned` before `collected_before`,
    /// keeping what idempotency needs: its references and content digests, its state, verdict
    /// and stamps. Each batch's record says when ([`crate::BatchRecord::results_pruned_at`]),
    /// so a merge can report its lines `unknown` with "results pruned" instead of reading
    /// them. Batches the gateway rejected ([`crate::BatchRecord::is_rejected`]) keep their
    /// results: which lines have an outcome decides which may be sent again. Each batch is
    /// one sled transaction (results removed, record updated); the whole prune is flushed and
    /// fsynced before returning. After a crash each batch is pruned or not, never half.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; storage, corruption and I/O errors.
    pub fn prune(&self, collected_before: SystemTime) -> Result<Pruned> {
        let cutoff = collected_before
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let guard = self.writer("prune results")?;
        let mut pruned = Pruned::default();
        let now = now_ms();
        for item in crate::pieces::scan(&self.batch_results, &[], "scanning results") {
            let blob = item?;
            let (account, rest) = codec::split_key(&blob.key, "batch_results")?;
            let seq = codec::seq_from_suffix(&rest, "batch_results")?;
            let Some(mut record) = self.batch(&account, seq)? else {
                continue;
            };
            match crate::steps::prune_action(&record, cutoff) {
                crate::steps::PruneAction::Keep => continue,
                crate::steps::PruneAction::KeepRejected => {
                    pruned.kept_rejected += 1;
                    continue;
                }
                crate::steps::PruneAction::Drop => {}
            }
            let lines = crate::results::BatchResults::decode(blob.bytes.clone(), || {
                format!("batch {seq} of account {account}")
            })?
            .len() as u64;
            record.results_pruned_at = Some(now);
            let encoded = codec::encode_batch(&record)?;
            (&self.batches, &self.batch_results)
                .transaction(|(bat, res)| {
                    crate::pieces::remove(res, &blob)?;
                    bat.insert(blob.key.as_slice(), encoded.as_slice())?;
                    Ok::<_, ConflictableTransactionError<Abort>>(())
                })
                .map_err(txn_error("prune"))?;
            pruned.batches += 1;
            pruned.lines += lines;
            pruned.bytes += blob.bytes.len() as u64;
            let entry = pruned.by_account.entry(account).or_default();
            entry.0 += 1;
            entry.1 += lines;
        }
        drop(guard);
        self.durable("prune")?;
        tracing::info!(
            batches = pruned.batches,
            lines = pruned.lines,
            bytes = pruned.bytes,
            "stored results pruned"
        );
        Ok(pruned)
    }
}
