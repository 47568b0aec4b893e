//! The PostgreSQL ledger's [`AccountView`]: the account's index in memory (the shared one when
//! this process holds the account's lease, else a private copy loaded for the view); batches,
//! results and stored digests read from the database as they are asked for, waiting on the
//! runtime from the blocking thread the view is used on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kvp_format::SequenceNumber;
use sequence_ledger::backend::ReferenceIndex;
use sequence_ledger::{
    AccountId, AccountView, BatchRecord, BatchResults, Binding, Error, Release, Result,
    SequenceLedger, SequenceLedgerExt,
};
use tokio::runtime::Handle;

use crate::PgLedger;
use crate::error::config;

pub(crate) struct PgView {
    ledger: PgLedger,
    account: AccountId,
    /// The shared index or a private copy; replaced by a fresh one when the shared one was
    /// forgotten meanwhile (another job took the account's lease).
    index: Mutex<Arc<ReferenceIndex>>,
    handle: Handle,
    /// Lines blobs read for full digests, per batch.
    blobs: Mutex<HashMap<SequenceNumber, Vec<u8>>>,
}

impl std::fmt::Debug for PgView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgView")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl PgLedger {
    pub(crate) fn view(&self, account: &AccountId) -> Result<Box<dyn AccountView>> {
        let handle = Handle::try_current().map_err(|e| {
            config(format!(
                "a blocking view of the PostgreSQL ledger needs a tokio runtime: {e}"
            ))
        })?;
        let index = handle.block_on(self.loaded_index(account))?;
        Ok(Box::new(PgView {
            ledger: self.clone(),
            account: account.clone(),
            index: Mutex::new(index),
            handle,
            blobs: Mutex::default(),
        }))
    }
}

impl PgLedger {
    /// The index a view of `account` reads ([`PgLedger::fresh_index`]), loaded.
    async fn loaded_index(&self, account: &AccountId) -> Result<Arc<ReferenceIndex>> {
        self.retry("loading an account", |_| async {
            let (_client, index) = self.fresh_index(account).await?;
            Ok(index)
        })
        .await
    }
}

impl PgView {
    /// Where `client_ref` is bound. A view lives as long as a merge of the account, and the
    /// shared index it may read is forgotten when another job of this process takes the
    /// account's lease (and emptied while it is reloaded): then a fresh index is loaded and
    /// asked again, never "not bound" for "not loaded".
    fn lookup(
        &self,
        client_ref: &str,
        release: Option<Release>,
    ) -> Result<Option<sequence_ledger::backend::IndexHit>> {
        let index = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Ok(hit) = index.lookup(&self.account, client_ref, release) {
            return Ok(hit);
        }
        let fresh = self
            .handle
            .block_on(self.ledger.loaded_index(&self.account))?;
        let hit = fresh.lookup(&self.account, client_ref, release);
        *self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        hit
    }

    /// The full content digest of a bound line (a mismatch of the index's 128-bit prefix).
    fn stored_digest(&self, seq: SequenceNumber, index: u64) -> Result<[u8; 32]> {
        let mut blobs = self
            .blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.handle.block_on(async {
            let attempt = || async {
                let client = self.ledger.client("reading a batch's references").await?;
                let mut fresh = HashMap::new();
                let d = self
                    .ledger
                    .stored_digest(&client, &self.account, seq, index, &mut fresh)
                    .await?;
                Ok::<_, Error>((d, fresh))
            };
            if let Some(blob) = blobs.get(&seq) {
                return sequence_ledger::backend::refs_digest_at(blob, index).ok_or_else(|| {
                    crate::error::corrupt(
                        format!("batch {seq} of account {}", self.account),
                        "bound line outside the batch",
                    )
                });
            }
            let (d, fresh) = self
                .ledger
                .retry("reading a batch's references", |_| attempt())
                .await?;
            blobs.extend(fresh);
            Ok(d)
        })
    }
}

impl AccountView for PgView {
    fn account(&self) -> &AccountId {
        &self.account
    }

    fn check_reference_with(
        &self,
        client_ref: &str,
        content_digest: &[u8; 32],
        release: Release,
    ) -> Result<Option<Binding>> {
        let Some(hit) = self.lookup(client_ref, Some(release))? else {
            return Ok(None);
        };
        if hit.same_content(content_digest) {
            return Ok(Some(hit.binding(*content_digest)));
        }
        Err(Error::ContentConflict {
            account: self.account.clone(),
            client_ref: client_ref.to_string(),
            existing: hit.binding(self.stored_digest(hit.sequence, hit.index)?),
        })
    }

    fn binding_with(&self, client_ref: &str, content_digest: &[u8; 32]) -> Result<Option<Binding>> {
        let Some(hit) = self.lookup(client_ref, None)? else {
            return Ok(None);
        };
        if hit.same_content(content_digest) {
            return Ok(Some(hit.binding(*content_digest)));
        }
        Ok(Some(
            hit.binding(self.stored_digest(hit.sequence, hit.index)?),
        ))
    }

    fn batch(&self, seq: SequenceNumber) -> Result<Option<BatchRecord>> {
        self.handle.block_on(self.ledger.batch(&self.account, seq))
    }

    fn batch_results(&self, seq: SequenceNumber) -> Result<BatchResults> {
        self.handle
            .block_on(self.ledger.batch_results(&self.account, seq))
    }

    fn next_sequence(&self) -> Result<SequenceNumber> {
        self.handle.block_on(SequenceLedgerExt::next_sequence(
            &self.ledger,
            &self.account,
        ))
    }
}
