//! Reserving a number for a new batch and binding its lines' references to it.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::codec;
use crate::error::{Error, Result};
use crate::index::{Slot, digest_prefix};
use crate::ledger::{Abort, abort, now_ms, txn_error};
use crate::query::next_after;
use crate::{
    AccountId, AccountInfo, BatchState, ConflictKind, Ledger, NewBatch, RefConflict, Release,
    Reserve,
};

impl Ledger {
    /// Reserves `new.sequence` for the account and binds every line's client reference to it,
    /// in one sled transaction (the batch record, its references and digests as one blob, the
    /// new high-water mark), then flushes and fsyncs before returning.
    ///
    /// Guarantees: when this returns `Reserved`, the batch, its bindings and the new
    /// high-water mark survive a killed process and a power cut; the number is strictly greater
    /// than every number the account reserved before (and than its floor) and will never be
    /// handed out again. If the process dies before it returns, either all of it is there after
    /// a restart or none of it is. Two callers racing for the same number: one gets `Reserved`,
    /// the other `LostRace` with the number to use instead. A reference already bound to a
    /// batch that is still live gives `Conflict` and writes nothing; a binding to a batch that
    /// [releases the line](crate::BatchRecord::releases_line_under) is replaced.
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::IndexMismatch`], [`Error::DuplicateReference`],
    /// [`Error::BatchTooLarge`] for bad input; [`Error::Exhausted`] when a lost race leaves no
    /// number; [`Error::ReadOnly`]; storage and I/O errors.
    pub fn reserve(&self, account: &AccountId, new: NewBatch) -> Result<Reserve> {
        let seq = new.sequence;
        let (record, lines) = crate::steps::reserved_record(account, &new, now_ms())?;
        let keys: Vec<_> = new
            .lines
            .iter()
            .map(|l| self.index.key(&l.client_ref))
            .collect();
        let key = codec::batch_key(account, seq);
        let encoded = codec::encode_batch(&record)?;
        let guard = self.writer("reserve")?;
        // Under the write lock nothing else changes the account's numbers or bindings; the
        // account's index lock keeps readers from seeing the bindings half-way.
        let written = self.with_refs_mut(account, |refs| {
            let info = self.account_info(account)?;
            if let Some(last) = info.last_used()
                && seq <= last
            {
                return Ok(Err(Reserve::LostRace {
                    next: next_after(account, Some(last))?,
                }));
            }
            let mut conflicts = Vec::new();
            for (line, k) in new.lines.iter().zip(&keys) {
                let Some(slot) = refs.table.get(k) else {
                    continue;
                };
                if refs.released(slot, Release::AbandonedOrRejected) {
                    continue;
                }
                let same = slot.digest == digest_prefix(&line.content_digest);
                let existing =
                    self.slot_binding(account, slot, same.then_some(&line.content_digest))?;
                conflicts.push(RefConflict {
                    client_ref: line.client_ref.clone(),
                    index: line.index,
                    existing,
                    kind: if same {
                        ConflictKind::AlreadyBound
                    } else {
                        ConflictKind::ContentDiffers
                    },
                });
            }
            if !conflicts.is_empty() {
                return Ok(Err(Reserve::Conflict { conflicts }));
            }
            let committed = (&self.accounts, &self.batches, &self.open, &self.batch_refs)
                .transaction(|(acc, bat, open, refs_tree)| {
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
                    bat.insert(key.as_slice(), encoded.as_slice())?;
                    open.insert(
                        key.as_slice(),
                        &[codec::encode_state(BatchState::Reserved)][..],
                    )?;
                    crate::pieces::insert(refs_tree, &key, &lines)?;
                    let info = AccountInfo {
                        high_water: Some(seq),
                        ..info
                    };
                    acc.insert(account.as_str(), &codec::encode_account(&info)[..])?;
                    Ok::<_, ConflictableTransactionError<Abort>>(())
                });
            match committed {
                Ok(()) => {}
                Err(TransactionError::Abort(Abort::LostRace(last))) => {
                    return Ok(Err(Reserve::LostRace {
                        next: next_after(account, Some(last))?,
                    }));
                }
                Err(e) => return Err(txn_error("reserve")(e)),
            }
            refs.table.reserve(new.lines.len());
            for (line, k) in new.lines.iter().zip(&keys) {
                refs.table.insert(Slot {
                    key: *k,
                    seq: seq.get(),
                    index: u32::try_from(line.index).unwrap_or(u32::MAX),
                    digest: digest_prefix(&line.content_digest),
                });
            }
            refs.holders.remove(&seq.get());
            Ok(Ok(()))
        })?;
        drop(guard);
        if let Err(answer) = written {
            return Ok(answer);
        }
        self.durable("reserve")?;
        tracing::debug!(%account, sequence = %seq, lines = record.line_count, "batch reserved");
        Ok(Reserve::Reserved(record))
    }
}
