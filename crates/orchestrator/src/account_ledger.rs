//! One account's view of the ledger for the async engine: every write carries the account's
//! lease (held by a [`LeaseKeeper`] that renews it in the background), and every error names
//! the account. The ledger does its own blocking work off the async threads.

use std::sync::Arc;
use std::time::Duration;

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, BatchRecord, Commit, LeaseKeeper, NewBatch, PerLineAnswer, Reserve, SequenceLedger,
    SequenceLedgerExt, StoredResult, Transition,
};

use crate::error::{Error, Result};

/// The ledger, as one account's worker uses it: under the account's lease.
#[derive(Debug, Clone)]
pub(crate) struct AccountLedger {
    ledger: Arc<dyn SequenceLedger>,
    account: AccountId,
    keeper: Arc<LeaseKeeper>,
    ttl: Duration,
}

impl AccountLedger {
    pub(crate) fn new(
        ledger: Arc<dyn SequenceLedger>,
        account: AccountId,
        keeper: Arc<LeaseKeeper>,
        ttl: Duration,
    ) -> Self {
        Self {
            ledger,
            account,
            keeper,
            ttl,
        }
    }

    /// On a shared ledger, asks the database whether the lease is still this process's (a
    /// renewal, fenced by the epoch) right before a step no write follows at once (writing
    /// PROCESS_X): a process paused past its lease learns here that it lost the account.
    /// Nothing to ask on a ledger only this process opens.
    ///
    /// # Errors
    /// [`sequence_ledger::Error::LeaseLost`] (as [`Error::Ledger`]) when it is lost; backend
    /// errors.
    pub(crate) async fn confirm_lease(&self) -> Result<()> {
        if self.keeper.is_lost() {
            return Err(self.lost_error());
        }
        if !self.ledger.is_shared() {
            return Ok(());
        }
        // A database that is briefly unreachable (a restart) is waited for, as the keeper
        // does, for at most the lease's time to live: past it the lease may have expired by
        // the database's clock, and the keeper calls it lost.
        let deadline = tokio::time::Instant::now() + self.ttl;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.ledger.renew_lease(self.keeper.lease(), self.ttl).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() && tokio::time::Instant::now() + pause < deadline => {
                    tracing::warn!(account = %self.account, error = %e, "confirming the account's lease before a trigger failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    if self.keeper.is_lost() {
                        return Err(self.lost_error());
                    }
                }
                Err(e) => return Err(self.err()(e)),
            }
        }
    }

    fn err(&self) -> impl FnOnce(sequence_ledger::Error) -> Error {
        Error::ledger(&self.account)
    }

    /// Whether the account's lease is lost (another process took the account over, or it
    /// could not be renewed in time): the worker stops at its next step.
    pub(crate) fn lease_lost(&self) -> bool {
        self.keeper.is_lost()
    }

    /// Returns once the account's lease is lost (never while it is held): for waits that
    /// would otherwise not notice (polling for an answer).
    pub(crate) async fn lost(&self) {
        self.keeper.lost().await;
    }

    /// Who holds the lease (this process), for notes.
    pub(crate) fn owner(&self) -> String {
        self.keeper.lease().owner.to_string()
    }

    /// The error a worker stops with when its lease is lost.
    pub(crate) fn lost_error(&self) -> Error {
        Error::Ledger {
            account: self.account.to_string(),
            source: sequence_ledger::Error::LeaseLost {
                account: self.account.clone(),
                epoch: self.keeper.lease().epoch,
            },
        }
    }

    /// Batch `sequence`.
    ///
    /// # Errors
    /// [`Error::MissingBatch`] when the ledger has none; ledger errors.
    pub(crate) async fn batch(&self, sequence: SequenceNumber) -> Result<BatchRecord> {
        let record = self
            .ledger
            .batch(&self.account, sequence)
            .await
            .map_err(self.err())?;
        record.ok_or_else(|| Error::MissingBatch {
            account: self.account.to_string(),
            sequence,
        })
    }

    pub(crate) async fn batches(&self) -> Result<Vec<BatchRecord>> {
        self.ledger.batches(&self.account).await.map_err(self.err())
    }

    pub(crate) async fn transition(
        &self,
        sequence: SequenceNumber,
        to: Transition,
    ) -> Result<BatchRecord> {
        self.ledger
            .transition(self.keeper.lease(), sequence, to)
            .await
            .map_err(self.err())
    }

    /// A step that can be repeated after a crash, without an fsync of its own: durable with
    /// the next durable write ([`Commit::Deferred`]; steps that cannot wait are durable anyway).
    pub(crate) async fn transition_deferred(
        &self,
        sequence: SequenceNumber,
        to: Transition,
    ) -> Result<BatchRecord> {
        self.ledger
            .transition_with(self.keeper.lease(), sequence, to, Commit::Deferred)
            .await
            .map_err(self.err())
    }

    /// An operator-like step with a note (a batch released at a takeover).
    pub(crate) async fn resolve(
        &self,
        sequence: SequenceNumber,
        to: Transition,
        note: String,
    ) -> Result<BatchRecord> {
        self.ledger
            .resolve(self.keeper.lease(), sequence, to, note)
            .await
            .map_err(self.err())
    }

    /// The verdict and the per-line answer in one durable write.
    pub(crate) async fn complete_and_store(
        &self,
        sequence: SequenceNumber,
        completed: Transition,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.ledger
            .complete_and_store(self.keeper.lease(), sequence, completed, results, answer)
            .await
            .map_err(self.err())
    }

    pub(crate) async fn next_sequence(&self) -> Result<SequenceNumber> {
        self.ledger
            .next_sequence(&self.account)
            .await
            .map_err(self.err())
    }

    pub(crate) async fn reserve(&self, new: NewBatch) -> Result<Reserve> {
        self.ledger
            .reserve(self.keeper.lease(), new)
            .await
            .map_err(self.err())
    }

    pub(crate) async fn store_answer(
        &self,
        sequence: SequenceNumber,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.ledger
            .store_answer(self.keeper.lease(), sequence, results, answer)
            .await
            .map_err(self.err())
    }
}
