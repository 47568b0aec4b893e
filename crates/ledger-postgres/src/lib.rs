//! The shared paybatch ledger on PostgreSQL: several paybatch processes, on several machines,
//! share one ledger; an account is driven by one of them at a time, the holder of its lease.
//!
//! [`PgLedger`] implements [`sequence_ledger::SequenceLedger`] with the same behaviour as the
//! embedded sled ledger (the same rules, from `sequence_ledger::backend`, and the same
//! conformance suite): per batch one row holding its record (JSON), its lines blob and, once
//! collected, its results blob — the layout of the sled ledger's format 2.
//!
//! Main types: [`PgLedger`] (connect, migrate, the interface), [`PgOptions`] (the URL, the
//! pool), [`schema`] (the versioned schema paybatch creates and migrates itself).
//!
//! ```no_run
//! # async fn f() -> sequence_ledger::Result<()> {
//! use std::sync::Arc;
//! use ledger_postgres::{PgLedger, PgOptions};
//! use sequence_ledger::{AccountId, LeaseOwner, SequenceLedger, SequenceLedgerExt, DEFAULT_LEASE_TTL};
//!
//! let url = std::env::var("PAYBATCH_LEDGER_URL").unwrap_or_default();
//! let ledger: Arc<dyn SequenceLedger> = Arc::new(PgLedger::connect(PgOptions::new(&url)?).await?);
//! let acme = AccountId::new("acme")?;
//! let lease = ledger.lease_now(&acme, &LeaseOwner::this_process(), DEFAULT_LEASE_TTL).await?;
//! let next = ledger.next_sequence(&acme).await?;
//! # let _ = (lease, next); Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **Durable before returning.** Every write is one transaction committed with
//!   `synchronous_commit` on (the server's `fsync` must be on): after the call returns it
//!   survives a crash of the database. A step recorded with `Commit::Deferred` is committed
//!   durably too: the database can crash while the process lives on, and a lost step the
//!   process has built on (Triggered, then Completed) would make its next step illegal.
//! - **Fenced by leases.** Every write for an account first checks, in its transaction, that
//!   the caller's lease (owner id and epoch) is the account's live one by the database's clock,
//!   and locks the lease row (`FOR SHARE`) until it commits: a takeover waits for a write that
//!   began under a live lease, and every write after a takeover fails with
//!   `Error::LeaseLost`. A lease's epoch grows with every new holder; its expiry is set and
//!   compared by the database's clock only (`clock_timestamp()`), never the client's.
//! - **Numbers only go up**: the account row is locked (`FOR UPDATE`) for each reservation;
//!   a lost race is `Reserve::LostRace`.
//! - **Idempotency index**: per account in memory, loaded from the batches' lines blobs; it is
//!   forgotten when this process takes the account's lease (another process may have bound
//!   references) and kept current by the holder's own writes. A read about an account this
//!   process does not hold (by its own clock) is answered from a private copy loaded then.
//! - **A database restart loses nothing**: a call that meets a broken connection or a
//!   restarting server retries for `PgOptions::retry_for` on a fresh connection; a write whose
//!   commit may have happened before the connection broke checks for it before trying again,
//!   so it is applied once.
#![warn(missing_docs)]

mod api;
mod error;
mod ledger;
mod options;
pub mod schema;
#[cfg(feature = "test-support")]
pub mod test_support;
mod view;
mod writes;

pub use ledger::PgLedger;
pub use options::PgOptions;
pub use writes::Copied;
