//! One batch per account in flight across runs: an async lock per account name, shared by
//! every `submit` and `collect` of one [`Orchestrator`](crate::Orchestrator).
//!
//! Within one run each account has one task, so the worker's order of steps is enough. Two
//! runs at once on one orchestrator (a service running several jobs) could otherwise put two
//! workers on one account: both would plan against the same ledger, the second would find the
//! first's batch Reserved and fail, or trigger out of order. An account's task therefore holds
//! its account's lock from planning until its worker returns; a run whose account is busy waits
//! its turn (jobs sharing an account queue behind each other).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// The locks, by account name. An entry is created on first use and kept: the map holds at
/// most one small entry per account the orchestrator has worked on.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccountLocks(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

/// Holds one account for its owner until dropped: no run of the same
/// [`Orchestrator`](crate::Orchestrator) plans or works on the account meanwhile.
#[derive(Debug)]
pub struct AccountGuard {
    _guard: OwnedMutexGuard<()>,
}

impl AccountLocks {
    fn entry(&self, account: &str) -> Arc<tokio::sync::Mutex<()>> {
        // The map holds plain values; a panic elsewhere cannot leave it half-written.
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(account.to_owned()).or_default().clone()
    }

    /// Waits until `account` is free, then holds it (fair: first come, first served).
    pub(crate) async fn lock(&self, account: &str) -> AccountGuard {
        AccountGuard {
            _guard: self.entry(account).lock_owned().await,
        }
    }

    /// Holds `account` if it is free now.
    pub(crate) fn try_lock(&self, account: &str) -> Option<AccountGuard> {
        self.entry(account)
            .try_lock_owned()
            .ok()
            .map(|g| AccountGuard { _guard: g })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_account_is_held_by_one_owner_at_a_time() {
        let locks = AccountLocks::default();
        let held = locks.lock("acme").await;
        assert!(locks.try_lock("acme").is_none(), "held");
        assert!(locks.try_lock("beta").is_some(), "another account is free");
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("acme").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "waits while held");
        drop(held);
        let second = waiting.await.unwrap();
        assert!(locks.try_lock("acme").is_none());
        drop(second);
        assert!(locks.try_lock("acme").is_some());
    }
}
