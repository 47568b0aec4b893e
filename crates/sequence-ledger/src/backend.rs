//! What another storage backend of [`crate::SequenceLedger`] needs to behave exactly like the
//! sled [`crate::Ledger`]: the rules (which steps are legal, what a reservation and a
//! collection record, which batches a prune drops), the blob layouts of a batch's lines and
//! results, the record's encoding, the in-memory idempotency index and the export's lines.
//! The sled ledger uses the same functions, so both backends apply one set of rules.
//!
//! A backend stores per batch: the record ([`encode_record`]), the lines blob (from
//! [`reserved_record`]) and, once collected, the results blob ([`encode_results`]); per
//! account: [`crate::AccountInfo`]. It keeps a [`ReferenceIndex`] loaded per account from
//! the records and lines blobs, and updates it after each write that binds or releases lines.

use bytes::Bytes;
use kvp_format::SequenceNumber;

use crate::error::Result;
use crate::index::{Holder, RefIndex, digest_prefix};
use crate::{AccountId, BatchRecord, BatchRefs, BatchResults, Binding, NewBatch, Release};

pub use crate::export::ExportWriter;
pub use crate::steps::{
    PruneAction, apply_transition, check_trigger_order, collect_record, prune_action,
    reserved_record,
};

/// The layout version of records and blobs this code writes (the sled ledger's
/// `format_version`).
pub const FORMAT_VERSION: u32 = crate::codec::FORMAT_VERSION;

/// A batch record as stored (JSON, as the sled ledger keeps it).
///
/// # Errors
/// [`crate::Error::Corrupt`] if it cannot be encoded.
pub fn encode_record(record: &BatchRecord) -> Result<Vec<u8>> {
    crate::codec::encode_batch(record)
}

/// A stored batch record; `what` names it in an error.
///
/// # Errors
/// [`crate::Error::Corrupt`].
pub fn decode_record(bytes: &[u8], what: impl Fn() -> String) -> Result<BatchRecord> {
    crate::codec::decode_batch(bytes, what)
}

/// A batch's results as one blob (the layout of `results.rs`).
pub fn encode_results(results: &[crate::StoredResult]) -> Vec<u8> {
    crate::results::encode(results)
}

/// A stored results blob, checked; `what` names it in an error.
///
/// # Errors
/// [`crate::Error::Corrupt`].
pub fn decode_results(blob: Bytes, what: impl Fn() -> String) -> Result<BatchResults> {
    BatchResults::decode(blob, what)
}

/// A stored lines blob (references and digests), checked; `what` names it in an error.
///
/// # Errors
/// [`crate::Error::Corrupt`].
pub fn decode_refs(blob: Bytes, what: impl Fn() -> String) -> Result<BatchRefs> {
    BatchRefs::decode(blob, what)
}

/// The content digest of line `index` in a stored lines blob, without decoding the rest.
pub fn refs_digest_at(blob: &[u8], index: u64) -> Option<[u8; 32]> {
    crate::refs::digest_at(blob, index)
}

/// Milliseconds since the Unix epoch, as the ledger stamps states.
pub fn now_ms() -> u64 {
    crate::ledger::now_ms()
}

/// The number after `last` (1 when there is none).
///
/// # Errors
/// [`crate::Error::Exhausted`] past 999,999,999.
pub fn next_after(account: &AccountId, last: Option<SequenceNumber>) -> Result<SequenceNumber> {
    crate::query::next_after(account, last)
}

/// A reference found in the [`ReferenceIndex`]: its batch and line, and the first 128 bits of
/// its content digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHit {
    /// The batch.
    pub sequence: SequenceNumber,
    /// The line.
    pub index: u64,
    digest: [u64; 2],
}

impl IndexHit {
    /// Whether `digest` is the bound content (as far as 128 bits tell).
    pub fn same_content(&self, digest: &[u8; 32]) -> bool {
        self.digest == digest_prefix(digest)
    }

    /// The binding, given the full content digest (the caller's when
    /// [`IndexHit::same_content`], else read from the batch's lines blob).
    pub fn binding(&self, content_digest: [u8; 32]) -> Binding {
        Binding {
            sequence: self.sequence,
            index: self.index,
            content_digest,
        }
    }
}

/// The idempotency index in memory, per account (the sled ledger's, 40 bytes a reference):
/// which batch and line each reference is bound to, and which finished batches give their
/// lines back. Load an account before asking about it ([`ReferenceIndex::load`]); forget it
/// when another process may have written for it ([`ReferenceIndex::forget`]: a lease taken).
#[derive(Debug, Default)]
pub struct ReferenceIndex {
    inner: RefIndex,
}

impl ReferenceIndex {
    /// An empty index.
    pub fn new() -> ReferenceIndex {
        ReferenceIndex::default()
    }

    /// Whether the account is loaded.
    pub fn is_loaded(&self, account: &AccountId) -> bool {
        self.inner.is_loaded(account)
    }

    /// Loads the account from every batch record of it (`with_outcome`: the indexes of the
    /// lines that carry an outcome of their own, asked only for a rejected batch) and its
    /// lines blobs **in number order**. Replaces what was loaded.
    ///
    /// # Errors
    /// Whatever the iterators or `with_outcome` return; [`crate::Error::Corrupt`].
    pub fn load(
        &self,
        account: &AccountId,
        records: impl Iterator<Item = Result<BatchRecord>>,
        with_outcome: impl FnMut(&BatchRecord) -> Result<Vec<u64>>,
        blobs: impl Iterator<Item = Result<(SequenceNumber, BatchRefs)>>,
    ) -> Result<()> {
        let built = self.inner.build(account, records, with_outcome, blobs)?;
        self.inner.forget(account);
        let lock = self.inner.loaded_account(account, || Ok(built))?;
        drop(lock);
        Ok(())
    }

    /// Forgets the account: it must be loaded again before its next use.
    pub fn forget(&self, account: &AccountId) {
        self.inner.forget(account);
    }

    /// Where `client_ref` is bound, if it is; with `release`, a line its batch gives back under
    /// that rule counts as not bound.
    ///
    /// # Errors
    /// A transient [`crate::Error::Backend`] when the account is not loaded (never loaded,
    /// forgotten at a lease change, or being reloaded right now): "not loaded" must never read
    /// as "not bound", which would report a sent line `not_processed` or bind it a second
    /// time. [`crate::Error::Corrupt`] for a damaged entry.
    pub fn lookup(
        &self,
        account: &AccountId,
        client_ref: &str,
        release: Option<Release>,
    ) -> Result<Option<IndexHit>> {
        let key = self.inner.key(client_ref);
        let lock = self
            .inner
            .loaded_account(account, || Err(not_loaded(account)))?;
        let refs = lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(slot) = refs.table.get(&key) else {
            return Ok(None);
        };
        if release.is_some_and(|r| refs.released(slot, r)) {
            return Ok(None);
        }
        Ok(Some(IndexHit {
            sequence: slot.sequence()?,
            index: u64::from(slot.index),
            digest: slot.digest,
        }))
    }

    /// Records a reserved batch's lines (after its write committed), if the account is loaded.
    pub fn bind(&self, account: &AccountId, new: &NewBatch) {
        let Ok(lock) = self
            .inner
            .loaded_account(account, || Err(not_loaded(account)))
        else {
            return;
        };
        let mut refs = lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        refs.table.reserve(new.lines.len());
        for line in &new.lines {
            refs.table.insert(crate::index::Slot {
                key: self.inner.key(&line.client_ref),
                seq: new.sequence.get(),
                index: u32::try_from(line.index).unwrap_or(u32::MAX),
                digest: digest_prefix(&line.content_digest),
            });
        }
        refs.holders.remove(&new.sequence.get());
    }

    /// Records which lines a batch gives back after a write changed its state (abandoned,
    /// marked unknown, collected as rejected), if the account is loaded. `with_outcome` as
    /// for [`ReferenceIndex::load`].
    ///
    /// # Errors
    /// Whatever `with_outcome` returns.
    pub fn update(
        &self,
        record: &BatchRecord,
        with_outcome: impl FnOnce() -> Result<Vec<u64>>,
    ) -> Result<()> {
        let Ok(lock) = self
            .inner
            .loaded_account(&record.account, || Err(not_loaded(&record.account)))
        else {
            return Ok(());
        };
        let holder = Holder::of(record, with_outcome)?;
        let mut refs = lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = record.sequence.get();
        if holder == Holder::Live {
            refs.holders.remove(&seq);
        } else {
            refs.holders.insert(seq, holder);
        }
        Ok(())
    }
}

/// An account whose index is not in memory: forgotten when another job of this process took
/// its lease, or emptied for a moment while it is reloaded. Transient: the backend's retry
/// loads it and asks again (never "not bound" for "not loaded").
fn not_loaded(account: &AccountId) -> crate::Error {
    crate::Error::Backend {
        context: format!("reading the reference index of account {account}"),
        message: "not loaded in this process at the moment (another job took the account's lease, or it is being reloaded)".to_owned(),
        transient: true,
        source: None,
    }
}
