//! One account's view of the ledger for the async engine: every call runs on tokio's blocking
//! pool (a ledger write ends in an fsync) and its error names the account.

use std::sync::Arc;

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, BatchRecord, Commit, Ledger, NewBatch, PerLineAnswer, Reserve, StoredResult,
    Transition,
};

use crate::error::{Error, Result};

/// The ledger, as one account's worker uses it.
#[derive(Debug, Clone)]
pub(crate) struct AccountLedger {
    ledger: Arc<Ledger>,
    account: AccountId,
}

impl AccountLedger {
    pub(crate) fn new(ledger: Arc<Ledger>, account: AccountId) -> Self {
        Self { ledger, account }
    }

    /// Runs `f` on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger, &AccountId) -> sequence_ledger::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (ledger, account) = (self.ledger.clone(), self.account.clone());
        tokio::task::spawn_blocking(move || f(&ledger, &account).map_err(Error::ledger(&account)))
            .await
            .map_err(|e| Error::task(self.account.as_str(), &e))?
    }

    /// Batch `sequence`.
    ///
    /// # Errors
    /// [`Error::MissingBatch`] when the ledger has none; ledger errors.
    pub(crate) async fn batch(&self, sequence: SequenceNumber) -> Result<BatchRecord> {
        let record = self.run(move |l, a| l.batch(a, sequence)).await?;
        record.ok_or_else(|| Error::MissingBatch {
            account: self.account.to_string(),
            sequence,
        })
    }

    pub(crate) async fn batches(&self) -> Result<Vec<BatchRecord>> {
        self.run(|l, a| l.batches(a)).await
    }

    pub(crate) async fn transition(
        &self,
        sequence: SequenceNumber,
        to: Transition,
    ) -> Result<BatchRecord> {
        self.run(move |l, a| l.transition(a, sequence, to)).await
    }

    /// A step that can be repeated after a crash, without an fsync of its own: durable with
    /// the next durable write ([`Commit::Deferred`]; steps that cannot wait are durable anyway).
    pub(crate) async fn transition_deferred(
        &self,
        sequence: SequenceNumber,
        to: Transition,
    ) -> Result<BatchRecord> {
        self.run(move |l, a| l.transition_with(a, sequence, to, Commit::Deferred))
            .await
    }

    /// The verdict and the per-line answer in one durable write.
    pub(crate) async fn complete_and_store(
        &self,
        sequence: SequenceNumber,
        completed: Transition,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.run(move |l, a| l.complete_and_store(a, sequence, completed, results, answer))
            .await
    }

    pub(crate) async fn next_sequence(&self) -> Result<SequenceNumber> {
        self.run(|l, a| l.next_sequence(a)).await
    }

    pub(crate) async fn reserve(&self, new: NewBatch) -> Result<Reserve> {
        self.run(move |l, a| l.reserve(a, new)).await
    }

    pub(crate) async fn store_answer(
        &self,
        sequence: SequenceNumber,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.run(move |l, a| l.store_answer(a, sequence, results, answer))
            .await
    }
}
