//! Recording the gateway's answer to a batch: its per-line results (and, in one write, its
//! verdict) as one blob.

use kvp_format::SequenceNumber;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::codec;
use crate::error::Result;
use crate::ledger::{Abort, now_ms, txn_error};
use crate::{AccountId, BatchRecord, BatchState, Ledger, PerLineAnswer, StoredResult, Transition};

impl Ledger {
    /// Stores the per-line results of a `Completed` batch and moves it to `Collected`, in one
    /// sled transaction, flushed and fsynced before returning: after a crash either every
    /// result and the new state are there, or none of them and the old state.
    ///
    /// A gateway-error batch is collected the same way, with whatever lines RESPONSE held
    /// (maybe none): the lines without a result are the ones not processed.
    ///
    /// # Errors
    /// [`crate::Error::NoSuchBatch`]; [`crate::Error::IllegalTransition`] unless the batch is `Completed`;
    /// [`crate::Error::BadResult`] for an index outside the batch or given twice;
    /// [`crate::Error::SensitiveField`] for card data or a key (`kvp_format::is_sensitive`) — the value
    /// is neither stored nor echoed; [`crate::Error::ReadOnly`]; storage and I/O errors.
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
    /// [`crate::Error::IllegalTransition`] when `completed` is another step or the batch cannot take
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
        crate::steps::collect_record(&mut record, completed, &results, answer, now_ms())?;
        let key = codec::batch_key(account, seq);
        let encoded = codec::encode_batch(&record)?;
        let blob = (!results.is_empty()).then(|| crate::results::encode(&results));
        // Results stored before (none, unless a ledger was edited) give way to these whole:
        // a shorter blob must not leave pieces of the longer one behind.
        let stale = crate::pieces::get(&self.batch_results, &key, "reading results")?;
        (&self.batches, &self.open, &self.batch_results)
            .transaction(|(bat, open, res)| {
                if let Some(stale) = &stale {
                    crate::pieces::remove(res, stale)?;
                }
                if let Some(blob) = &blob {
                    crate::pieces::insert(res, &key, blob)?;
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
