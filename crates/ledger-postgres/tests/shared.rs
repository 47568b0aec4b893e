//! Several processes on one PostgreSQL ledger: each `PgLedger` here is what one process holds
//! (its own pool and its own in-memory index).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ledger_postgres::test_support::{fresh_database, server_url, sql};
use ledger_postgres::{PgLedger, PgOptions};
use sequence_ledger::conformance::{account, batch, digest, seq};
use sequence_ledger::{
    Error, LeaseAttempt, LeaseOwner, Reserve, SequenceLedger, SequenceLedgerExt, Transition,
};

const TTL: Duration = Duration::from_secs(60);

async fn two_processes(url: &str, label: &str) -> (PgLedger, PgLedger, PgOptions) {
    let options = fresh_database(url, label).await;
    let a = PgLedger::connect(options.clone()).await.unwrap();
    let b = PgLedger::connect(options.clone()).await.unwrap();
    (a, b, options)
}

async fn acquire(
    l: &dyn SequenceLedger,
    name: &str,
    owner: &LeaseOwner,
    ttl: Duration,
) -> sequence_ledger::Lease {
    for _ in 0..400 {
        match l.acquire_lease(&account(name), owner, ttl).await.unwrap() {
            LeaseAttempt::Acquired(lease) => return lease,
            LeaseAttempt::Held(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{name}: never free");
}

/// A process that takes an account over reads the references the other bound since it last
/// looked: its index is loaded again when it takes the lease.
#[tokio::test]
async fn a_takeover_sees_what_the_other_process_bound() {
    let Some(url) = server_url("a_takeover_sees_what_the_other_process_bound") else {
        return;
    };
    let (a, b, _) = two_processes(&url, "takeover").await;
    let (pa, pb) = (
        LeaseOwner::this_process(),
        LeaseOwner::this_process().renamed(),
    );
    let acme = account("acme");
    // B looks at the account first (its index is loaded, empty) and reserves batch 1.
    let lb = acquire(&b, "acme", &pb, Duration::from_millis(300)).await;
    match b.reserve(&lb, batch(1, &["early"])).await.unwrap() {
        Reserve::Reserved(_) => {}
        other => panic!("{other:?}"),
    }
    // A takes over once B's lease expired and binds r1, r2.
    let la = acquire(&a, "acme", &pa, TTL).await;
    assert!(la.epoch > lb.epoch);
    match a.reserve(&la, batch(2, &["r1", "r2"])).await.unwrap() {
        Reserve::Reserved(_) => {}
        other => panic!("{other:?}"),
    }
    // B, whose lease expired, reads what A bound at once, without the lease.
    assert_eq!(
        b.check_reference(&acme, "r2", &digest("1.00"))
            .await
            .unwrap()
            .map(|x| x.sequence),
        Some(seq(2))
    );
    assert_eq!(
        b.binding(&acme, "r1").await.unwrap().map(|x| x.sequence),
        Some(seq(2))
    );
    a.release_lease(&la).await.unwrap();
    // B takes it back: r1 is bound in batch 2, though B never wrote it.
    let lb2 = acquire(&b, "acme", &pb, TTL).await;
    match b.reserve(&lb2, batch(3, &["r1", "r3"])).await.unwrap() {
        Reserve::Conflict { conflicts } => {
            assert_eq!(conflicts.len(), 1);
            assert_eq!(conflicts[0].existing.sequence, seq(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        b.check_reference(&acme, "r2", &digest("1.00"))
            .await
            .unwrap()
            .map(|x| x.sequence),
        Some(seq(2))
    );
    // B's reads see A's work even without a lease.
    assert_eq!(b.next_sequence(&acme).await.unwrap(), seq(3));
    let leases = b.leases().await.unwrap();
    assert_eq!(leases[0].lease.owner, pb);
}

/// Expiry is the database's clock: a lease the database says has expired is lost, whatever
/// the holder's copy says; and no client clock can make a live lease expire.
#[tokio::test]
async fn the_database_clock_decides_expiry() {
    let Some(url) = server_url("the_database_clock_decides_expiry") else {
        return;
    };
    let (a, b, options) = two_processes(&url, "dbclock").await;
    let (pa, pb) = (
        LeaseOwner::this_process(),
        LeaseOwner::this_process().renamed(),
    );
    let la = acquire(&a, "acme", &pa, TTL).await;
    // Our copy says it is good for a minute.
    assert!(la.expires_at > SystemTime::now() + Duration::from_secs(30));
    // The database's clock passes it (as after a pause of the holder).
    sql(&options)
        .await
        .execute(
            "UPDATE paybatch_leases SET expires_at = clock_timestamp() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(
        a.reserve(&la, batch(1, &["x"])).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        a.renew_lease(&la, TTL).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(!b.leases().await.unwrap()[0].live);
    // B takes it at once: expired by the database's clock.
    let lb = match b.acquire_lease(&account("acme"), &pb, TTL).await.unwrap() {
        LeaseAttempt::Acquired(l) => l,
        other => panic!("{other:?}"),
    };
    assert!(lb.epoch > la.epoch);
    assert!(matches!(
        b.reserve(&lb, batch(1, &["x"])).await.unwrap(),
        Reserve::Reserved(_)
    ));
    assert!(matches!(
        a.transition(&la, seq(1), Transition::RequestUploaded).await,
        Err(Error::LeaseLost { .. })
    ));
}

/// Two holders of one process racing for the same number (the lease's owner may run tasks
/// in parallel): one reservation, one lost race naming the next number.
#[tokio::test]
async fn a_race_for_one_number_is_won_once() {
    let Some(url) = server_url("a_race_for_one_number_is_won_once") else {
        return;
    };
    let (a, b, _) = two_processes(&url, "race").await;
    let owner = LeaseOwner::this_process();
    let lease = acquire(&a, "acme", &owner, TTL).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for (i, l) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let lease = lease.clone();
        tasks.push(tokio::spawn(async move {
            l.reserve(&lease, batch(1, &[&format!("t{i}")]))
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Reserve::Reserved(_) => won += 1,
            Reserve::LostRace { next } => assert_eq!(next, seq(2)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
}

/// A view made while this process holds the account's lease reads the shared index. When
/// another job of the same process takes the lease after it (the index is forgotten, then
/// loaded again), the view still finds every binding: "not loaded" never reads as "not
/// bound", which would report a sent line `not_processed` (`paybatch serve` with two jobs on
/// one account, the merge of the first still running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_finds_bindings_after_the_lease_changed_hands_in_this_process() {
    let Some(url) = server_url("a_view_finds_bindings_after_the_lease_changed_hands") else {
        return;
    };
    let (a, _b, _) = two_processes(&url, "view_lease").await;
    let owner = LeaseOwner::this_process();
    let acme = account("acme");
    let first = acquire(&a, "acme", &owner, TTL).await;
    match a.reserve(&first, batch(1, &["r1", "r2"])).await.unwrap() {
        Reserve::Reserved(_) => {}
        other => panic!("{other:?}"),
    }
    let view = {
        let a = a.clone();
        let acme = acme.clone();
        tokio::task::spawn_blocking(move || a.blocking_view(&acme))
            .await
            .unwrap()
            .unwrap()
    };
    a.release_lease(&first).await.unwrap();
    let second = acquire(&a, "acme", &owner, TTL).await;
    let view = tokio::task::spawn_blocking(move || {
        ["r1", "r2", "r3"].map(|r| {
            view.binding_with(r, &digest("1.00"))
                .unwrap()
                .map(|b| b.sequence)
        })
    })
    .await
    .unwrap();
    assert_eq!(view, [Some(seq(1)), Some(seq(1)), None]);
    a.release_lease(&second).await.unwrap();
}
