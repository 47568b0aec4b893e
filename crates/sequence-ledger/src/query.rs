//! Reading the ledger: accounts, batches, bindings (from the in-memory index), results.

use kvp_format::SequenceNumber;

use crate::codec;
use crate::error::{Error, Result};
use crate::index::{Slot, digest_prefix};
use crate::refs::BatchRefs;
use crate::results::BatchResults;
use crate::{
    AccountId, AccountInfo, BatchRecord, BatchState, Binding, Ledger, Release, StoredResult,
};

impl Ledger {
    /// The account's numbers (all `None` for an account the ledger has never seen).
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn account_info(&self, account: &AccountId) -> Result<AccountInfo> {
        match self
            .accounts
            .get(account.as_str())
            .map_err(Error::storage("reading an account"))?
        {
            Some(v) => codec::decode_account(&v, account),
            None => Ok(AccountInfo::default()),
        }
    }

    /// The highest number ever reserved for the account.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn last_sequence(&self, account: &AccountId) -> Result<Option<SequenceNumber>> {
        Ok(self.account_info(account)?.high_water)
    }

    /// The number to reserve next: one above the larger of the high-water mark and the floor
    /// (1 for a new account). Only a suggestion: [`Ledger::reserve`] decides.
    ///
    /// # Errors
    /// [`Error::Exhausted`] past 999,999,999; storage errors.
    pub fn next_sequence(&self, account: &AccountId) -> Result<SequenceNumber> {
        next_after(account, self.account_info(account)?.last_used())
    }

    /// One batch.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn batch(&self, account: &AccountId, seq: SequenceNumber) -> Result<Option<BatchRecord>> {
        let what = || format!("batch {seq} of account {account}");
        self.batches
            .get(codec::batch_key(account, seq))
            .map_err(Error::storage("reading a batch"))?
            .map(|v| codec::decode_batch(&v, what))
            .transpose()
    }

    pub(crate) fn existing_batch(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<BatchRecord> {
        self.batch(account, seq)?.ok_or_else(|| Error::NoSuchBatch {
            account: account.clone(),
            sequence: seq,
        })
    }

    pub(crate) fn open_batches(
        &self,
        account: &AccountId,
    ) -> Result<Vec<(SequenceNumber, BatchState)>> {
        let mut out = Vec::new();
        for item in self.open.scan_prefix(codec::prefix(account)) {
            let (k, v) = item.map_err(Error::storage("scanning open batches"))?;
            let (_, rest) = codec::split_key(&k, "open")?;
            let seq = codec::seq_from_suffix(&rest, "open")?;
            let state = codec::decode_state(&v, || format!("open batch {seq} of {account}"))?;
            out.push((seq, state));
        }
        Ok(out)
    }

    /// The stored results of a batch, by `xIndex` (owned copies; [`Ledger::batch_results`]
    /// reads them without copying). Empty before the batch is collected, when its answer had
    /// no lines, and once they are [pruned](Ledger::prune).
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn results(&self, account: &AccountId, seq: SequenceNumber) -> Result<Vec<StoredResult>> {
        Ok(self
            .batch_results(account, seq)?
            .iter()
            .map(|l| l.to_stored())
            .collect())
    }

    /// The stored results of a batch, read in one piece and checked once, then iterated in
    /// index order (or looked up by index) without an allocation per field: what a merge of
    /// the batch's lines reads. Empty as for [`Ledger::results`]; whether the results were
    /// pruned is [`BatchRecord::results_pruned_at`].
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn batch_results(&self, account: &AccountId, seq: SequenceNumber) -> Result<BatchResults> {
        match crate::pieces::get(
            &self.batch_results,
            &codec::batch_key(account, seq),
            "reading results",
        )? {
            Some(blob) => {
                BatchResults::decode(blob.bytes, || format!("batch {seq} of account {account}"))
            }
            None => Ok(BatchResults::default()),
        }
    }

    /// The lines of a batch as reserved: each line's client reference and content digest, in
    /// line order. `None` for a batch the ledger does not have.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn batch_refs(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<Option<BatchRefs>> {
        crate::pieces::get(
            &self.batch_refs,
            &codec::batch_key(account, seq),
            "reading a batch's references",
        )?
        .map(|blob| BatchRefs::decode(blob.bytes, || format!("batch {seq} of account {account}")))
        .transpose()
    }

    /// The stored result of one line of a collected batch, if the gateway gave one.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn line_result(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        index: u64,
    ) -> Result<Option<StoredResult>> {
        Ok(self
            .batch_results(account, seq)?
            .get(index)
            .map(|l| l.to_stored()))
    }

    /// Where a client reference is bound, if anywhere (from the in-memory index; the full
    /// content digest is read from the batch's stored lines).
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn binding(&self, account: &AccountId, client_ref: &str) -> Result<Option<Binding>> {
        let key = self.index.key(client_ref);
        let slot = self.with_refs(account, |refs| Ok(refs.table.get(&key).copied()))?;
        slot.map(|s| self.slot_binding(account, &s, None))
            .transpose()
    }

    /// [`Ledger::binding`] for a caller that has the transaction's content digest at hand (a
    /// merge): when the bound content is the same (as far as the index's 128-bit prefix can
    /// tell), the binding is answered from memory alone, with `content_digest` as its digest;
    /// otherwise with the stored digest, as [`Ledger::binding`] does.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn binding_with(
        &self,
        account: &AccountId,
        client_ref: &str,
        content_digest: &[u8; 32],
    ) -> Result<Option<Binding>> {
        let key = self.index.key(client_ref);
        let slot = self.with_refs(account, |refs| Ok(refs.table.get(&key).copied()))?;
        slot.map(|s| {
            let same = s.digest == digest_prefix(content_digest);
            self.slot_binding(account, &s, same.then_some(content_digest))
        })
        .transpose()
    }

    /// The binding an index slot stands for. `same` is the caller's digest when its prefix
    /// matched the slot's; otherwise the full digest is read from the batch's stored lines.
    pub(crate) fn slot_binding(
        &self,
        account: &AccountId,
        slot: &Slot,
        same: Option<&[u8; 32]>,
    ) -> Result<Binding> {
        let sequence = slot.sequence()?;
        let index = u64::from(slot.index);
        let content_digest = match same {
            Some(d) => *d,
            None => {
                let what = || format!("batch {sequence} of account {account}");
                let blob = crate::pieces::get(
                    &self.batch_refs,
                    &codec::batch_key(account, sequence),
                    "reading a batch's references",
                )?
                .ok_or_else(|| codec::corrupt(what(), "bound lines without a batch"))?;
                crate::refs::digest_at(&blob.bytes, index)
                    .ok_or_else(|| codec::corrupt(what(), "bound line outside the batch"))?
            }
        };
        Ok(Binding {
            sequence,
            index,
            content_digest,
        })
    }

    /// The idempotency check before planning a transaction: `Ok(None)` when the reference is
    /// free (never bound, or bound to a line its batch [releases](BatchRecord::releases_line_under));
    /// `Ok(Some(binding))` when the same content is already bound ("already in batch 17, line 4").
    /// Answered from the in-memory index (loaded on the account's first use).
    ///
    /// # Errors
    /// [`Error::ContentConflict`] when the reference is bound to different content; storage
    /// and corruption errors.
    pub fn check_reference(
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
    }

    /// [`Ledger::check_reference`] where only the batches `release` names free their
    /// references: with [`Release::AbandonedOnly`] a reference in a gateway-rejected batch is
    /// still bound there (`Ok(Some(..))`), so a re-run reports it instead of sending it again.
    ///
    /// # Errors
    /// As [`Ledger::check_reference`].
    pub fn check_reference_with(
        &self,
        account: &AccountId,
        client_ref: &str,
        content_digest: &[u8; 32],
        release: Release,
    ) -> Result<Option<Binding>> {
        let key = self.index.key(client_ref);
        let found = self.with_refs(account, |refs| {
            Ok(refs
                .table
                .get(&key)
                .filter(|s| !refs.released(s, release))
                .copied())
        })?;
        let Some(slot) = found else {
            return Ok(None);
        };
        if slot.digest == digest_prefix(content_digest) {
            return self
                .slot_binding(account, &slot, Some(content_digest))
                .map(Some);
        }
        Err(Error::ContentConflict {
            account: account.clone(),
            client_ref: client_ref.to_string(),
            existing: self.slot_binding(account, &slot, None)?,
        })
    }

    /// Every batch of the account, by number.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn batches(&self, account: &AccountId) -> Result<Vec<BatchRecord>> {
        let mut out = Vec::new();
        for item in self.batches.scan_prefix(codec::prefix(account)) {
            let (k, v) = item.map_err(Error::storage("scanning batches"))?;
            out.push(codec::decode_batch(&v, || {
                format!("batches key {}", String::from_utf8_lossy(&k))
            })?);
        }
        Ok(out)
    }

    /// The account's batches in one state, by number.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn batches_in_state(
        &self,
        account: &AccountId,
        state: BatchState,
    ) -> Result<Vec<BatchRecord>> {
        let mut all = self.batches(account)?;
        all.retain(|b| b.state == state);
        Ok(all)
    }

    /// Every batch of every account that is not final (not `Cleaned` or `Abandoned`), by
    /// account then number: what a restarted process must finish or report.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn in_flight(&self) -> Result<Vec<(AccountId, BatchRecord)>> {
        let mut out = Vec::new();
        for item in self.open.iter() {
            let (k, _) = item.map_err(Error::storage("scanning open batches"))?;
            let (account, rest) = codec::split_key(&k, "open")?;
            let seq = codec::seq_from_suffix(&rest, "open")?;
            let record = self.batch(&account, seq)?.ok_or_else(|| Error::Corrupt {
                what: format!("open batch {seq} of account {account}"),
                detail: "no batch record".into(),
            })?;
            out.push((account, record));
        }
        Ok(out)
    }

    /// Every account the ledger knows (it reserved for, or has a floor for), sorted.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn accounts(&self) -> Result<Vec<AccountId>> {
        let mut out = Vec::new();
        for item in self.accounts.iter() {
            let (k, _) = item.map_err(Error::storage("scanning accounts"))?;
            let id = String::from_utf8(k.to_vec()).map_err(|e| Error::Corrupt {
                what: "accounts key".into(),
                detail: e.to_string(),
            })?;
            out.push(AccountId::new(id)?);
        }
        Ok(out)
    }

    /// Every binding of the account, by client reference (byte order): each reference in
    /// the last batch that took it. Reads every batch's stored lines (for operators, exports
    /// and the collection of in-flight batches, not for a per-line path).
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn bindings_of(&self, account: &AccountId) -> Result<Vec<(String, Binding)>> {
        let mut all = std::collections::BTreeMap::new();
        let blobs = crate::pieces::scan(
            &self.batch_refs,
            &codec::prefix(account),
            "scanning batch references",
        );
        for blob in blobs {
            let blob = blob?;
            let (_, rest) = codec::split_key(&blob.key, "batch_refs")?;
            let sequence = codec::seq_from_suffix(&rest, "batch_refs")?;
            let lines = BatchRefs::decode(blob.bytes, || {
                format!("batch {sequence} of account {account}")
            })?;
            for line in lines.iter() {
                if let Some(client_ref) = line.client_ref {
                    all.insert(
                        client_ref.to_owned(),
                        Binding {
                            sequence,
                            index: line.index,
                            content_digest: line.content_digest,
                        },
                    );
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Bytes the in-memory idempotency index holds now (for measurements).
    #[doc(hidden)]
    pub fn index_bytes(&self) -> usize {
        self.index.bytes()
    }
}

pub(crate) fn next_after(
    account: &AccountId,
    last: Option<SequenceNumber>,
) -> Result<SequenceNumber> {
    match last {
        None => Ok(SequenceNumber::MIN),
        Some(last) => last.next().ok_or_else(|| Error::Exhausted {
            account: account.clone(),
            last,
        }),
    }
}
