//! Moving batches along the state machine, and the operator's floor.

use kvp_format::SequenceNumber;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::codec;
use crate::error::{Error, Result};
use crate::ledger::{Abort, abort, now_ms, txn_error};
use crate::{AccountId, AccountInfo, BatchRecord, BatchState, Commit, Ledger, Transition};

impl Ledger {
    /// Moves a batch along the state machine (table on [`BatchState`]) in one sled
    /// transaction over the batch, the open-batch index and the account, flushed and fsynced
    /// before returning: after a crash the batch is in the old state or the new one, and once
    /// this returned, in the new one.
    ///
    /// # Errors
    /// [`Error::NoSuchBatch`]; [`Error::IllegalTransition`] (nothing written);
    /// [`Error::OutOfOrder`] for a `Triggered` that would make the gateway ignore a batch;
    /// [`Error::ReadOnly`]; storage and I/O errors.
    pub fn transition(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        to: Transition,
    ) -> Result<BatchRecord> {
        self.apply(account, seq, to, None, Commit::Durable)
    }

    /// [`Ledger::transition`], durable as `commit` asks where the step allows it: with
    /// [`Commit::Deferred`], a step that can be repeated after a crash
    /// ([`Transition::can_defer`]: `Triggered`, `Completed`, `Stuck`, `Cleaned`) is written
    /// without a flush of its own and becomes durable with the next durable write,
    /// [`Ledger::sync`] or the drop of the ledger. After a crash it may be lost (the batch is
    /// then in the state before it), and so is every write after it — never an earlier one.
    /// Every other step is flushed and fsynced whatever `commit` says. Same errors.
    ///
    /// # Errors
    /// As [`Ledger::transition`].
    pub fn transition_with(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        to: Transition,
        commit: Commit,
    ) -> Result<BatchRecord> {
        self.apply(account, seq, to, None, commit)
    }

    /// [`Ledger::transition`] by an operator, with a note kept on the batch (e.g. "confirmed
    /// with the gateway by phone"). Same guarantees and errors.
    ///
    /// # Errors
    /// As [`Ledger::transition`].
    pub fn resolve(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        to: Transition,
        note: impl Into<String>,
    ) -> Result<BatchRecord> {
        self.apply(account, seq, to, Some(note.into()), Commit::Durable)
    }

    fn apply(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        to: Transition,
        note: Option<String>,
        commit: Commit,
    ) -> Result<BatchRecord> {
        let guard = self.writer("change a batch's state")?;
        let mut record = self.existing_batch(account, seq)?;
        let target = to.target();
        let deferrable = to.can_defer();
        if !record.state.can_become(target) {
            return Err(Error::IllegalTransition {
                account: account.clone(),
                sequence: seq,
                from: record.state,
                to: target,
            });
        }
        let mut info = self.account_info(account)?;
        if target == BatchState::Triggered {
            self.check_trigger_order(account, seq, &info)?;
            info.triggered = info.triggered.max(Some(seq));
        }
        crate::steps::apply_transition(&mut record, to, note, now_ms())?;
        let key = codec::batch_key(account, seq);
        let encoded = codec::encode_batch(&record)?;
        (&self.batches, &self.open, &self.accounts)
            .transaction(|(bat, open, acc)| {
                bat.insert(key.as_slice(), encoded.as_slice())?;
                if target.is_final() {
                    open.remove(key.as_slice())?;
                } else {
                    open.insert(key.as_slice(), &[codec::encode_state(target)][..])?;
                }
                if target == BatchState::Triggered {
                    acc.insert(account.as_str(), &codec::encode_account(&info)[..])?;
                }
                Ok::<_, ConflictableTransactionError<Abort>>(())
            })
            .map_err(txn_error("transition"))?;
        // Only an operator's steps change which lines a batch gives back (MarkedUnknown takes
        // a rejected batch's lines back); collecting is `store_answer`'s.
        if matches!(target, BatchState::Abandoned | BatchState::MarkedUnknown) {
            self.index_record(&record, || {
                Ok(self.batch_results(account, seq)?.indexes_with_outcome())
            })?;
        }
        drop(guard);
        self.committed("transition", deferrable, commit)?;
        tracing::debug!(%account, sequence = %seq, state = %target, "batch state changed");
        Ok(record)
    }

    /// PROTOCOL.md §2 items 5 and 6 (see [`BatchState`]). Called under the write lock.
    fn check_trigger_order(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        info: &AccountInfo,
    ) -> Result<()> {
        let triggered_state = match info.triggered {
            Some(t) if t >= seq => self.batch(account, t)?.map(|b| b.state),
            _ => None,
        };
        crate::steps::check_trigger_order(
            account,
            seq,
            info,
            &self.open_batches(account)?,
            triggered_state,
        )
    }

    /// Sets the operator's floor: the account's gateway has already seen numbers up to
    /// `floor`, so new numbers start above it. It never lowers the high-water mark (numbers
    /// already used stay used); setting a lower floor than before is allowed (a typo can be
    /// corrected). Flushed and fsynced before returning.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; storage and I/O errors.
    pub fn set_floor(&self, account: &AccountId, floor: SequenceNumber) -> Result<()> {
        let guard = self.writer("set a floor")?;
        self.accounts
            .transaction(|acc| {
                let info = match acc.get(account.as_str())? {
                    Some(v) => codec::decode_account(&v, account).or_else(abort)?,
                    None => AccountInfo::default(),
                };
                let info = AccountInfo {
                    floor: Some(floor),
                    ..info
                };
                acc.insert(account.as_str(), &codec::encode_account(&info)[..])?;
                Ok(())
            })
            .map_err(txn_error("set_floor"))?;
        drop(guard);
        self.durable("floor")?;
        tracing::info!(%account, %floor, "sequence floor set");
        Ok(())
    }
}
