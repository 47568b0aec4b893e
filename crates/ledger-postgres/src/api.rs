//! [`SequenceLedger`] for [`PgLedger`]: the reads here, the writes in `writes.rs`, leases in
//! `ledger.rs`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use kvp_format::SequenceNumber;
use sequence_ledger::backend::{self, ExportWriter, ReferenceIndex};
use sequence_ledger::{
    AccountId, AccountInfo, BatchRecord, BatchRefs, BatchResults, Binding, Commit, Lease,
    LeaseAttempt, LeaseEntry, LeaseOwner, NewBatch, PerLineAnswer, Pruned, RefQuery, RefStatus,
    Release, Reserve, Result, SequenceLedger, StoredResult, Transition,
};

use crate::PgLedger;
use crate::error::db;
use crate::ledger::{account_of, info_of, record_of};

impl PgLedger {
    /// The index a read about `account` is answered from: the shared one when this process
    /// holds the account's lease (its own writes keep it current), else a private copy loaded
    /// now (another process may be writing for the account; the shared one is left alone).
    pub(crate) async fn fresh_index(
        &self,
        account: &AccountId,
    ) -> Result<(deadpool_postgres::Object, Arc<ReferenceIndex>)> {
        let client = self.client("reading the reference index").await?;
        if self.holds(account) {
            self.ensure_index(&client, account).await?;
            return Ok((client, self.index.clone()));
        }
        let private = Arc::new(ReferenceIndex::new());
        self.load_index(&client, account, &private).await?;
        Ok((client, private))
    }

    async fn lines_of(&self, account: &AccountId) -> Result<Vec<(SequenceNumber, BatchRefs)>> {
        let client = self.client("reading references").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT seq, refs FROM paybatch_batches WHERE account = $1 ORDER BY seq",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[&account.as_str()],
            )
            .await
            .map_err(db("reading references"))?;
        rows.iter()
            .map(|row| {
                let seq = seq_from(account, row.get(0))?;
                let blob: Vec<u8> = row.get(1);
                let refs = backend::decode_refs(Bytes::from(blob), || {
                    format!("batch {seq} of account {account}")
                })?;
                Ok((seq, refs))
            })
            .collect()
    }
}

fn seq_from(account: &AccountId, n: i64) -> Result<SequenceNumber> {
    u32::try_from(n)
        .ok()
        .and_then(|n| SequenceNumber::new(n).ok())
        .ok_or_else(|| {
            crate::error::corrupt(
                format!("a batch of account {account}"),
                format!("number {n}"),
            )
        })
}

#[async_trait]
impl SequenceLedger for PgLedger {
    fn describe(&self) -> String {
        format!("PostgreSQL ledger {}", self.options.describe())
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn acquire_lease(
        &self,
        account: &AccountId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<LeaseAttempt> {
        self.retry("acquire_lease", |_| self.acquire(account, owner, ttl))
            .await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        // Not retried here: the keeper retries on its own schedule, bounded by the lease's
        // time to live.
        self.renew(lease, ttl).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.retry("release_lease", |_| self.release(lease)).await
    }

    async fn leases(&self) -> Result<Vec<LeaseEntry>> {
        self.retry("leases", |_| self.list_leases()).await
    }

    async fn reserve(&self, lease: &Lease, new: NewBatch) -> Result<Reserve> {
        self.pg_reserve(lease, new).await
    }

    async fn transition_with(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        to: Transition,
        commit: Commit,
    ) -> Result<BatchRecord> {
        self.pg_transition(lease, seq, to, None, commit).await
    }

    async fn resolve(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        to: Transition,
        note: String,
    ) -> Result<BatchRecord> {
        self.pg_transition(lease, seq, to, Some(note), Commit::Durable)
            .await
    }

    async fn store_answer(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.pg_collect(lease, seq, None, results, answer).await
    }

    async fn complete_and_store(
        &self,
        lease: &Lease,
        seq: SequenceNumber,
        completed: Transition,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        self.pg_collect(lease, seq, Some(completed), results, answer)
            .await
    }

    async fn set_floor(&self, lease: &Lease, floor: SequenceNumber) -> Result<()> {
        self.pg_set_floor(lease, floor).await
    }

    async fn prune(&self, collected_before: SystemTime) -> Result<Pruned> {
        self.pg_prune(collected_before).await
    }

    async fn sync(&self) -> Result<()> {
        self.pg_sync().await
    }

    async fn account_info(&self, account: &AccountId) -> Result<AccountInfo> {
        self.retry("account_info", |_| async {
            let client = self.client("reading an account").await?;
            let row = client
                .query_opt(&client.prepare_cached("SELECT high_water, floor, triggered FROM paybatch_accounts WHERE account = $1").await.map_err(db("preparing a statement"))?,
                    &[&account.as_str()],
                )
                .await
                .map_err(db("reading an account"))?;
            row.map_or(Ok(AccountInfo::default()), |r| info_of(account, &r))
        })
        .await
    }

    async fn batch(&self, account: &AccountId, seq: SequenceNumber) -> Result<Option<BatchRecord>> {
        self.retry("batch", |_| async {
            let client = self.client("reading a batch").await?;
            self.record_in(&client, account, seq).await
        })
        .await
    }

    async fn batches(&self, account: &AccountId) -> Result<Vec<BatchRecord>> {
        self.retry("batches", |_| async {
            let client = self.client("reading batches").await?;
            let rows = client
                .query(&client.prepare_cached("SELECT record::text FROM paybatch_batches WHERE account = $1 ORDER BY seq").await.map_err(db("preparing a statement"))?,
                    &[&account.as_str()],
                )
                .await
                .map_err(db("reading batches"))?;
            rows.iter().map(|r| record_of(r, 0)).collect()
        })
        .await
    }

    async fn in_flight(&self) -> Result<Vec<(AccountId, BatchRecord)>> {
        self.retry("in_flight", |_| async {
            let client = self.client("reading open batches").await?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT account, record::text FROM paybatch_batches WHERE NOT final
                      ORDER BY account COLLATE \"C\", seq",
                        )
                        .await
                        .map_err(db("preparing a statement"))?,
                    &[],
                )
                .await
                .map_err(db("reading open batches"))?;
            rows.iter()
                .map(|r| Ok((account_of(r, 0)?, record_of(r, 1)?)))
                .collect()
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<AccountId>> {
        self.retry("accounts", |_| async {
            let client = self.client("reading accounts").await?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT account FROM paybatch_accounts ORDER BY account COLLATE \"C\"",
                        )
                        .await
                        .map_err(db("preparing a statement"))?,
                    &[],
                )
                .await
                .map_err(db("reading accounts"))?;
            rows.iter().map(|r| account_of(r, 0)).collect()
        })
        .await
    }

    async fn batch_results(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<BatchResults> {
        self.retry("batch_results", |_| async {
            let client = self.client("reading results").await?;
            self.results_in(&client, account, seq).await
        })
        .await
    }

    async fn batch_refs(
        &self,
        account: &AccountId,
        seq: SequenceNumber,
    ) -> Result<Option<BatchRefs>> {
        self.retry("batch_refs", |_| async {
            let client = self.client("reading references").await?;
            let blob = self.refs_in(&client, account, seq).await?;
            blob.map(|blob| {
                backend::decode_refs(Bytes::from(blob), || {
                    format!("batch {seq} of account {account}")
                })
            })
            .transpose()
        })
        .await
    }

    async fn binding(&self, account: &AccountId, client_ref: &str) -> Result<Option<Binding>> {
        self.retry("binding", |_| async {
            let (client, index) = self.fresh_index(account).await?;
            let Some(hit) = index.lookup(account, client_ref, None)? else {
                return Ok(None);
            };
            let digest = self
                .stored_digest(
                    &client,
                    account,
                    hit.sequence,
                    hit.index,
                    &mut HashMap::new(),
                )
                .await?;
            Ok(Some(hit.binding(digest)))
        })
        .await
    }

    async fn bindings_with(
        &self,
        account: &AccountId,
        queries: Vec<RefQuery>,
    ) -> Result<Vec<Option<Binding>>> {
        self.retry("bindings_with", |_| async {
            let (client, index) = self.fresh_index(account).await?;
            let mut blobs = HashMap::new();
            let mut out = Vec::with_capacity(queries.len());
            for q in &queries {
                let found = match index.lookup(account, &q.client_ref, None)? {
                    None => None,
                    Some(hit) if hit.same_content(&q.content_digest) => {
                        Some(hit.binding(q.content_digest))
                    }
                    Some(hit) => {
                        let d = self
                            .stored_digest(&client, account, hit.sequence, hit.index, &mut blobs)
                            .await?;
                        Some(hit.binding(d))
                    }
                };
                out.push(found);
            }
            Ok(out)
        })
        .await
    }

    async fn check_references(
        &self,
        account: &AccountId,
        queries: Vec<RefQuery>,
        release: Release,
    ) -> Result<Vec<RefStatus>> {
        self.retry("check_references", |_| async {
            let (client, index) = self.fresh_index(account).await?;
            let mut blobs = HashMap::new();
            let mut out = Vec::with_capacity(queries.len());
            for q in &queries {
                let status = match index.lookup(account, &q.client_ref, Some(release))? {
                    None => RefStatus::Free,
                    Some(hit) if hit.same_content(&q.content_digest) => {
                        RefStatus::Bound(hit.binding(q.content_digest))
                    }
                    Some(hit) => {
                        let d = self
                            .stored_digest(&client, account, hit.sequence, hit.index, &mut blobs)
                            .await?;
                        RefStatus::ContentDiffers(hit.binding(d))
                    }
                };
                out.push(status);
            }
            Ok(out)
        })
        .await
    }

    async fn bindings_of(&self, account: &AccountId) -> Result<Vec<(String, Binding)>> {
        let batches = self
            .retry("bindings_of", |_| self.lines_of(account))
            .await?;
        let mut all = BTreeMap::new();
        for (sequence, lines) in &batches {
            for line in lines.iter() {
                if let Some(client_ref) = line.client_ref {
                    all.insert(
                        client_ref.to_owned(),
                        Binding {
                            sequence: *sequence,
                            index: line.index,
                            content_digest: line.content_digest,
                        },
                    );
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    fn blocking_view(&self, account: &AccountId) -> Result<Box<dyn sequence_ledger::AccountView>> {
        self.view(account)
    }

    async fn export(&self, out: Box<dyn Write + Send>) -> Result<u64> {
        let mut w = ExportWriter::new(out)?;
        for account in self.accounts().await? {
            w.account(&account, self.account_info(&account).await?)?;
            let batches = self.batches(&account).await?;
            for batch in &batches {
                w.batch(batch)?;
            }
            for (client_ref, b) in self.bindings_of(&account).await? {
                w.binding(&account, &client_ref, &b)?;
            }
            for batch in &batches {
                let results = self.batch_results(&account, batch.sequence).await?;
                w.results(&account, batch.sequence, &results)?;
            }
        }
        w.finish()
    }
}
