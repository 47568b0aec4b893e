//! Recording the gateway's answer to a batch: its per-line results (and, in one write, its
//! verdict) as one blob.

use kvp_format::SequenceNumber;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::codec;
use crate::error::{Error, Result};
use crate::ledger::{Abort, now_ms, txn_error};
use crate::{
    AccountId, BatchRecord, BatchState, Ledger, PerLineAnswer, Stamp, StoredResult, Transition,
};

impl Ledger {
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
        self.collect(account, seq, None, results, answer)
    }

    /// The verdict and the per-line answer in one write: `completed` (a
    /// [`Transition::Completed`] or [`Transition::CompletedWith`]) moves a `Triggered` or
    /// `Stuck` batch to `Completed`, and `results` move it on to `Collected`, in one sled
    /// transaction flushed and fsynced before returning — one fsync where
    /// [`Ledger::transition`] + [`Ledger::store_answer`] take two. After a crash the batch is
    /// either as before (COMPLETE is still in the drop, to be read again) or collected.
    ///
    /// # Errors
    /// [`Error::IllegalTransition`] when `completed` is another step or the batch cannot take
    /// it; otherwise as [`Ledger::store_answer`].
    pub fn complete_and_store(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        completed: Transition,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.collect(account, seq, Some(completed), results, answer)
    }

    fn collect(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        completed: Option<Transition>,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        let guard = self.writer("store results")?;
        let mut record = self.existing_batch(account, seq)?;
        let illegal = |from, to| Error::IllegalTransition {
            account: account.clone(),
            sequence: seq,
            from,
            to,
        };
        if let Some(step) = completed {
            let target = step.target();
            if !matches!(target, BatchState::Completed(_)) || !record.state.can_become(target) {
                return Err(illegal(record.state, target));
            }
            record.state = target;
            record.transitions.push(Stamp {
                state: target,
                at_unix_ms: now_ms(),
            });
            match step {
                Transition::Completed(verdict) => record.verdict = Some(verdict),
                Transition::CompletedWith(verdict, fields) => {
                    record.verdict = Some(verdict);
                    record.complete_fields = Some(fields.without_sensitive());
                }
                _ => {}
            }
        } else if !matches!(record.state, BatchState::Completed(_)) {
            return Err(illegal(record.state, BatchState::Collected));
        }
        check_results(account, seq, record.line_count, &results)?;
        record.state = BatchState::Collected;
        record.per_line_answer = Some(answer);
        record.transitions.push(Stamp {
            state: BatchState::Collected,
            at_unix_ms: now_ms(),
        });
        let key = codec::batch_key(account, seq);
        let encoded = codec::encode_batch(&record)?;
        let blob = (!results.is_empty()).then(|| crate::results::encode(&results));
        (&self.batches, &self.open, &self.batch_results)
            .transaction(|(bat, open, res)| {
                if let Some(blob) = &blob {
                    res.insert(key.as_slice(), blob.as_slice())?;
                }
                bat.insert(key.as_slice(), encoded.as_slice())?;
                open.insert(
                    key.as_slice(),
                    &[codec::encode_state(BatchState::Collected)][..],
                )?;
                Ok::<_, ConflictableTransactionError<Abort>>(())
            })
            .map_err(txn_error("store_results"))?;
        if record.is_rejected() {
            self.index_record(&record, || {
                Ok(results
                    .iter()
                    .filter(|r| StoredResult::is_outcome(&r.fields))
                    .map(|r| r.index)
                    .collect())
            })?;
        }
        drop(guard);
        self.durable("results")?;
        tracing::debug!(%account, sequence = %seq, results = results.len(), "results stored");
        Ok(record)
    }
}

/// The checks of [`Ledger::store_results`], result by result in the caller's order: index
/// inside the batch, not given twice, no sensitive key. Names repeat line after line, so a
/// name equal to the previous line's at the same place (already checked) is not checked again.
fn check_results(
    account: &AccountId,
    seq: SequenceNumber,
    line_count: u64,
    results: &[StoredResult],
) -> Result<()> {
    // A bitmap of the lines given (8 MB at most), a set past it.
    let words = usize::try_from(line_count.div_ceil(64)).map_or(1 << 20, |w| w.min(1 << 20));
    let mut seen = vec![0u64; words];
    let mut seen_sparse = std::collections::HashSet::new();
    let mut previous: Vec<&str> = Vec::new();
    for r in results {
        let bad = |reason| Error::BadResult {
            account: account.clone(),
            sequence: seq,
            index: r.index,
            reason,
        };
        if r.index >= line_count {
            return Err(bad("beyond the batch's lines"));
        }
        let (word, bit) = ((r.index / 64) as usize, 1u64 << (r.index % 64));
        let fresh = match seen.get_mut(word) {
            Some(w) => {
                let fresh = *w & bit == 0;
                *w |= bit;
                fresh
            }
            None => seen_sparse.insert(r.index),
        };
        if !fresh {
            return Err(bad("given twice"));
        }
        for (position, (k, _)) in r.fields.iter().enumerate() {
            if previous.get(position) == Some(&k.as_str()) {
                continue;
            }
            if kvp_format::is_sensitive(k) {
                return Err(Error::SensitiveField {
                    account: account.clone(),
                    sequence: seq,
                    index: r.index,
                    key: k.clone(),
                });
            }
            match previous.get_mut(position) {
                Some(p) => *p = k.as_str(),
                None => previous.push(k.as_str()),
            }
        }
    }
    Ok(())
}
