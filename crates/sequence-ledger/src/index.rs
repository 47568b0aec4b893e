//! The idempotency index, in memory: per account, which batch and line each client reference
//! is bound to and a prefix of its content digest. Built from the account's `batch_refs` blobs
//! the first time the account is asked about, then kept up to date by every write that binds
//! or releases lines, under the account's lock.
//!
//! A reference is known by a 128-bit keyed hash (SipHash-1-3 twice, keys random per process),
//! the content by the first 128 bits of its SHA-256 digest: 40 bytes per reference in an
//! open-addressing table filled to between 2/3 and 7/8, so a million references take 46–60
//! MB (46 when loaded, until new references make it grow). Two references (or two contents of one reference) are taken for one only when 128-bit
//! values collide: about n²/2¹²⁹, 10⁻²⁷ for a million.
//!
//! Which lines a finished batch gives back ([`BatchRecord::releases_line_under`]) depends on
//! its state, its verdict and which of its lines have an outcome; the index keeps that per
//! batch ([`Holder`]) so that a lookup reads nothing from disk.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kvp_format::SequenceNumber;

use crate::codec;
use crate::error::{Error, Result};
use crate::refs::BatchRefs;
use crate::{AccountId, BatchRecord, BatchState, Ledger, Release};

/// A client reference's 128-bit hash.
pub(crate) type RefKey = [u64; 2];

/// One bound reference. `seq == 0` marks an empty slot (sequence numbers start at 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) key: RefKey,
    pub(crate) seq: u32,
    pub(crate) index: u32,
    pub(crate) digest: [u64; 2],
}

impl Slot {
    pub(crate) fn sequence(&self) -> Result<SequenceNumber> {
        SequenceNumber::new(self.seq).map_err(|e| codec::corrupt("reference index", e.to_string()))
    }
}

/// The first 128 bits of a content digest.
pub(crate) fn digest_prefix(d: &[u8; 32]) -> [u64; 2] {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&d[..8]);
    b.copy_from_slice(&d[8..16]);
    [u64::from_le_bytes(a), u64::from_le_bytes(b)]
}

/// Open addressing with linear probing; the home slot is the hash scaled to the table
/// (`hash × len / 2⁶⁴`), so the table can have any size and grows by half, not double.
/// Nothing is ever removed: a reference bound again is overwritten in place.
#[derive(Debug, Default)]
pub(crate) struct RefTable {
    slots: Vec<Slot>,
    len: usize,
}

impl RefTable {
    fn home(&self, key: &RefKey) -> usize {
        ((u128::from(key[0]) * self.slots.len() as u128) >> 64) as usize
    }

    pub(crate) fn get(&self, key: &RefKey) -> Option<&Slot> {
        let n = self.slots.len();
        let mut i = self.home(key);
        for _ in 0..n {
            let s = self.slots.get(i)?;
            if s.seq == 0 {
                return None;
            }
            if s.key == *key {
                return Some(s);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        None
    }

    pub(crate) fn insert(&mut self, slot: Slot) {
        self.reserve(1);
        self.place(slot);
    }

    fn place(&mut self, slot: Slot) {
        let n = self.slots.len();
        let mut i = self.home(&slot.key);
        for _ in 0..n {
            let Some(s) = self.slots.get_mut(i) else {
                return;
            };
            if s.seq == 0 {
                *s = slot;
                self.len += 1;
                return;
            }
            if s.key == slot.key {
                *s = slot;
                return;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// Makes room for `additional` more references: at most 7/8 full, regrown to 2/3.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.grow(additional, 3, 2);
    }

    /// Makes room for exactly `additional` more references, 7/8 full (a table loaded once
    /// that may never grow).
    pub(crate) fn reserve_exact(&mut self, additional: usize) {
        self.grow(additional, 8, 7);
    }

    fn grow(&mut self, additional: usize, num: usize, den: usize) {
        let need = self.len.saturating_add(additional);
        if need.saturating_mul(8) <= self.slots.len().saturating_mul(7) {
            return;
        }
        let capacity = need.saturating_mul(num) / den + 8;
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
        self.len = 0;
        for s in old {
            if s.seq != 0 {
                self.place(s);
            }
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

/// What a batch holding bound lines gives back ([`BatchRecord::releases_line_under`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Keeps its lines.
    Live,
    /// Abandoned by an operator: every line is free.
    Abandoned,
    /// Rejected by the gateway with nothing processed; the lines listed (sorted) have an
    /// outcome of their own and stay bound.
    Rejected(Box<[u64]>),
}

impl Holder {
    pub(crate) fn releases(&self, release: Release, index: u64) -> bool {
        match self {
            Holder::Live => false,
            Holder::Abandoned => true,
            Holder::Rejected(with_outcome) => {
                release == Release::AbandonedOrRejected
                    && with_outcome.binary_search(&index).is_err()
            }
        }
    }

    /// The holder a record describes; `with_outcome` is asked only for a rejected batch.
    pub(crate) fn of(
        record: &BatchRecord,
        with_outcome: impl FnOnce() -> Result<Vec<u64>>,
    ) -> Result<Holder> {
        Ok(if record.state == BatchState::Abandoned {
            Holder::Abandoned
        } else if record.is_rejected() {
            let mut lines = with_outcome()?;
            lines.sort_unstable();
            Holder::Rejected(lines.into_boxed_slice())
        } else {
            Holder::Live
        })
    }
}

/// One account's part of the index.
#[derive(Debug, Default)]
pub(crate) struct AccountRefs {
    loaded: bool,
    /// Taken out of the index ([`Ledger::retire_refs`]): a reader still holding it may load
    /// it, but its bytes are no longer counted.
    retired: bool,
    pub(crate) table: RefTable,
    /// Per batch number; a batch not listed keeps its lines.
    pub(crate) holders: HashMap<u32, Holder>,
}

impl AccountRefs {
    pub(crate) fn holder(&self, seq: u32) -> &Holder {
        self.holders.get(&seq).unwrap_or(&Holder::Live)
    }

    /// Whether the line a slot points at is given back under `release`.
    pub(crate) fn released(&self, slot: &Slot, release: Release) -> bool {
        self.holder(slot.seq)
            .releases(release, u64::from(slot.index))
    }
}

/// The index of the accounts this ledger has been asked about and not retired
/// ([`Ledger::retire_refs`]).
#[derive(Debug)]
pub(crate) struct RefIndex {
    hash_a: RandomState,
    hash_b: RandomState,
    accounts: Mutex<HashMap<AccountId, Arc<RwLock<AccountRefs>>>>,
    /// Bytes held by the tables of the accounts in `accounts`.
    held: AtomicUsize,
    /// Above this, a retired account's table is dropped.
    budget: usize,
}

/// An index that never drops a table on its own (its owner forgets accounts).
impl Default for RefIndex {
    fn default() -> Self {
        RefIndex::new(usize::MAX)
    }
}

impl RefIndex {
    pub(crate) fn new(budget: usize) -> RefIndex {
        RefIndex {
            hash_a: RandomState::new(),
            hash_b: RandomState::new(),
            accounts: Mutex::default(),
            held: AtomicUsize::new(0),
            budget,
        }
    }

    /// Counts a table's change of size from `before` to `after` bytes.
    fn resized(&self, before: usize, after: usize) {
        if after >= before {
            self.held.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.held.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    pub(crate) fn key(&self, client_ref: &str) -> RefKey {
        [
            self.hash_a.hash_one(client_ref),
            self.hash_b.hash_one(client_ref),
        ]
    }

    fn account(&self, account: &AccountId) -> Arc<RwLock<AccountRefs>> {
        let mut map = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(account) {
            Some(a) => Arc::clone(a),
            None => {
                let a = Arc::new(RwLock::new(AccountRefs::default()));
                map.insert(account.clone(), Arc::clone(&a));
                a
            }
        }
    }

    /// Bytes held by the tables of every loaded account.
    pub(crate) fn bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

impl Ledger {
    /// Runs `f` on the account's index, loading it first if needed.
    pub(crate) fn with_refs<T>(
        &self,
        account: &AccountId,
        f: impl FnOnce(&AccountRefs) -> Result<T>,
    ) -> Result<T> {
        let lock = self.index.account(account);
        {
            let refs = lock
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if refs.loaded {
                return f(&refs);
            }
        }
        let mut refs = lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.loaded_then(account, &mut refs, |refs| f(refs))
    }

    /// Runs `f` on the account's index for a change, loading it first if needed. Writers hold
    /// the ledger's write lock first, then this one.
    pub(crate) fn with_refs_mut<T>(
        &self,
        account: &AccountId,
        f: impl FnOnce(&mut AccountRefs) -> Result<T>,
    ) -> Result<T> {
        let lock = self.index.account(account);
        let mut refs = lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.loaded_then(account, &mut refs, f)
    }

    /// Loads the account's table if needed, runs `f` on it and counts what its size changed
    /// by (not for a retired table: its bytes left the count when it was retired).
    fn loaded_then<T>(
        &self,
        account: &AccountId,
        refs: &mut AccountRefs,
        f: impl FnOnce(&mut AccountRefs) -> Result<T>,
    ) -> Result<T> {
        let before = refs.table.bytes();
        let done = self.load_refs(account, refs).and_then(|()| f(refs));
        if !refs.retired {
            self.index.resized(before, refs.table.bytes());
        }
        done
    }

    /// Tells the index no one is working on the account for now (its lease was given back, or
    /// a view of it dropped with no lease held). When the whole index holds more than its
    /// budget, the account's table is dropped; the next question about the account builds it
    /// again from the ledger. Removed from the index under the write lock, so no write is
    /// between its commit and its update of the table.
    pub(crate) fn retire_refs(&self, account: &AccountId) {
        if self.index.bytes() <= self.index.budget {
            return;
        }
        let removed = {
            let _writes = self
                .write
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.index
                .accounts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(account)
        };
        // A reader that took the table before it was removed may still be loading it: from
        // now on its bytes are not counted, whichever of us takes the lock first.
        if let Some(lock) = removed {
            let mut refs = lock
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            refs.retired = true;
            self.index.resized(refs.table.bytes(), 0);
        }
    }

    /// Records a batch's new record in the index of an account that is loaded (one that is
    /// not reads the record when it loads). Called after the record was written.
    pub(crate) fn index_record(
        &self,
        record: &BatchRecord,
        with_outcome: impl FnOnce() -> Result<Vec<u64>>,
    ) -> Result<()> {
        let lock = self.index.account(&record.account);
        let mut refs = lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if refs.loaded {
            let holder = Holder::of(record, with_outcome)?;
            let seq = record.sequence.get();
            if holder == Holder::Live {
                refs.holders.remove(&seq);
            } else {
                refs.holders.insert(seq, holder);
            }
        }
        Ok(())
    }

    /// Reads the account's batch records (for their holders) and reference blobs, in number
    /// order: a reference in several batches was taken over by the later one.
    fn load_refs(&self, account: &AccountId, refs: &mut AccountRefs) -> Result<()> {
        if refs.loaded {
            return Ok(());
        }
        let records = self
            .batches
            .scan_prefix(codec::prefix(account))
            .map(|item| {
                let (k, v) = item.map_err(Error::storage("loading the reference index"))?;
                codec::decode_batch(&v, || {
                    format!("batches key {}", String::from_utf8_lossy(&k))
                })
            });
        let prefix = codec::prefix(account);
        let blobs = crate::pieces::scan(&self.batch_refs, &prefix, "loading the reference index")
            .map(|item| {
                let blob = item?;
                let (_, rest) = codec::split_key(&blob.key, "batch_refs")?;
                let seq = codec::seq_from_suffix(&rest, "batch_refs")?;
                let blob =
                    BatchRefs::decode(blob.bytes, || format!("batch {seq} of account {account}"))?;
                Ok((seq, blob))
            });
        let retired = refs.retired;
        *refs = self.index.build(
            account,
            records,
            |record| {
                Ok(self
                    .batch_results(account, record.sequence)?
                    .indexes_with_outcome())
            },
            blobs,
        )?;
        refs.retired = retired;
        Ok(())
    }
}

impl RefIndex {
    /// An account's index from its batch records (for their holders; `with_outcome` is asked
    /// for the lines with an outcome of a rejected batch) and its reference blobs in number
    /// order (a reference in several batches was taken over by the later one).
    pub(crate) fn build(
        &self,
        account: &AccountId,
        records: impl Iterator<Item = Result<BatchRecord>>,
        mut with_outcome: impl FnMut(&BatchRecord) -> Result<Vec<u64>>,
        blobs: impl Iterator<Item = Result<(SequenceNumber, BatchRefs)>>,
    ) -> Result<AccountRefs> {
        let mut lines = 0usize;
        let mut holders = HashMap::new();
        for record in records {
            let record = record?;
            lines = lines.saturating_add(usize::try_from(record.line_count).unwrap_or(0));
            let holder = Holder::of(&record, || with_outcome(&record))?;
            if holder != Holder::Live {
                holders.insert(record.sequence.get(), holder);
            }
        }
        let mut table = RefTable::default();
        // A re-run often binds nothing new: no room for growth until it does.
        table.reserve_exact(lines);
        for item in blobs {
            let (seq, blob) = item?;
            let what = || format!("batch {seq} of account {account}");
            for line in blob.iter() {
                let Some(client_ref) = line.client_ref else {
                    continue;
                };
                let index = u32::try_from(line.index)
                    .map_err(|_| codec::corrupt(what(), "line index above 2^32"))?;
                table.insert(Slot {
                    key: self.key(client_ref),
                    seq: seq.get(),
                    index,
                    digest: digest_prefix(&line.content_digest),
                });
            }
        }
        tracing::debug!(%account, references = table.len, bytes = table.bytes(), "reference index loaded");
        Ok(AccountRefs {
            loaded: true,
            retired: false,
            table,
            holders,
        })
    }

    /// Drops what the index knows of `account`: the next use loads it again from the
    /// ledger (another process may have bound references meanwhile: a shared ledger whose
    /// account lease was just taken).
    pub(crate) fn forget(&self, account: &AccountId) {
        let mut map = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(account);
    }

    /// The account's part, loaded by `load` first if it is not.
    pub(crate) fn loaded_account(
        &self,
        account: &AccountId,
        load: impl FnOnce() -> Result<AccountRefs>,
    ) -> Result<Arc<RwLock<AccountRefs>>> {
        let lock = self.account(account);
        let loaded = lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .loaded;
        if !loaded {
            let mut refs = lock
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !refs.loaded {
                *refs = load()?;
            }
        }
        Ok(lock)
    }

    /// Whether the account's part is loaded.
    pub(crate) fn is_loaded(&self, account: &AccountId) -> bool {
        let map = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(account).is_some_and(|a| {
            a.read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .loaded
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(index: &RefIndex, r: &str, seq: u32, line: u32) -> Slot {
        Slot {
            key: index.key(r),
            seq,
            index: line,
            digest: [u64::from(seq), u64::from(line)],
        }
    }

    #[test]
    fn a_slot_is_forty_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }

    #[test]
    fn the_table_finds_every_reference_and_no_other() {
        let index = RefIndex::default();
        let mut t = RefTable::default();
        assert!(t.get(&index.key("nothing yet")).is_none());
        let n = 200_000u32;
        for i in 0..n {
            t.insert(slot(&index, &format!("order-{i}"), 1 + i / 5000, i % 5000));
        }
        assert_eq!(t.len, n as usize);
        for i in 0..n {
            let s = t.get(&index.key(&format!("order-{i}"))).unwrap();
            assert_eq!((s.seq, s.index), (1 + i / 5000, i % 5000));
        }
        for i in 0..1000 {
            assert!(t.get(&index.key(&format!("other-{i}"))).is_none());
        }
        // Bound again: overwritten in place, not added.
        t.insert(slot(&index, "order-7", 99, 3));
        assert_eq!(t.len, n as usize);
        assert_eq!(t.get(&index.key("order-7")).unwrap().seq, 99);
        // 40 bytes per slot, at least 2/3 full: at most 60 bytes per reference (plus the
        // slack of the last growth).
        let per_ref = t.bytes() as f64 / f64::from(n);
        assert!(per_ref <= 61.0, "{per_ref} bytes per reference");
    }

    #[test]
    fn holders_release_what_the_rules_say() {
        use Release::*;
        let rejected = Holder::Rejected(vec![2, 5].into_boxed_slice());
        #[rustfmt::skip]
        let cases: &[(&Holder, Release, u64, bool)] = &[
            (&Holder::Live, AbandonedOrRejected, 0, false),
            (&Holder::Abandoned, AbandonedOnly, 0, true),
            (&Holder::Abandoned, AbandonedOrRejected, 9, true),
            (&rejected, AbandonedOnly, 0, false),
            (&rejected, AbandonedOrRejected, 0, true),
            (&rejected, AbandonedOrRejected, 2, false),
            (&rejected, AbandonedOrRejected, 5, false),
            (&rejected, AbandonedOrRejected, 6, true),
        ];
        for (holder, release, index, expected) in cases {
            assert_eq!(
                holder.releases(*release, *index),
                *expected,
                "{holder:?} {release:?} {index}"
            );
        }
    }
}
