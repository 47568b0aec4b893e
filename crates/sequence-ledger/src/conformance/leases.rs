//! Leases and fencing: the same on every backend.

use std::sync::Arc;
use std::time::Duration;

use super::{TTL, account, batch, reserve, seq, trigger};
use crate::{
    BatchState, Error, LeaseAttempt, LeaseOwner, PerLineAnswer, Reserve, SequenceLedger,
    SequenceLedgerExt, Transition,
};

/// Waits (bounded) until `owner` gets the account, polling: the other lease must expire by
/// the ledger's clock first.
async fn acquire_when_free(
    l: &dyn SequenceLedger,
    name: &str,
    owner: &LeaseOwner,
    ttl: Duration,
) -> crate::Lease {
    for _ in 0..400 {
        match l.acquire_lease(&account(name), owner, ttl).await.unwrap() {
            LeaseAttempt::Acquired(lease) => return lease,
            LeaseAttempt::Held(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{name}: the lease never expired (20 s)");
}

fn lost(e: &Result<impl std::fmt::Debug, Error>, epoch: u64) -> bool {
    matches!(e, Err(Error::LeaseLost { epoch: ep, .. }) if *ep == epoch)
}

pub(super) async fn leases_fence_writes(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let a = LeaseOwner::this_process();
    let b = a.renamed();
    let first = match l.acquire_lease(&account("acme"), &a, TTL).await.unwrap() {
        LeaseAttempt::Acquired(lease) => lease,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.owner, a);
    // Another owner sees who holds it and until when.
    match l.acquire_lease(&account("acme"), &b, TTL).await.unwrap() {
        LeaseAttempt::Held(other) => {
            assert_eq!((other.owner, other.epoch), (a.clone(), first.epoch));
            assert_eq!(other.expires_at, first.expires_at);
        }
        other => panic!("{other:?}"),
    }
    let e = l.lease_now(&account("acme"), &b, TTL).await;
    match e {
        Err(Error::LeaseHeld { ref holder, .. }) => assert!(holder.contains(&a.id), "{holder}"),
        other => panic!("{other:?}"),
    }
    // Another account is free.
    assert!(matches!(
        l.acquire_lease(&account("beta"), &b, TTL).await.unwrap(),
        LeaseAttempt::Acquired(_)
    ));
    reserve(l, &first, batch(1, &["x"])).await;
    // The holder asks again: a new epoch, and the old lease value no longer writes.
    let second = match l.acquire_lease(&account("acme"), &a, TTL).await.unwrap() {
        LeaseAttempt::Acquired(lease) => lease,
        other => panic!("{other:?}"),
    };
    assert!(second.epoch > first.epoch);
    assert!(lost(
        &l.reserve(&first, batch(2, &["y"])).await,
        first.epoch
    ));
    assert!(lost(
        &l.transition(&first, seq(1), Transition::RequestUploaded)
            .await,
        first.epoch
    ));
    assert!(lost(&l.set_floor(&first, seq(10)).await, first.epoch));
    assert!(lost(&l.renew_lease(&first, TTL).await, first.epoch));
    // Nothing of those was written.
    assert_eq!(
        l.batch(&account("acme"), seq(1))
            .await
            .unwrap()
            .unwrap()
            .state,
        BatchState::Reserved
    );
    assert_eq!(
        l.account_info(&account("acme")).await.unwrap().high_water,
        Some(seq(1))
    );
    // A lease for one account does not write another.
    let mut wrong = second.clone();
    wrong.account = account("beta");
    assert!(matches!(
        l.reserve(&wrong, batch(1, &["z"])).await,
        Err(Error::LeaseLost { .. })
    ));
    // The live one writes and renews (same epoch, a later or equal expiry).
    trigger(l, &second, 1).await;
    let renewed = l.renew_lease(&second, TTL).await.unwrap();
    assert_eq!(renewed.epoch, second.epoch);
    assert!(renewed.expires_at >= second.expires_at);
    let listed = l.leases().await.unwrap();
    let acme = listed
        .iter()
        .find(|e| e.lease.account == account("acme"))
        .unwrap();
    assert!(acme.live);
    assert_eq!((acme.lease.epoch, &acme.lease.owner), (second.epoch, &a));
}

pub(super) async fn an_expired_lease_is_taken_over(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let a = LeaseOwner::this_process();
    let b = a.renamed();
    let short = Duration::from_millis(300);
    let old = match l.acquire_lease(&account("acme"), &a, short).await.unwrap() {
        LeaseAttempt::Acquired(lease) => lease,
        other => panic!("{other:?}"),
    };
    reserve(l, &old, batch(1, &["r1"])).await;
    l.transition(&old, seq(1), Transition::RequestUploaded)
        .await
        .unwrap();
    reserve(l, &old, batch(2, &["r2"])).await;
    // A is paused past its lease; B takes the account over with a higher epoch.
    let new = acquire_when_free(l, "acme", &b, TTL).await;
    assert!(new.epoch > old.epoch);
    // A cannot reserve a number nor move a batch forward any more.
    assert!(lost(&l.reserve(&old, batch(3, &["r3"])).await, old.epoch));
    assert!(lost(
        &l.transition(&old, seq(1), Transition::Triggered).await,
        old.epoch
    ));
    assert!(lost(&l.renew_lease(&old, TTL).await, old.epoch));
    // Nor store an answer, complete a batch or move the floor.
    assert!(lost(
        &l.store_answer(&old, seq(1), vec![super::approved(0)], PerLineAnswer::Read)
            .await,
        old.epoch
    ));
    assert!(lost(
        &l.complete_and_store(
            &old,
            seq(1),
            super::success(),
            vec![super::approved(0)],
            PerLineAnswer::Read,
        )
        .await,
        old.epoch
    ));
    assert!(lost(&l.set_floor(&old, seq(50)).await, old.epoch));
    // B sees what A left: batch 1 uploaded (B finishes it), batch 2 Reserved (never
    // triggered: B may abandon it, its references released).
    let acme = account("acme");
    assert_eq!(
        l.batch(&acme, seq(1)).await.unwrap().unwrap().state,
        BatchState::RequestUploaded
    );
    assert_eq!(l.next_sequence(&acme).await.unwrap(), seq(3));
    l.resolve(
        &new,
        seq(2),
        Transition::Abandoned {
            reason: "taken over: never triggered".into(),
        },
        "taken over".into(),
    )
    .await
    .unwrap();
    l.transition(&new, seq(1), Transition::Triggered)
        .await
        .unwrap();
    // The references A bound are known to B's view of the account.
    assert_eq!(
        l.binding(&acme, "r1").await.unwrap().map(|b| b.sequence),
        Some(seq(1))
    );
    match l.reserve(&new, batch(3, &["r1", "r2"])).await.unwrap() {
        Reserve::Conflict { conflicts } => {
            assert_eq!(conflicts.len(), 1, "r2 was released, r1 is bound");
            assert_eq!(conflicts[0].client_ref, "r1");
        }
        other => panic!("{other:?}"),
    }
}

pub(super) async fn a_released_lease_is_free(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let a = LeaseOwner::this_process();
    let b = a.renamed();
    let first = match l.acquire_lease(&account("acme"), &a, TTL).await.unwrap() {
        LeaseAttempt::Acquired(lease) => lease,
        other => panic!("{other:?}"),
    };
    l.release_lease(&first).await.unwrap();
    // Released twice: nothing.
    l.release_lease(&first).await.unwrap();
    let second = match l.acquire_lease(&account("acme"), &b, TTL).await.unwrap() {
        LeaseAttempt::Acquired(lease) => lease,
        other => panic!("{other:?}"),
    };
    assert!(second.epoch > first.epoch, "epochs only grow");
    assert!(lost(
        &l.reserve(&first, batch(1, &["x"])).await,
        first.epoch
    ));
    // A's release of a lease B now holds does not free it.
    l.release_lease(&first).await.unwrap();
    assert!(matches!(
        l.acquire_lease(&account("acme"), &a, TTL).await.unwrap(),
        LeaseAttempt::Held(_)
    ));
    reserve(l, &second, batch(1, &["x"])).await;
    let listed = l.leases().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].live);
    l.release_lease(&second).await.unwrap();
    assert!(!l.leases().await.unwrap()[0].live);
}

pub(super) async fn a_kept_lease_is_renewed_until_lost(ledger: Arc<dyn SequenceLedger>) {
    let l = ledger.as_ref();
    let a = LeaseOwner::this_process();
    let b = a.renamed();
    let ttl = Duration::from_millis(400);
    let lease = match l.acquire_lease(&account("acme"), &a, ttl).await.unwrap() {
        LeaseAttempt::Acquired(lease) => lease,
        other => panic!("{other:?}"),
    };
    let keeper = crate::LeaseKeeper::start(ledger.clone(), lease.clone(), ttl);
    // Several times its time to live later, it is still held: renewed in the background.
    for _ in 0..6 {
        tokio::time::sleep(ttl / 2).await;
        assert!(!keeper.is_lost());
        assert!(matches!(
            l.acquire_lease(&account("acme"), &b, ttl).await.unwrap(),
            LeaseAttempt::Held(_)
        ));
    }
    reserve(l, keeper.lease(), batch(1, &["k"])).await;
    // Taken away (the holder itself asks again: a new epoch): the keeper says it is lost.
    let newer = match l.acquire_lease(&account("acme"), &a, TTL).await.unwrap() {
        LeaseAttempt::Acquired(lease) => lease,
        other => panic!("{other:?}"),
    };
    tokio::time::timeout(Duration::from_secs(20), keeper.lost())
        .await
        .expect("the keeper notices the lost lease");
    assert!(keeper.is_lost());
    assert!(lost(
        &l.reserve(keeper.lease(), batch(2, &["l"])).await,
        lease.epoch
    ));
    // Releasing a lost keeper's lease does not free the newer one.
    keeper.release().await.unwrap();
    assert!(matches!(
        l.acquire_lease(&account("acme"), &b, TTL).await.unwrap(),
        LeaseAttempt::Held(h) if h.epoch == newer.epoch
    ));
}
