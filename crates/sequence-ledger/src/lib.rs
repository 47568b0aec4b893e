//! The durable memory of paybatch: which sequence numbers each batch account has used, which
//! transactions went into which batch, how far each batch got, and the gateway's per-line
//! answers. It is what makes paybatch safe to kill (PROTOCOL.md §2 items 5, 6, 8, 9).
//!
//! One sled 0.34 database directory per deployment, owned by one process at a time. Per batch
//! it keeps one record, one blob of its lines (references and content digests) and one blob of
//! its results; the idempotency index (reference → batch, line, digest) is built from the
//! blobs in memory, per account, on first use (layout and sizes in the crate README).
//!
//! The ledger's public API, as the engine, the CLI and the service hold it, is the async
//! [`SequenceLedger`] interface (with [`SequenceLedgerExt`]): [`SledLedger`] puts this crate's
//! sled [`Ledger`] behind it, the `ledger-postgres` crate a shared PostgreSQL database. Every
//! write for an account takes the caller's [`Lease`] on it (one process drives an account at a
//! time; [`LeaseKeeper`] renews it). [`backend`] holds what another backend needs to behave
//! exactly like this one; `conformance` (feature `test-support`) checks that it does.
//!
//! Main types:
//! - [`Ledger`]: open it, [`Ledger::reserve`] a number with its bindings, move batches along
//!   with [`Ledger::transition`] (or [`Ledger::transition_with`] and [`Commit::Deferred`] for
//!   the steps that need no fsync of their own), keep results with [`Ledger::store_results`]
//!   (or the verdict and the results in one write with [`Ledger::complete_and_store`]), read
//!   a batch's results back with [`Ledger::batch_results`], drop old ones with
//!   [`Ledger::prune`], query it.
//! - [`AccountId`]: the batch account sequence numbers are scoped to.
//! - [`NewBatch`] / [`Reserve`]: what a reservation asks for and its three answers (reserved,
//!   lost race, reference conflict).
//! - [`BatchState`] / [`Transition`] / [`Verdict`]: the state machine, with the full table of
//!   legal steps on [`BatchState`]; [`CompleteFields`] keeps the rest of COMPLETE (`xResult`,
//!   the echoes) beside the verdict.
//! - [`BatchRecord`], [`Binding`], [`StoredResult`]: what the ledger remembers;
//!   [`BatchResults`] / [`LineResult`] and [`BatchRefs`] / [`LineRef`]: a batch's results and
//!   lines, read in one piece and borrowed line by line.
//!
//! ```
//! use kvp_format::SequenceNumber;
//! use sequence_ledger::{
//!     AccountId, BatchState, Ledger, NewBatch, NewBinding, BatchOutcome, Reserve, StoredResult,
//!     Transition, Verdict, content_digest,
//! };
//!
//! let dir = tempfile::tempdir()?;
//! let ledger = Ledger::open(dir.path().join("ledger"))?;
//! let acme = AccountId::new("acme")?;
//!
//! let seq = ledger.next_sequence(&acme)?;                     // 1 for a new account
//! let request = b"xIndex=0&xSequenceNumber=1&xCommand=cc%3Asale&xAmount=5.00\n";
//! let digest = content_digest([("xCommand", "cc:sale"), ("xAmount", "5.00")]);
//! let new = NewBatch {
//!     sequence: seq,
//!     request_len: request.len() as u64,
//!     external_reference: None,
//!     lines: vec![NewBinding { client_ref: "order-1".into(), index: 0, content_digest: digest }],
//! };
//! let Reserve::Reserved(batch) = ledger.reserve(&acme, new)? else { panic!("fresh ledger") };
//! assert_eq!(batch.state, BatchState::Reserved);          // durable: flushed and fsynced
//!
//! ledger.transition(&acme, seq, Transition::RequestUploaded)?;
//! ledger.transition(&acme, seq, Transition::Triggered)?;
//! ledger.transition(&acme, seq, Transition::Completed(Verdict::new(BatchOutcome::Success, "Success")))?;
//! let fields = kvp_format::Record::from_iter([("xResult", "A")]);
//! ledger.store_results(&acme, seq, vec![StoredResult { index: 0, fields }])?;
//! let done = ledger.transition(&acme, seq, Transition::Cleaned)?;
//! assert_eq!(done.state, BatchState::Cleaned);
//!
//! let again = ledger.check_reference(&acme, "order-1", &digest)?;
//! assert_eq!(again.map(|b| b.to_string()).as_deref(), Some("batch 1, line 0"));
//! assert_eq!(ledger.next_sequence(&acme)?, SequenceNumber::new(2)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - **Durable before returning.** Every write ([`Ledger::reserve`], [`Ledger::transition`],
//!   [`Ledger::store_results`], [`Ledger::complete_and_store`], [`Ledger::set_floor`],
//!   [`Ledger::prune`]) is one sled transaction across the trees it touches (per batch for a
//!   prune), followed by sled's `flush()` and then fsyncs (module `durable`): sled 0.34's
//!   flush ends in `sync_file_range`, which survives a killed process but not a power cut (no
//!   file metadata, no device cache flush; blob files are never synced and snapshot renames
//!   leave the directory unsynced). After the flush the ledger `fdatasync`s sled's log file,
//!   fsyncs new blob files and the directories. On Linux an fsync through any descriptor
//!   writes back the file's dirty pages, whoever wrote them. Cost: see the crate README.
//! - **Deferred steps, in order.** A step that can be repeated after a crash (`Triggered`,
//!   `Completed`, `Stuck`, `Cleaned`; [`Transition::can_defer`]) may be recorded with
//!   [`Commit::Deferred`]: written without a flush, durable with the next durable write of any
//!   account, [`Ledger::sync`] or the drop of the ledger. After a crash it may be lost, and then
//!   so is every write after it, never an earlier one (sled's log is recovered as a prefix).
//!   Which steps need an fsync and why: crate README.
//! - **Atomic.** After a crash each write is entirely there or entirely absent (sled
//!   transactions are recovered atomically).
//! - **Numbers only go up.** A reserved number is strictly above every earlier number of the
//!   account and its floor, never reused; past 999,999,999 is [`Error::Exhausted`], never a
//!   wrap-around.
//! - **A lost race is a value.** Two tasks reserving the same number: one gets
//!   [`Reserve::Reserved`], the other [`Reserve::LostRace`] with the next number to try.
//! - **One process.** A second process gets [`Error::InUse`] naming the holder's pid (a lock
//!   file with `flock`, released by the kernel when the holder dies).
//!   [`Ledger::open_read_only`] changes no file.
//! - **Ordered triggers.** [`Transition::Triggered`] is refused when it could make the gateway
//!   ignore a batch (see [`BatchState`]).
//! - **No secrets.** Card numbers, CVV, track data, bank account/routing numbers and keys are
//!   never stored: results with such fields are refused, COMPLETE's sensitive echoes (an
//!   `xKey`) are dropped from [`CompleteFields`], and the content digest hashes masked values
//!   only ([`content_digest`]).
//! - **Versioned layout.** A `format_version` record (currently 3). A ledger of version 1 or 2
//!   is migrated when opened (safe to interrupt; a read-only open migrates its private copy);
//!   another version is [`Error::UnsupportedFormat`], so older code refuses a newer ledger.
//! - **Retention keeps idempotency.** [`Ledger::prune`] drops the results of batches cleaned
//!   before a date but keeps their references, digests, states and verdicts (and the results
//!   of rejected batches): no transaction is ever sent twice because its results were pruned.
#![warn(missing_docs)]

mod account;
mod answer;
mod api;
pub mod backend;
mod codec;
mod crash;
mod digest;
mod durable;
mod error;
mod export;
mod index;
mod keeper;
mod lease;
mod ledger;
mod migrate;
mod pieces;
mod prune;
mod query;
mod record;
mod refs;
mod reserve;
mod results;
mod sled_backend;
mod state;
mod steps;
mod transition;
mod view;

#[cfg(feature = "test-support")]
pub mod conformance;

pub use account::AccountId;
pub use api::{RefQuery, RefStatus, SequenceLedger, SequenceLedgerExt};
#[doc(hidden)]
pub use crash::{CRASH_ENV, LEDGER_CRASH_POINTS, MIGRATION_CRASH_POINTS, crash_point};
pub use digest::{batch_digest, content_digest, sha256};
pub use durable::Durability;
pub use error::{Error, Result};
pub use keeper::LeaseKeeper;
pub use lease::{DEFAULT_LEASE_TTL, Lease, LeaseAttempt, LeaseEntry, LeaseOwner};
pub use ledger::{Commit, Ledger, LedgerOptions};
pub use prune::Pruned;
pub use record::{
    AccountInfo, BatchRecord, Binding, ConflictKind, NewBatch, NewBinding, PerLineAnswer,
    RefConflict, Release, Reserve, StoredResult,
};
pub use refs::{BatchRefs, LineRef};
pub use results::{BatchResults, Fields, LineResult};
pub use sled_backend::SledLedger;
pub use state::{BatchOutcome, BatchState, CompleteFields, Stamp, Transition, Verdict};
pub use view::AccountView;
