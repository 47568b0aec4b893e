//! The fenced writes: each one transaction that first checks the caller's lease
//! ([`PgLedger::check_lease`]), then applies the same rules as the sled ledger
//! (`sequence_ledger::backend`). Retried while the database is unreachable; an attempt after a
//! failure that may have hidden a commit first checks whether that commit happened.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_postgres::Transaction;
use sequence_ledger::backend::{self, PruneAction};
use sequence_ledger::{
    AccountId, BatchRecord, BatchState, Commit, ConflictKind, Error, Lease, NewBatch,
    PerLineAnswer, Pruned, RefConflict, Release, Reserve, Result, StoredResult, Transition,
};

use crate::PgLedger;
use crate::error::{corrupt, db};
use crate::ledger::{account_of, record_of, seq_param};

type Seq = kvp_format::SequenceNumber;

/// The batch's record, its row locked for the rest of the transaction.
async fn batch_for_update(
    tx: &Transaction<'_>,
    account: &AccountId,
    seq: Seq,
) -> Result<BatchRecord> {
    let row = tx
        .query_opt(&tx.prepare_cached("SELECT record::text FROM paybatch_batches WHERE account = $1 AND seq = $2 FOR UPDATE").await.map_err(db("preparing a statement"))?,
            &[&account.as_str(), &seq_param(seq)],
        )
        .await
        .map_err(db("reading a batch"))?;
    match row {
        Some(row) => record_of(&row, 0),
        None => Err(Error::NoSuchBatch {
            account: account.clone(),
            sequence: seq,
        }),
    }
}

/// Writes a batch's record (and its state columns).
async fn update_record(tx: &Transaction<'_>, record: &BatchRecord) -> Result<()> {
    let encoded = backend::encode_record(record)?;
    let text = String::from_utf8(encoded).map_err(|e| corrupt("a batch record", e.to_string()))?;
    tx.execute(
        &tx.prepare_cached(
            "UPDATE paybatch_batches SET record = $3::text::jsonb, state = $4, final = $5
          WHERE account = $1 AND seq = $2",
        )
        .await
        .map_err(db("preparing a statement"))?,
        &[
            &record.account.as_str(),
            &seq_param(record.sequence),
            &text,
            &record.state.to_string(),
            &record.state.is_final(),
        ],
    )
    .await
    .map_err(db("writing a batch"))?;
    Ok(())
}

/// The last state stamped on a record.
fn last_stamp(record: &BatchRecord) -> Option<BatchState> {
    record.transitions.last().map(|s| s.state)
}

impl PgLedger {
    pub(crate) async fn pg_reserve(&self, lease: &Lease, new: NewBatch) -> Result<Reserve> {
        let account = &lease.account;
        let (record, refs) = backend::reserved_record(account, &new, backend::now_ms())?;
        let text = String::from_utf8(backend::encode_record(&record)?)
            .map_err(|e| corrupt("a batch record", e.to_string()))?;
        let answer = self
            .retry("reserve", |attempt| {
                self.reserve_once(lease, &new, &record, &text, &refs, attempt)
            })
            .await?;
        if let Reserve::Reserved(_) = answer {
            self.index.bind(account, &new);
            tracing::debug!(%account, sequence = %new.sequence, lines = new.lines.len(), "batch reserved");
        }
        Ok(answer)
    }

    async fn reserve_once(
        &self,
        lease: &Lease,
        new: &NewBatch,
        record: &BatchRecord,
        text: &str,
        refs: &[u8],
        attempt: u32,
    ) -> Result<Reserve> {
        let account = &lease.account;
        let seq = new.sequence;
        let mut client = self.client("reserve").await?;
        self.ensure_index(&client, account).await?;
        let tx = client.transaction().await.map_err(db("reserve"))?;
        // One round trip: the statements of a transaction are pipelined on its connection.
        let ((), info) = tokio::try_join!(
            Self::check_lease(&tx, lease),
            Self::lock_account(&tx, account)
        )?;
        if attempt > 0 {
            // The previous attempt may have committed before its answer was lost.
            if let Some(existing) = self.record_in(&tx, account, seq).await?
                && existing.content_sha256 == record.content_sha256
                && existing.line_count == record.line_count
                && existing.state == BatchState::Reserved
            {
                return Ok(Reserve::Reserved(existing));
            }
        }
        if let Some(last) = info.last_used()
            && seq <= last
        {
            return Ok(Reserve::LostRace {
                next: backend::next_after(account, Some(last))?,
            });
        }
        let mut conflicts = Vec::new();
        let mut blobs: HashMap<Seq, Vec<u8>> = HashMap::new();
        for line in &new.lines {
            let Some(hit) = self.index.lookup(
                account,
                &line.client_ref,
                Some(Release::AbandonedOrRejected),
            )?
            else {
                continue;
            };
            let same = hit.same_content(&line.content_digest);
            let digest = if same {
                line.content_digest
            } else {
                self.stored_digest(&tx, account, hit.sequence, hit.index, &mut blobs)
                    .await?
            };
            conflicts.push(RefConflict {
                client_ref: line.client_ref.clone(),
                index: line.index,
                existing: hit.binding(digest),
                kind: if same {
                    ConflictKind::AlreadyBound
                } else {
                    ConflictKind::ContentDiffers
                },
            });
        }
        if !conflicts.is_empty() {
            return Ok(Reserve::Conflict { conflicts });
        }
        let inserted = tx
            .execute(&tx.prepare_cached("INSERT INTO paybatch_batches (account, seq, state, final, record, refs, results)
                 VALUES ($1, $2, $3, false, $4::text::jsonb, $5, NULL)
                 ON CONFLICT DO NOTHING").await.map_err(db("preparing a statement"))?,
                &[
                    &account.as_str(),
                    &seq_param(seq),
                    &BatchState::Reserved.to_string(),
                    &text,
                    &refs,
                ],
            )
            .await
            .map_err(db("reserve"))?;
        if inserted == 0 {
            return Err(corrupt(
                format!("batch {seq} of account {account}"),
                "exists above the high-water mark",
            ));
        }
        tx.execute(
            &tx.prepare_cached("UPDATE paybatch_accounts SET high_water = $2 WHERE account = $1")
                .await
                .map_err(db("preparing a statement"))?,
            &[&account.as_str(), &seq_param(seq)],
        )
        .await
        .map_err(db("reserve"))?;
        tx.commit().await.map_err(db("committing a reservation"))?;
        Ok(Reserve::Reserved(record.clone()))
    }

    /// The full content digest of a bound line, from its batch's lines blob (read once per
    /// batch into `blobs`).
    pub(crate) async fn stored_digest<C: deadpool_postgres::GenericClient + Sync>(
        &self,
        client: &C,
        account: &AccountId,
        seq: Seq,
        index: u64,
        blobs: &mut HashMap<Seq, Vec<u8>>,
    ) -> Result<[u8; 32]> {
        let what = || format!("batch {seq} of account {account}");
        if let std::collections::hash_map::Entry::Vacant(slot) = blobs.entry(seq) {
            let blob = self
                .refs_in(client, account, seq)
                .await?
                .ok_or_else(|| corrupt(what(), "bound lines without a batch"))?;
            slot.insert(blob);
        }
        blobs
            .get(&seq)
            .and_then(|b| backend::refs_digest_at(b, index))
            .ok_or_else(|| corrupt(what(), "bound line outside the batch"))
    }

    pub(crate) async fn pg_transition(
        &self,
        lease: &Lease,
        seq: Seq,
        to: Transition,
        note: Option<String>,
        commit: Commit,
    ) -> Result<BatchRecord> {
        let record = self
            .retry("transition", |attempt| {
                self.transition_once(lease, seq, &to, note.as_deref(), commit, attempt)
            })
            .await?;
        tracing::debug!(account = %lease.account, sequence = %seq, state = %record.state, "batch state changed");
        Ok(record)
    }

    async fn transition_once(
        &self,
        lease: &Lease,
        seq: Seq,
        to: &Transition,
        note: Option<&str>,
        // Every step commits durably (see below), deferred or not.
        _commit: Commit,
        attempt: u32,
    ) -> Result<BatchRecord> {
        let account = &lease.account;
        let mut client = self.client("transition").await?;
        let tx = client.transaction().await.map_err(db("transition"))?;
        let ((), mut record) = tokio::try_join!(
            Self::check_lease(&tx, lease),
            batch_for_update(&tx, account, seq)
        )?;
        let target = to.target();
        let releases = matches!(target, BatchState::Abandoned | BatchState::MarkedUnknown);
        if attempt > 0 && record.state == target && last_stamp(&record) == Some(target) {
            // The previous attempt committed before its answer was lost: the index still has
            // to learn what it released.
            if releases {
                let with_outcome = self
                    .results_in(&tx, account, seq)
                    .await?
                    .indexes_with_outcome();
                self.index.update(&record, || Ok(with_outcome))?;
            }
            return Ok(record);
        }
        if !record.state.can_become(target) {
            return Err(Error::IllegalTransition {
                account: account.clone(),
                sequence: seq,
                from: record.state,
                to: target,
            });
        }
        let mut triggered = None;
        if target == BatchState::Triggered {
            let info = Self::lock_account(&tx, account).await?;
            let open = self.open_batches(&tx, account).await?;
            let triggered_state = match info.triggered {
                Some(t) if t >= seq => self.record_in(&tx, account, t).await?.map(|b| b.state),
                _ => None,
            };
            backend::check_trigger_order(account, seq, &info, &open, triggered_state)?;
            triggered = info.triggered.max(Some(seq));
        }
        backend::apply_transition(
            &mut record,
            to.clone(),
            note.map(str::to_owned),
            backend::now_ms(),
        )?;
        update_record(&tx, &record).await?;
        if let Some(t) = triggered {
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE paybatch_accounts SET triggered = $2 WHERE account = $1",
                )
                .await
                .map_err(db("preparing a statement"))?,
                &[&account.as_str(), &seq_param(t)],
            )
            .await
            .map_err(db("transition"))?;
        }
        let with_outcome = if releases {
            self.results_in(&tx, account, seq)
                .await?
                .indexes_with_outcome()
        } else {
            Vec::new()
        };
        // `Commit::Deferred` commits durably here too. Deferring it (`synchronous_commit =
        // off`) would let a crash of the database alone — the process lives on — lose a step
        // the process has already built on (a lost Triggered makes its Completed an illegal
        // step from RequestUploaded); on sled a deferred step is lost only with the process.
        tx.commit().await.map_err(db("committing a transition"))?;
        if releases {
            self.index.update(&record, || Ok(with_outcome))?;
        }
        Ok(record)
    }

    pub(crate) async fn open_batches(
        &self,
        tx: &Transaction<'_>,
        account: &AccountId,
    ) -> Result<Vec<(Seq, BatchState)>> {
        let rows = tx
            .query(&tx.prepare_cached("SELECT record::text FROM paybatch_batches WHERE account = $1 AND NOT final ORDER BY seq").await.map_err(db("preparing a statement"))?,
                &[&account.as_str()],
            )
            .await
            .map_err(db("reading open batches"))?;
        rows.iter()
            .map(|r| record_of(r, 0).map(|b| (b.sequence, b.state)))
            .collect()
    }

    pub(crate) async fn record_in<C: deadpool_postgres::GenericClient + Sync>(
        &self,
        client: &C,
        account: &AccountId,
        seq: Seq,
    ) -> Result<Option<BatchRecord>> {
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT record::text FROM paybatch_batches WHERE account = $1 AND seq = $2",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[&account.as_str(), &seq_param(seq)],
            )
            .await
            .map_err(db("reading a batch"))?;
        row.map(|r| record_of(&r, 0)).transpose()
    }

    /// A batch's lines blob (references and content digests), as stored; `None` without the
    /// batch.
    pub(crate) async fn refs_in<C: deadpool_postgres::GenericClient + Sync>(
        &self,
        client: &C,
        account: &AccountId,
        seq: Seq,
    ) -> Result<Option<Vec<u8>>> {
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT refs FROM paybatch_batches WHERE account = $1 AND seq = $2",
                    )
                    .await
                    .map_err(db("preparing a statement"))?,
                &[&account.as_str(), &seq_param(seq)],
            )
            .await
            .map_err(db("reading a batch's references"))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(crate) async fn pg_collect(
        &self,
        lease: &Lease,
        seq: Seq,
        completed: Option<Transition>,
        results: Vec<StoredResult>,
        answer: PerLineAnswer,
    ) -> Result<BatchRecord> {
        let blob = (!results.is_empty()).then(|| backend::encode_results(&results));
        let record = self
            .retry("store_results", |attempt| {
                self.collect_once(
                    lease,
                    seq,
                    completed.as_ref(),
                    &results,
                    blob.as_deref(),
                    answer,
                    attempt,
                )
            })
            .await?;
        if record.is_rejected() {
            self.index.update(&record, || {
                Ok(results
                    .iter()
                    .filter(|r| StoredResult::is_outcome(&r.fields))
                    .map(|r| r.index)
                    .collect())
            })?;
        }
        tracing::debug!(account = %lease.account, sequence = %seq, results = results.len(), "results stored");
        Ok(record)
    }

    #[allow(clippy::too_many_arguments)]
    async fn collect_once(
        &self,
        lease: &Lease,
        seq: Seq,
        completed: Option<&Transition>,
        results: &[StoredResult],
        blob: Option<&[u8]>,
        answer: PerLineAnswer,
        attempt: u32,
    ) -> Result<BatchRecord> {
        let account = &lease.account;
        let mut client = self.client("store_results").await?;
        let tx = client.transaction().await.map_err(db("store_results"))?;
        let ((), mut record) = tokio::try_join!(
            Self::check_lease(&tx, lease),
            batch_for_update(&tx, account, seq)
        )?;
        if attempt > 0
            && record.state == BatchState::Collected
            && last_stamp(&record) == Some(BatchState::Collected)
        {
            return Ok(record);
        }
        backend::collect_record(
            &mut record,
            completed.cloned(),
            results,
            answer,
            backend::now_ms(),
        )?;
        update_record(&tx, &record).await?;
        tx.execute(
            &tx.prepare_cached(
                "UPDATE paybatch_batches SET results = $3 WHERE account = $1 AND seq = $2",
            )
            .await
            .map_err(db("preparing a statement"))?,
            &[&account.as_str(), &seq_param(seq), &blob],
        )
        .await
        .map_err(db("store_results"))?;
        tx.commit().await.map_err(db("committing results"))?;
        Ok(record)
    }

    pub(crate) async fn pg_set_floor(&self, lease: &Lease, floor: Seq) -> Result<()> {
        self.retry("set_floor", |_| async {
            let mut client = self.client("set_floor").await?;
            let tx = client.transaction().await.map_err(db("set_floor"))?;
            Self::check_lease(&tx, lease).await?;
            Self::lock_account(&tx, &lease.account).await?;
            tx.execute(
                &tx.prepare_cached("UPDATE paybatch_accounts SET floor = $2 WHERE account = $1")
                    .await
                    .map_err(db("preparing a statement"))?,
                &[&lease.account.as_str(), &seq_param(floor)],
            )
            .await
            .map_err(db("set_floor"))?;
            tx.commit().await.map_err(db("committing a floor"))
        })
        .await?;
        tracing::info!(account = %lease.account, %floor, "sequence floor set");
        Ok(())
    }

    pub(crate) async fn pg_prune(&self, collected_before: SystemTime) -> Result<Pruned> {
        let cutoff = collected_before
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let rows = {
            let client = self.client("prune").await?;
            client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT account, record::text FROM paybatch_batches
                      WHERE results IS NOT NULL AND state = $1
                      ORDER BY account COLLATE \"C\", seq",
                        )
                        .await
                        .map_err(db("preparing a statement"))?,
                    &[&BatchState::Cleaned.to_string()],
                )
                .await
                .map_err(db("prune"))?
        };
        let mut pruned = Pruned::default();
        let now = backend::now_ms();
        for row in &rows {
            let account = account_of(row, 0)?;
            let mut record = record_of(row, 1)?;
            match backend::prune_action(&record, cutoff) {
                PruneAction::Keep => continue,
                PruneAction::KeepRejected => {
                    pruned.kept_rejected += 1;
                    continue;
                }
                _ => {}
            }
            let seq = record.sequence;
            record.results_pruned_at = Some(now);
            let text = String::from_utf8(backend::encode_record(&record)?)
                .map_err(|e| corrupt("a batch record", e.to_string()))?;
            // One transaction per batch: pruned or not, never half.
            let dropped = self
                .retry("prune", |_| async {
                    let mut client = self.client("prune").await?;
                    let tx = client.transaction().await.map_err(db("prune"))?;
                    let old = tx
                        .query_opt(
                            &tx.prepare_cached(
                                "SELECT results FROM paybatch_batches
                              WHERE account = $1 AND seq = $2 AND results IS NOT NULL FOR UPDATE",
                            )
                            .await
                            .map_err(db("preparing a statement"))?,
                            &[&account.as_str(), &seq_param(seq)],
                        )
                        .await
                        .map_err(db("prune"))?;
                    let Some(old) = old else {
                        return Ok(None);
                    };
                    let blob: Vec<u8> = old.get(0);
                    let lines = backend::decode_results(blob.clone().into(), || {
                        format!("batch {seq} of account {account}")
                    })?
                    .len() as u64;
                    tx.execute(
                        &tx.prepare_cached(
                            "UPDATE paybatch_batches SET results = NULL, record = $3::text::jsonb
                          WHERE account = $1 AND seq = $2",
                        )
                        .await
                        .map_err(db("preparing a statement"))?,
                        &[&account.as_str(), &seq_param(seq), &text],
                    )
                    .await
                    .map_err(db("prune"))?;
                    tx.commit().await.map_err(db("committing a prune"))?;
                    Ok(Some((lines, blob.len() as u64)))
                })
                .await?;
            if let Some((lines, bytes)) = dropped {
                pruned.batches += 1;
                pruned.lines += lines;
                pruned.bytes += bytes;
                let entry = pruned.by_account.entry(account).or_default();
                entry.0 += 1;
                entry.1 += lines;
            }
        }
        tracing::info!(
            batches = pruned.batches,
            lines = pruned.lines,
            bytes = pruned.bytes,
            "stored results pruned"
        );
        Ok(pruned)
    }

    pub(crate) async fn pg_sync(&self) -> Result<()> {
        // A transaction with an id commits with a WAL record; with synchronous_commit on, its
        // commit waits until the WAL is flushed up to it — and so past every earlier
        // asynchronous commit.
        self.retry("sync", |_| async {
            let client = self.client("sync").await?;
            client
                .batch_execute("BEGIN; SELECT txid_current(); COMMIT;")
                .await
                .map_err(db("sync"))
        })
        .await
    }
}

/// What [`PgLedger::copy_from`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Copied {
    /// Accounts (numbers, floor, highest triggered).
    pub accounts: u64,
    /// Batches (record and lines).
    pub batches: u64,
    /// Batches with stored results.
    pub with_results: u64,
}

impl PgLedger {
    /// Copies a sled ledger into this one, unchanged (the same records and blobs), in one
    /// transaction: after a crash the target is either empty or holds the whole copy. Refuses
    /// a target that holds anything (an account, a batch or a lease). The source is read
    /// account by account off the async threads; open it read-only so that no process writes
    /// to it meanwhile.
    ///
    /// # Errors
    /// [`Error::Backend`] when the target is not empty (nothing written) or the database
    /// fails; the source's storage and corruption errors.
    pub async fn copy_from(
        &self,
        source: std::sync::Arc<sequence_ledger::Ledger>,
    ) -> Result<Copied> {
        let mut client = self.client("copying a ledger").await?;
        let tx = client.transaction().await.map_err(db("copying a ledger"))?;
        tx.batch_execute(
            "LOCK TABLE paybatch_accounts, paybatch_batches, paybatch_leases IN EXCLUSIVE MODE",
        )
        .await
        .map_err(db("copying a ledger"))?;
        let empty: bool = tx
            .query_one(
                &tx.prepare_cached(crate::ledger::EMPTY_SQL)
                    .await
                    .map_err(db("preparing a statement"))?,
                &[],
            )
            .await
            .map_err(db("copying a ledger"))?
            .get(0);
        if !empty {
            return Err(Error::Backend {
                context: "copying a ledger".into(),
                message: format!(
                    "the target {} is not empty: a copy goes only into a new ledger",
                    self.options.describe()
                ),
                transient: false,
                source: None,
            });
        }
        let mut copied = Copied::default();
        let accounts = {
            let s = source.clone();
            blocking(move || s.accounts()).await?
        };
        for account in accounts {
            let s = source.clone();
            let a = account.clone();
            let (info, batches) = blocking(move || {
                let info = s.account_info(&a)?;
                let mut out = Vec::new();
                for record in s.batches(&a)? {
                    let refs = s.batch_refs(&a, record.sequence)?.ok_or_else(|| {
                        corrupt(
                            format!("batch {} of account {a}", record.sequence),
                            "no lines",
                        )
                    })?;
                    let results = s.batch_results(&a, record.sequence)?;
                    let results = (!results.is_empty()).then(|| results.as_bytes().to_vec());
                    out.push((record, refs.as_bytes().to_vec(), results));
                }
                Ok((info, out))
            })
            .await?;
            let n = |s: Option<Seq>| s.map(seq_param);
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO paybatch_accounts (account, high_water, floor, triggered)
                 VALUES ($1, $2, $3, $4)",
                )
                .await
                .map_err(db("preparing a statement"))?,
                &[
                    &account.as_str(),
                    &n(info.high_water),
                    &n(info.floor),
                    &n(info.triggered),
                ],
            )
            .await
            .map_err(db("copying an account"))?;
            copied.accounts += 1;
            for (record, refs, results) in batches {
                let text = String::from_utf8(backend::encode_record(&record)?)
                    .map_err(|e| corrupt("a batch record", e.to_string()))?;
                tx.execute(&tx.prepare_cached("INSERT INTO paybatch_batches (account, seq, state, final, record, refs, results)
                     VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7)").await.map_err(db("preparing a statement"))?,
                    &[
                        &account.as_str(),
                        &seq_param(record.sequence),
                        &record.state.to_string(),
                        &record.state.is_final(),
                        &text,
                        &refs,
                        &results,
                    ],
                )
                .await
                .map_err(db("copying a batch"))?;
                copied.batches += 1;
                copied.with_results += u64::from(results.is_some());
            }
        }
        tx.commit().await.map_err(db("committing the copy"))?;
        tracing::info!(
            accounts = copied.accounts,
            batches = copied.batches,
            "ledger copied"
        );
        Ok(copied)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend {
            context: "reading the source ledger".into(),
            message: e.to_string(),
            transient: false,
            source: None,
        })?
}
