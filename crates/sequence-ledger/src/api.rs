//! The ledger as the engine, the CLI and the service hold it: one async interface,
//! [`SequenceLedger`], with two backends — [`crate::SledLedger`] (the embedded default, this
//! crate) and the PostgreSQL ledger (crate `ledger-postgres`), shared by several processes.
//!
//! Every method does its own blocking work off the async threads (sled: `spawn_blocking`), so
//! callers simply `.await` it. Every write for an account takes the caller's [`Lease`] and is
//! refused with [`Error::LeaseLost`] once that lease is no longer the account's live one
//! (checked in the same transaction as the write). Reads take no lease.
//!
//! ```
//! use std::sync::Arc;
//! use sequence_ledger::{
//!     AccountId, DEFAULT_LEASE_TTL, Ledger, LeaseKeeper, LeaseOwner, NewBatch, NewBinding,
//!     Reserve, SequenceLedger, SequenceLedgerExt, SledLedger, Transition, content_digest,
//! };
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! let ledger: Arc<dyn SequenceLedger> =
//!     Arc::new(SledLedger::new(Arc::new(Ledger::open(dir.path().join("ledger"))?)));
//! let acme = AccountId::new("acme")?;
//! // One process drives the account at a time: take its lease, keep it renewed.
//! let lease = ledger.lease_now(&acme, &LeaseOwner::this_process(), DEFAULT_LEASE_TTL).await?;
//! let keeper = LeaseKeeper::start(ledger.clone(), lease, DEFAULT_LEASE_TTL);
//! let seq = ledger.next_sequence(&acme).await?;
//! let new = NewBatch {
//!     sequence: seq,
//!     request_len: 60,
//!     external_reference: None,
//!     lines: vec![NewBinding {
//!         client_ref: "order-1".into(),
//!         index: 0,
//!         content_digest: content_digest([("xCommand", "cc:sale"), ("xAmount", "5.00")]),
//!     }],
//! };
//! let Reserve::Reserved(_) = ledger.reserve(keeper.lease(), new).await? else { panic!() };
//! ledger.transition(keeper.lease(), seq, Transition::RequestUploaded).await?;
//! keeper.release().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Write;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use kvp_format::SequenceNumber;

use crate::error::{Error, Result};
use crate::{
    AccountId, AccountInfo, BatchRecord, BatchRefs, BatchResults, BatchState, Binding, Commit,
    Lease, LeaseAttempt, LeaseEntry, LeaseOwner, NewBatch, PerLineAnswer, Pruned, Release, Reserve,
    StoredResult, Transition,
};

/// A transaction to look up in the idempotency index: its reference and content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefQuery {
    /// The caller's reference.
    pub client_ref: String,
    /// [`crate::content_digest`] of the transaction.
    pub content_digest: [u8; 32],
}

/// Where a looked-up reference stands ([`SequenceLedger::check_references`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefStatus {
    /// Never bound, or bound to a line its batch gives back under the [`Release`] asked for.
    Free,
    /// Bound to the same content: "already in batch 17, line 4".
    Bound(Binding),
    /// Bound to other content (an error in the caller's input; [`Error::ContentConflict`]
    /// in the single-reference call).
    ContentDiffers(Binding),
}

/// The ledger's public API, whatever stores it. Hold it as `Arc<dyn SequenceLedger>`.
/// Convenience calls built on these are in [`SequenceLedgerExt`].
///
/// What each call guarantees after a crash is the same on every backend (the sled
/// [`crate::Ledger`]'s method of the same name says it in full): a write is durable when it
/// returns (except a step recorded with [`Commit::Deferred`]), atomic, and numbers only go up.
#[async_trait]
pub trait SequenceLedger: std::fmt::Debug + Send + Sync {
    /// What this ledger is, for messages: "sled ledger /var/lib/paybatch/ledger",
    /// "PostgreSQL ledger db.example:5432/paybatch" (never a password).
    fn describe(&self) -> String;

    /// Whether several processes may write this ledger at once (a shared database): their
    /// leases are then all that keeps them apart, and a process that takes an account over
    /// finishes or releases what a lost holder left (docs/ARCHITECTURE.md, takeover rules).
    /// `false` for a ledger only one process opens (sled).
    fn is_shared(&self) -> bool {
        false
    }

    // --- leases ---------------------------------------------------------------------------

    /// Takes the account for `owner` for `ttl` when its lease is free or expired (by the
    /// ledger's clock): a new epoch, above every earlier one of the account. Otherwise
    /// [`LeaseAttempt::Held`] with the live lease. An owner asking again while it holds the
    /// lease gets a new epoch too (its older [`Lease`] value no longer writes).
    ///
    /// # Errors
    /// Backend errors.
    async fn acquire_lease(
        &self,
        account: &AccountId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<LeaseAttempt>;

    /// Extends a live lease to `ttl` from now (by the ledger's clock); same epoch.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] when it expired or another owner took the account; backend errors.
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease>;

    /// Gives the account up now (the lease expires; its epoch stays, so the next holder's is
    /// higher). Releasing a lease that is no longer held does nothing.
    ///
    /// # Errors
    /// Backend errors.
    async fn release_lease(&self, lease: &Lease) -> Result<()>;

    /// Every account's last lease, by account, with whether it is live.
    ///
    /// # Errors
    /// Backend errors.
    async fn leases(&self) -> Result<Vec<LeaseEntry>>;

    // --- writes (fenced by the caller's lease) -------------------------------------------

    /// [`crate::Ledger::reserve`] for the lease's account.
    ///
    /// # Errors
    /// As [`crate::Ledger::reserve`]; [`Error::LeaseLost`].
    async fn reserve(&self, lease: &Lease, new: NewBatch) -> Result<Reserve>;

    /// [`crate::Ledger::transition_with`] for the lease's account.
    ///
    /// # Errors
    /// As [`crate::Ledger::transition`]; [`Error::LeaseLost`].
    async fn transition_with(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        to: Transition,
        commit: Commit,
    ) -> Result<BatchRecord>;

    /// [`crate::Ledger::resolve`]: an operator's step with a note.
    ///
    /// # Errors
    /// As [`crate::Ledger::resolve`]; [`Error::LeaseLost`].
    async fn resolve(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        to: Transition,
        note: String,
    ) -> Result<BatchRecord>;

    /// [`crate::Ledger::store_answer`].
    ///
    /// # Errors
    /// As [`crate::Ledger::store_answer`]; [`Error::LeaseLost`].
    async fn store_answer(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord>;

    /// [`crate::Ledger::complete_and_store`]: the verdict and the results in one write.
    ///
    /// # Errors
    /// As [`crate::Ledger::complete_and_store`]; [`Error::LeaseLost`].
    async fn complete_and_store(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        completed: Transition,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord>;

    /// [`crate::Ledger::set_floor`].
    ///
    /// # Errors
    /// [`Error::LeaseLost`]; backend errors.
    async fn set_floor(&self, lease: &Lease, floor: SequenceNumber) -> Result<()>;

    /// [`crate::Ledger::prune`]. Takes no lease: it touches only `Cleaned` batches, which no
    /// holder writes again.
    ///
    /// # Errors
    /// As [`crate::Ledger::prune`].
    async fn prune(&self, collected_before: SystemTime) -> Result<Pruned>;

    /// [`crate::Ledger::sync`]: every deferred step durable.
    ///
    /// # Errors
    /// Backend errors.
    async fn sync(&self) -> Result<()>;

    // --- reads -----------------------------------------------------------------------------

    /// [`crate::Ledger::account_info`].
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn account_info(&self, account: &AccountId) -> Result<AccountInfo>;

    /// [`crate::Ledger::batch`].
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn batch(&self, account: &AccountId, seq: SequenceNumber) -> Result<Option<BatchRecord>>;

    /// [`crate::Ledger::batches`]: every batch of the account, by number.
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn batches(&self, account: &AccountId) -> Result<Vec<BatchRecord>>;

    /// [`crate::Ledger::in_flight`]: every batch that is not final, by account then number.
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn in_flight(&self) -> Result<Vec<(AccountId, BatchRecord)>>;

    /// [`crate::Ledger::accounts`]: every account the ledger knows, sorted.
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn accounts(&self) -> Result<Vec<AccountId>>;

    /// [`crate::Ledger::batch_results`].
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn batch_results(&self, account: &AccountId, seq: SequenceNumber)
    -> Result<BatchResults>;

    /// [`crate::Ledger::batch_refs`].
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn batch_refs(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<Option<BatchRefs>>;

    /// [`crate::Ledger::binding`]: where a reference is bound, whatever its batch's state.
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn binding(&self, account: &AccountId, client_ref: &str) -> Result<Option<Binding>>;

    /// [`crate::Ledger::binding_with`] for many references at once (a merge), in the order
    /// given.
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn bindings_with(
        &self,
        account: &AccountId,
        queries: Vec<RefQuery>,
    ) -> Result<Vec<Option<Binding>>>;

    /// [`crate::Ledger::check_reference_with`] for many references at once (planning), in the
    /// order given; a reference bound to other content is [`RefStatus::ContentDiffers`].
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn check_references(
        &self,
        account: &AccountId,
        queries: Vec<RefQuery>,
        release: Release,
    ) -> Result<Vec<RefStatus>>;

    /// [`crate::Ledger::bindings_of`]: every binding of the account, by reference.
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn bindings_of(&self, account: &AccountId) -> Result<Vec<(String, Binding)>>;

    /// A synchronous view of one account for blocking code that looks up many transactions
    /// (planning, the merge): see [`crate::AccountView`]. Blocking: call it, and the view,
    /// on a blocking thread (`spawn_blocking`) inside a tokio runtime.
    ///
    /// # Errors
    /// Backend errors (a backend may load the account's index here).
    fn blocking_view(&self, account: &AccountId) -> Result<Box<dyn crate::AccountView>>;

    /// [`crate::Ledger::export`]: the whole ledger as JSON lines (the same lines on every
    /// backend). Returns the number of lines.
    ///
    /// # Errors
    /// [`Error::Export`] when `out` fails; backend and corruption errors.
    async fn export(&self, out: Box<dyn Write + Send>) -> Result<u64>;
}

/// Calls built on [`SequenceLedger`], for every implementation.
#[async_trait]
pub trait SequenceLedgerExt: SequenceLedger {
    /// A durable step ([`SequenceLedger::transition_with`] with [`Commit::Durable`]).
    ///
    /// # Errors
    /// As [`crate::Ledger::transition`]; [`Error::LeaseLost`].
    async fn transition(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        to: Transition,
    ) -> Result<BatchRecord> {
        self.transition_with(lease, seq, to, Commit::Durable).await
    }

    /// [`SequenceLedger::store_answer`] of a per-line answer that was read.
    ///
    /// # Errors
    /// As [`crate::Ledger::store_results`]; [`Error::LeaseLost`].
    async fn store_results(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        results: Vec<StoredResult>,
    ) -> Result<BatchRecord> {
        self.store_answer(lease, seq, results, PerLineAnswer::Read)
            .await
    }

    /// The number to reserve next ([`crate::Ledger::next_sequence`]).
    ///
    /// # Errors
    /// [`Error::Exhausted`]; backend errors.
    async fn next_sequence(&self, account: &AccountId) -> Result<SequenceNumber> {
        crate::query::next_after(account, self.account_info(account).await?.last_used())
    }

    /// The account's batches in one state, by number.
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn batches_in_state(
        &self,
        account: &AccountId,
        state: BatchState,
    ) -> Result<Vec<BatchRecord>> {
        let mut all = self.batches(account).await?;
        all.retain(|b| b.state == state);
        Ok(all)
    }

    /// One line's stored result ([`crate::Ledger::line_result`]).
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn line_result(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        index: u64,
    ) -> Result<Option<StoredResult>> {
        Ok(self
            .batch_results(account, seq)
            .await?
            .get(index)
            .map(|l| l.to_stored()))
    }

    /// [`crate::Ledger::binding_with`] for one reference.
    ///
    /// # Errors
    /// Backend and corruption errors.
    async fn binding_with(
        &self,
        account: &AccountId,
        client_ref: &str,
        content_digest: &[u8; 32],
    ) -> Result<Option<Binding>> {
        let query = RefQuery {
            client_ref: client_ref.to_string(),
            content_digest: *content_digest,
        };
        Ok(self
            .bindings_with(account, vec![query])
            .await?
            .into_iter()
            .next()
            .flatten())
    }

    /// [`crate::Ledger::check_reference_with`] for one reference.
    ///
    /// # Errors
    /// [`Error::ContentConflict`]; backend and corruption errors.
    async fn check_reference_with(
        &self,
        account: &AccountId,
        client_ref: &str,
        content_digest: &[u8; 32],
        release: Release,
    ) -> Result<Option<Binding>> {
        let query = RefQuery {
            client_ref: client_ref.to_string(),
            content_digest: *content_digest,
        };
        let status = self
            .check_references(account, vec![query], release)
            .await?
            .into_iter()
            .next();
        match status {
            None | Some(RefStatus::Free) => Ok(None),
            Some(RefStatus::Bound(b)) => Ok(Some(b)),
            Some(RefStatus::ContentDiffers(existing)) => Err(Error::ContentConflict {
                account: account.clone(),
                client_ref: client_ref.to_string(),
                existing,
            }),
        }
    }

    /// [`crate::Ledger::check_reference`]: [`SequenceLedgerExt::check_reference_with`] with
    /// [`Release::AbandonedOrRejected`].
    ///
    /// # Errors
    /// As [`SequenceLedgerExt::check_reference_with`].
    async fn check_reference(
        &self,
        account: &AccountId,
        client_ref: &str,
        content_digest: &[u8; 32],
    ) -> Result<Option<Binding>> {
        self.check_reference_with(
            account,
            client_ref,
            content_digest,
            Release::AbandonedOrRejected,
        )
        .await
    }

    /// Takes the account's lease now, or fails naming who holds it ([`Error::LeaseHeld`]):
    /// for an operator's one-off command.
    ///
    /// # Errors
    /// [`Error::LeaseHeld`]; backend errors.
    async fn lease_now(
        &self,
        account: &AccountId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<Lease> {
        match self.acquire_lease(account, owner, ttl).await? {
            LeaseAttempt::Acquired(lease) => Ok(lease),
            LeaseAttempt::Held(other) => Err(Error::LeaseHeld {
                account: account.clone(),
                holder: other.owner.to_string(),
                until: other.expires_text(),
                epoch: other.epoch,
            }),
        }
    }
}

impl<T: SequenceLedger + ?Sized> SequenceLedgerExt for T {}
