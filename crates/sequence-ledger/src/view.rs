//! [`AccountView`]: one account of a ledger, read synchronously by blocking code.

use std::sync::{Arc, Mutex, PoisonError};

use kvp_format::SequenceNumber;

use crate::error::Result;
use crate::{AccountId, BatchRecord, BatchResults, Binding, Ledger, Release};

/// One account of a [`crate::SequenceLedger`], for blocking code that looks up every
/// transaction of the account in one pass (planning, the merge): the calls answer from
/// memory where they can (the idempotency index) and read a batch at a time otherwise.
///
/// Blocking: get it with [`crate::SequenceLedger::blocking_view`] and call it on a blocking
/// thread (`tokio::task::spawn_blocking`), never on an async worker thread — a backend may
/// wait for its database inside.
pub trait AccountView: std::fmt::Debug + Send + Sync {
    /// The account.
    fn account(&self) -> &AccountId;

    /// [`crate::Ledger::check_reference_with`].
    ///
    /// # Errors
    /// [`crate::Error::ContentConflict`]; backend and corruption errors.
    fn check_reference_with(
        &self,
        client_ref: &str,
        content_digest: &[u8; 32],
        release: Release,
    ) -> Result<Option<Binding>>;

    /// [`crate::Ledger::binding_with`].
    ///
    /// # Errors
    /// Backend and corruption errors.
    fn binding_with(&self, client_ref: &str, content_digest: &[u8; 32]) -> Result<Option<Binding>>;

    /// [`crate::Ledger::batch`].
    ///
    /// # Errors
    /// Backend and corruption errors.
    fn batch(&self, seq: SequenceNumber) -> Result<Option<BatchRecord>>;

    /// [`crate::Ledger::batch_results`].
    ///
    /// # Errors
    /// Backend and corruption errors.
    fn batch_results(&self, seq: SequenceNumber) -> Result<BatchResults>;

    /// [`crate::Ledger::next_sequence`].
    ///
    /// # Errors
    /// [`crate::Error::Exhausted`]; backend errors.
    fn next_sequence(&self) -> Result<SequenceNumber>;
}

/// The sled ledger's view: its synchronous calls, as they are. Dropped while no one in this
/// process holds the account's lease (a merge, a report), it retires the account's reference
/// index ([`Ledger::retire_refs`]), as giving the lease back does.
#[derive(Debug)]
pub(crate) struct SledView {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) account: AccountId,
    pub(crate) lease: Arc<Mutex<crate::sled_backend::Slot>>,
}

impl Drop for SledView {
    fn drop(&mut self) {
        let idle = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .live(std::time::Instant::now())
            .is_none();
        if idle {
            self.ledger.retire_refs(&self.account);
        }
    }
}

impl AccountView for SledView {
    fn account(&self) -> &AccountId {
        &self.account
    }

    fn check_reference_with(
        &self,
        client_ref: &str,
        content_digest: &[u8; 32],
        release: Release,
    ) -> Result<Option<Binding>> {
        self.ledger
            .check_reference_with(&self.account, client_ref, content_digest, release)
    }

    fn binding_with(&self, client_ref: &str, content_digest: &[u8; 32]) -> Result<Option<Binding>> {
        self.ledger
            .binding_with(&self.account, client_ref, content_digest)
    }

    fn batch(&self, seq: SequenceNumber) -> Result<Option<BatchRecord>> {
        self.ledger.batch(&self.account, seq)
    }

    fn batch_results(&self, seq: SequenceNumber) -> Result<BatchResults> {
        self.ledger.batch_results(&self.account, seq)
    }

    fn next_sequence(&self) -> Result<SequenceNumber> {
        self.ledger.next_sequence(&self.account)
    }
}
