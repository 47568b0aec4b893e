//! [`SledLedger`]: the sled [`Ledger`] behind the [`SequenceLedger`] interface.
//!
//! Every call runs on tokio's blocking pool (a write ends in an fsync). Leases are kept in
//! this process: the ledger directory's lock already makes one process the only one that
//! opens it, so a lease here decides between owners inside the process (two engines, an
//! operator's command in a service) with the same rules and errors as a shared ledger. A
//! lease's epoch counts from 1 in each process; its expiry is by this process's monotonic
//! clock. A write holds the account's lease slot while it runs, so a takeover waits until a
//! write that began under a live lease has finished, and every write after it is refused.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use kvp_format::SequenceNumber;

use crate::api::{RefQuery, RefStatus, SequenceLedger};
use crate::error::{Error, Result};
use crate::{
    AccountId, AccountInfo, BatchRecord, BatchRefs, BatchResults, Binding, Commit, Lease,
    LeaseAttempt, LeaseEntry, LeaseOwner, Ledger, NewBatch, PerLineAnswer, Pruned, Release,
    Reserve, StoredResult, Transition,
};

/// One account's lease in this process.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The last epoch granted (0: never).
    epoch: u64,
    /// The current (or last) holder, with its expiry.
    held: Option<(Lease, Instant)>,
}

impl Slot {
    pub(crate) fn live(&self, now: Instant) -> Option<&Lease> {
        self.held
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(l, _)| l)
    }

    /// Whether `lease` is still the account's: the last one granted, whether or not its time
    /// ran out. In one process nothing is lost by an expiry alone — only another grant (a new
    /// epoch) takes the account away — so a renewal delayed past the time to live (a busy
    /// blocking pool, a slow fsync) does not fail a run that no one else could take over.
    fn holds(&self, lease: &Lease) -> bool {
        self.held
            .as_ref()
            .is_some_and(|(l, _)| l.epoch == lease.epoch && l.owner == lease.owner)
    }
}

/// The sled ledger as a [`SequenceLedger`]: what the engine, the CLI and the service hold
/// when `[ledger] path` names a directory (the default).
#[derive(Debug, Clone)]
pub struct SledLedger {
    ledger: Arc<Ledger>,
    leases: Arc<Mutex<HashMap<AccountId, Arc<Mutex<Slot>>>>>,
}

impl SledLedger {
    /// The interface over an open ledger.
    pub fn new(ledger: Arc<Ledger>) -> SledLedger {
        SledLedger {
            ledger,
            leases: Arc::default(),
        }
    }

    /// The sled ledger itself, for its synchronous API (tests, tools).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    fn slot(&self, account: &AccountId) -> Arc<Mutex<Slot>> {
        let mut map = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(account.clone()).or_default().clone()
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| Error::Backend {
                context: "a blocking ledger call".into(),
                message: e.to_string(),
                transient: false,
                source: Some(Box::new(e)),
            })?
    }

    /// Runs the write `f` on the blocking pool while holding the lease's slot, if the lease is
    /// the account's live one.
    async fn fenced<T: Send + 'static>(
        &self,
        lease: &Lease,
        f: impl FnOnce(&Ledger, &AccountId) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let slot = self.slot(&lease.account);
        let lease = lease.clone();
        self.blocking(move |ledger| {
            let guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if !guard.holds(&lease) {
                return Err(Error::LeaseLost {
                    account: lease.account.clone(),
                    epoch: lease.epoch,
                });
            }
            let out = f(ledger, &lease.account);
            drop(guard);
            out
        })
        .await
    }
}

#[async_trait]
impl SequenceLedger for SledLedger {
    fn describe(&self) -> String {
        format!("sled ledger {}", self.ledger.path().display())
    }

    async fn acquire_lease(
        &self,
        account: &AccountId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<LeaseAttempt> {
        let slot = self.slot(account);
        let (account, owner) = (account.clone(), owner.clone());
        // The slot is held by a write for as long as its fsync takes: wait off the async threads.
        self.blocking(move |_| {
            let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if let Some(other) = guard.live(now)
                && other.owner != owner
            {
                return Ok(LeaseAttempt::Held(other.clone()));
            }
            guard.epoch += 1;
            let lease = Lease {
                account,
                owner,
                epoch: guard.epoch,
                expires_at: SystemTime::now() + ttl,
            };
            guard.held = Some((lease.clone(), now + ttl));
            Ok(LeaseAttempt::Acquired(lease))
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let slot = self.slot(&lease.account);
        let lease = lease.clone();
        self.blocking(move |_| {
            let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if !guard.holds(&lease) {
                return Err(Error::LeaseLost {
                    account: lease.account.clone(),
                    epoch: lease.epoch,
                });
            }
            let renewed = Lease {
                expires_at: SystemTime::now() + ttl,
                ..lease
            };
            guard.held = Some((renewed.clone(), now + ttl));
            Ok(renewed)
        })
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let slot = self.slot(&lease.account);
        let lease = lease.clone();
        self.blocking(move |ledger| {
            let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((held, until)) = guard.held.as_mut()
                && held.epoch == lease.epoch
                && held.owner == lease.owner
            {
                *until = Instant::now();
                held.expires_at = SystemTime::now();
                drop(guard);
                // No one works on the account now: its index may make room for others'.
                ledger.retire_refs(&lease.account);
            }
            Ok(())
        })
        .await
    }

    async fn leases(&self) -> Result<Vec<LeaseEntry>> {
        let slots: Vec<_> = {
            let map = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
            map.values().cloned().collect()
        };
        let now = Instant::now();
        let mut out: Vec<LeaseEntry> = slots
            .iter()
            .filter_map(|slot| {
                let guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
                guard.held.as_ref().map(|(lease, until)| LeaseEntry {
                    lease: lease.clone(),
                    live: now < *until,
                })
            })
            .collect();
        out.sort_by(|a, b| a.lease.account.cmp(&b.lease.account));
        Ok(out)
    }

    async fn reserve(&self, lease: &Lease, new: NewBatch) -> Result<Reserve> {
        self.fenced(lease, move |l, a| l.reserve(a, new)).await
    }

    async fn transition_with(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        to: Transition,
        commit: Commit,
    ) -> Result<BatchRecord> {
        self.fenced(lease, move |l, a| l.transition_with(a, seq, to, commit))
            .await
    }

    async fn resolve(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        to: Transition,
        note: String,
    ) -> Result<BatchRecord> {
        self.fenced(lease, move |l, a| l.resolve(a, seq, to, note))
            .await
    }

    async fn store_answer(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.fenced(lease, move |l, a| l.store_answer(a, seq, results, answer))
            .await
    }

    async fn complete_and_store(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        completed: Transition,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.fenced(lease, move |l, a| {
            l.complete_and_store(a, seq, completed, results, answer)
        })
        .await
    }

    async fn set_floor(&self, lease: &Lease, floor: SequenceNumber) -> Result<()> {
        self.fenced(lease, move |l, a| l.set_floor(a, floor)).await
    }

    async fn prune(&self, collected_before: SystemTime) -> Result<Pruned> {
        self.blocking(move |l| l.prune(collected_before)).await
    }

    async fn sync(&self) -> Result<()> {
        self.blocking(|l| l.sync()).await
    }

    async fn account_info(&self, account: &AccountId) -> Result<AccountInfo> {
        let account = account.clone();
        self.blocking(move |l| l.account_info(&account)).await
    }

    async fn batch(&self, account: &AccountId, seq: SequenceNumber) -> Result<Option<BatchRecord>> {
        let account = account.clone();
        self.blocking(move |l| l.batch(&account, seq)).await
    }

    async fn batches(&self, account: &AccountId) -> Result<Vec<BatchRecord>> {
        let account = account.clone();
        self.blocking(move |l| l.batches(&account)).await
    }

    async fn in_flight(&self) -> Result<Vec<(AccountId, BatchRecord)>> {
        self.blocking(|l| l.in_flight()).await
    }

    async fn accounts(&self) -> Result<Vec<AccountId>> {
        self.blocking(|l| l.accounts()).await
    }

    async fn batch_results(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<BatchResults> {
        let account = account.clone();
        self.blocking(move |l| l.batch_results(&account, seq)).await
    }

    async fn batch_refs(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<Option<BatchRefs>> {
        let account = account.clone();
        self.blocking(move |l| l.batch_refs(&account, seq)).await
    }

    async fn binding(&self, account: &AccountId, client_ref: &str) -> Result<Option<Binding>> {
        let (account, client_ref) = (account.clone(), client_ref.to_string());
        self.blocking(move |l| l.binding(&account, &client_ref))
            .await
    }

    async fn bindings_with(
        &self,
        account: &AccountId,
        queries: Vec<RefQuery>,
    ) -> Result<Vec<Option<Binding>>> {
        let account = account.clone();
        self.blocking(move |l| {
            queries
                .iter()
                .map(|q| l.binding_with(&account, &q.client_ref, &q.content_digest))
                .collect()
        })
        .await
    }

    async fn check_references(
        &self,
        account: &AccountId,
        queries: Vec<RefQuery>,
        release: Release,
    ) -> Result<Vec<RefStatus>> {
        let account = account.clone();
        self.blocking(move |l| {
            queries
                .iter()
                .map(|q| {
                    match l.check_reference_with(
                        &account,
                        &q.client_ref,
                        &q.content_digest,
                        release,
                    ) {
                        Ok(None) => Ok(RefStatus::Free),
                        Ok(Some(b)) => Ok(RefStatus::Bound(b)),
                        Err(Error::ContentConflict { existing, .. }) => {
                            Ok(RefStatus::ContentDiffers(existing))
                        }
                        Err(e) => Err(e),
                    }
                })
                .collect()
        })
        .await
    }

    async fn bindings_of(&self, account: &AccountId) -> Result<Vec<(String, Binding)>> {
        let account = account.clone();
        self.blocking(move |l| l.bindings_of(&account)).await
    }

    fn blocking_view(&self, account: &AccountId) -> Result<Box<dyn crate::AccountView>> {
        Ok(Box::new(crate::view::SledView {
            ledger: self.ledger.clone(),
            account: account.clone(),
            lease: self.slot(account),
        }))
    }

    async fn export(&self, out: Box<dyn Write + Send>) -> Result<u64> {
        self.blocking(move |l| l.export(out)).await
    }
}
