//! Reading the ledger: accounts, batches, bindings, results.

use kvp_format::SequenceNumber;

use crate::codec;
use crate::error::{Error, Result};
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

    /// The stored results of a batch, by `xIndex`.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn results(&self, account: &AccountId, seq: SequenceNumber) -> Result<Vec<StoredResult>> {
        let mut out = Vec::new();
        for item in self.results.scan_prefix(codec::batch_key(account, seq)) {
            let (k, v) = item.map_err(Error::storage("scanning results"))?;
            let what = || format!("result of batch {seq} of account {account}");
            let index = k
                .len()
                .checked_sub(8)
                .and_then(|at| k.get(at..))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| Error::Corrupt {
                    what: what(),
                    detail: "short key".into(),
                })?;
            out.push(StoredResult {
                index,
                fields: codec::decode_fields(&v, what)?,
            });
        }
        Ok(out)
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
        let what = || format!("result {index} of batch {seq} of account {account}");
        self.results
            .get(codec::result_key(account, seq, index))
            .map_err(Error::storage("reading a result"))?
            .map(|v| {
                Ok(StoredResult {
                    index,
                    fields: codec::decode_fields(&v, what)?,
                })
            })
            .transpose()
    }

    /// Whether the line has a result of its own ([`StoredResult::is_outcome`]).
    pub(crate) fn line_has_outcome(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
        index: u64,
    ) -> Result<bool> {
        Ok(self
            .line_result(account, seq, index)?
            .is_some_and(|r| StoredResult::is_outcome(&r.fields)))
    }

    /// Where a client reference is bound, if anywhere.
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn binding(&self, account: &AccountId, client_ref: &str) -> Result<Option<Binding>> {
        let what = || format!("binding {client_ref:?} of account {account}");
        self.bindings
            .get(codec::binding_key(account, client_ref))
            .map_err(Error::storage("reading a binding"))?
            .map(|v| codec::decode_binding(&v, what))
            .transpose()
    }

    /// The idempotency check before planning a transaction: `Ok(None)` when the reference is
    /// free (never bound, or bound to a line its batch [releases](BatchRecord::releases_line_under));
    /// `Ok(Some(binding))` when the same content is already bound ("already in batch 17, line 4").
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
        let Some(existing) = self.binding(account, client_ref)? else {
            return Ok(None);
        };
        if let Some(holder) = self.batch(account, existing.sequence)? {
            let has_outcome = holder.is_rejected()
                && self.line_has_outcome(account, existing.sequence, existing.index)?;
            if holder.releases_line_under(release, has_outcome) {
                return Ok(None);
            }
        }
        if &existing.content_digest == content_digest {
            Ok(Some(existing))
        } else {
            Err(Error::ContentConflict {
                account: account.clone(),
                client_ref: client_ref.to_string(),
                existing,
            })
        }
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

    /// Every binding of the account, by client reference (byte order).
    ///
    /// # Errors
    /// Storage and corruption errors.
    pub fn bindings_of(&self, account: &AccountId) -> Result<Vec<(String, Binding)>> {
        let mut out = Vec::new();
        for item in self.bindings.scan_prefix(codec::prefix(account)) {
            let (k, v) = item.map_err(Error::storage("scanning bindings"))?;
            let (_, rest) = codec::split_key(&k, "bindings")?;
            let client_ref = String::from_utf8(rest).map_err(|e| Error::Corrupt {
                what: format!("binding key of account {account}"),
                detail: e.to_string(),
            })?;
            let b = codec::decode_binding(&v, || format!("binding {client_ref:?} of {account}"))?;
            out.push((client_ref, b));
        }
        Ok(out)
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
