//! The per-account worker: finishes the batches the ledger already holds, then creates,
//! uploads and triggers new ones, strictly one batch in flight.
//!
//! Order per batch (the safety argument, see docs/ARCHITECTURE.md): reserve (durable) →
//! REQUEST (atomic, verified) → mark → PROCESS → mark → poll → results stored (durable) →
//! delete RESPONSE/COMPLETE → mark Cleaned.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, BatchRecord, BatchState, Ledger, NewBatch, NewBinding, PerLineAnswer, Reserve,
    StoredResult, Transition,
};
use sha2::{Digest, Sha256};
use tracing::{Instrument, debug, info, warn};

use crate::driver::{Shutdown, WaitMode};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::plan::{AccountPlan, content_digest};
use crate::progress::{Progress, SLOW_AFTER, SlowBatch, WaitGuard, slow_log_due};
use crate::settings::PollSettings;
use crate::verdict;
use gateway_protocol::{GatewayProtocol, PollResult, RequestLine};

/// Named crash points of the driver, in the order a batch reaches them
/// (`PAYBATCH_CRASH_AT=orchestrator.after_process`; see `sequence_ledger::crash_point`).
pub const CRASH_POINTS: &[&str] = &[
    "orchestrator.after_reserve",
    "orchestrator.after_request",
    "orchestrator.after_process",
    "orchestrator.polling",
    "orchestrator.after_results",
    "orchestrator.before_cleanup",
];

/// How one account's run ended. Which batch each transaction is in is not kept here: the
/// merge reads it from the ledger, which is the only record that survives every failure.
#[derive(Debug, Default)]
pub(crate) struct AccountRun {
    /// Why the account stopped early.
    pub failure: Option<String>,
}

impl AccountRun {
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self {
            failure: Some(message.into()),
        }
    }
}

pub(crate) struct Worker {
    pub account: AccountId,
    pub ledger: Arc<Ledger>,
    pub protocol: Arc<dyn GatewayProtocol>,
    pub job: Arc<Job>,
    pub poll: PollSettings,
    pub mode: WaitMode,
    pub new_batches: bool,
    pub shutdown: Shutdown,
    pub progress: Arc<Progress>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Resume {
            account: "-".into(),
            message: format!("ledger task failed: {e}"),
        })?
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Worker {
    async fn record(&self, sequence: SequenceNumber) -> Result<BatchRecord> {
        let (ledger, account) = (self.ledger.clone(), self.account.clone());
        let acct = self.account.to_string();
        blocking(move || {
            ledger
                .batch(&account, sequence)
                .map_err(|source| Error::Ledger {
                    account: acct.clone(),
                    source,
                })?
                .ok_or_else(|| Error::Resume {
                    account: acct,
                    message: format!("batch {sequence} is not in the ledger"),
                })
        })
        .await
    }

    async fn transition(&self, sequence: SequenceNumber, to: Transition) -> Result<BatchRecord> {
        let (ledger, account) = (self.ledger.clone(), self.account.clone());
        let acct = self.account.to_string();
        blocking(move || {
            ledger
                .transition(&account, sequence, to)
                .map_err(|source| Error::Ledger {
                    account: acct,
                    source,
                })
        })
        .await
    }

    /// The batch payload for `positions` (xIndex = place in the list) and its bindings.
    fn build(
        &self,
        sequence: SequenceNumber,
        positions: &[u32],
    ) -> Result<(bytes::Bytes, Vec<NewBinding>)> {
        let mut txs = Vec::with_capacity(positions.len());
        for &pos in positions {
            txs.push(self.job.transaction(pos as usize)?);
        }
        let lines: Vec<RequestLine<'_>> = txs
            .iter()
            .enumerate()
            .map(|(i, t)| RequestLine {
                index: i as u64,
                fields: &t.fields,
            })
            .collect();
        let payload = self.protocol.encode_request(sequence, &lines)?;
        let bindings = txs
            .iter()
            .enumerate()
            .map(|(i, t)| NewBinding {
                client_ref: t.reference.clone(),
                index: i as u64,
                content_digest: content_digest(&t.fields),
            })
            .collect();
        Ok((payload, bindings))
    }

    pub async fn run(self, plan: AccountPlan) -> AccountRun {
        let span = tracing::info_span!("account", account = %self.account);
        self.run_inner(plan).instrument(span).await
    }

    async fn run_inner(&self, plan: AccountPlan) -> AccountRun {
        // Batches of this input the ledger already holds, oldest first. Without waiting
        // (UntilTriggered), the account's very last batch is left triggered for `collect`.
        let existing = plan.existing.len();
        let no_fresh = plan.fresh.is_empty() || !self.new_batches;
        for (n, (sequence, positions)) in plan.existing.into_iter().enumerate() {
            let last = n + 1 == existing && no_fresh;
            let wait = !(last && self.mode == WaitMode::UntilTriggered);
            match self.finish_existing(sequence, &positions, wait).await {
                Err(e) => return AccountRun::failed(e.to_string()),
                // A Stuck batch is unanswered: finishing a later one would put PROCESS_{n+1}
                // before COMPLETE_n (PROTOCOL.md §2 item 5). The later ones stay bound to
                // their numbers and are reported `unknown`.
                Ok(BatchState::Stuck) => {
                    return AccountRun::failed(format!(
                        "batch {sequence} is Stuck (no COMPLETE in time); later batches were not finished or sent — check the gateway, then re-run the same submit or `paybatch resolve --account {} --seq {sequence}`",
                        self.account
                    ));
                }
                Ok(_) => {}
            }
        }
        // Batches of other inputs still in flight block new ones (one in flight per account).
        match self.blocking_batch().await {
            Ok(None) => {}
            Ok(Some(message)) => return AccountRun::failed(message),
            Err(e) => return AccountRun::failed(e.to_string()),
        }
        if !self.new_batches {
            return AccountRun::default();
        }
        let count = plan.fresh.len();
        for (n, positions) in plan.fresh.into_iter().enumerate() {
            let is_last = n + 1 == count;
            let sequence = match self.submit_new(&positions, is_last).await {
                Ok(sequence) => sequence,
                Err(e) => return AccountRun::failed(e.to_string()),
            };
            // A Stuck batch blocks the rest of the account until an operator resolves it.
            if !is_last
                && let Ok(rec) = self.record(sequence).await
                && rec.state == BatchState::Stuck
            {
                return AccountRun::failed(format!(
                    "batch {sequence} is Stuck (no COMPLETE in time); later batches were not sent — check the gateway, then `paybatch resolve`"
                ));
            }
        }
        AccountRun::default()
    }

    /// Refuses the account when the drop holds answers numbered `from` or above that this
    /// ledger did not ask for (PROTOCOL.md decision 4b); `next` is the number about to be used.
    async fn refuse_foreign_answers(
        &self,
        from: SequenceNumber,
        next: SequenceNumber,
    ) -> Result<()> {
        match self.protocol.foreign_answers(from).await? {
            None => Ok(()),
            Some(found) => Err(Error::ForeignAnswers {
                account: self.account.to_string(),
                found,
                next,
            }),
        }
    }

    /// A message if a batch of this account outside this input is unfinished.
    async fn blocking_batch(&self) -> Result<Option<String>> {
        let (ledger, account) = (self.ledger.clone(), self.account.clone());
        let acct = self.account.to_string();
        let batches = blocking(move || {
            ledger.batches(&account).map_err(|source| Error::Ledger {
                account: acct,
                source,
            })
        })
        .await?;
        for rec in batches {
            self.check_reference(&rec)?;
            match rec.state {
                BatchState::Triggered => {
                    // Finishing it needs no payload: poll, collect, clean.
                    self.wait_and_collect(rec.sequence, rec.line_count, true)
                        .await?;
                    let rec = self.record(rec.sequence).await?;
                    if rec.state == BatchState::Stuck {
                        return Ok(Some(format!(
                            "batch {} is Stuck; resolve it before new batches",
                            rec.sequence
                        )));
                    }
                }
                BatchState::Completed(_) | BatchState::Collected => {
                    self.wait_and_collect(rec.sequence, rec.line_count, true)
                        .await?;
                }
                BatchState::Stuck => {
                    if !self.poll_stuck(rec.sequence, rec.line_count).await? {
                        return Ok(Some(format!(
                            "batch {} is Stuck; check the gateway, then `paybatch resolve --account {} --seq {}`",
                            rec.sequence, self.account, rec.sequence
                        )));
                    }
                }
                BatchState::Reserved | BatchState::RequestUploaded => {
                    return Ok(Some(format!(
                        "batch {} was reserved for transactions that are not in this input; re-run with that input (or abandon it with `paybatch resolve`)",
                        rec.sequence
                    )));
                }
                BatchState::Cleaned | BatchState::Abandoned | BatchState::MarkedUnknown => {}
            }
        }
        Ok(None)
    }

    /// Refuses to go on with an unfinished batch that the gateway would now be asked about
    /// under another name than the one it was reserved under: uploading it again would
    /// process its transactions twice, polling it would ask about a batch the gateway does not
    /// know. Records without a stored name (Sola, or reserved before names were stored) pass.
    fn check_reference(&self, rec: &BatchRecord) -> Result<()> {
        if rec.state.is_final() {
            return Ok(());
        }
        let Some(stored) = &rec.external_reference else {
            return Ok(());
        };
        let now = self.protocol.external_reference(rec.sequence)?;
        if now.as_deref() == Some(stored.as_str()) {
            return Ok(());
        }
        Err(Error::Resume {
            account: self.account.to_string(),
            message: format!(
                "batch {} of account {} was reserved as APS reference {stored} but the configuration now gives {} (reference_prefix changed?); restore the setting or resolve the batch — nothing was uploaded",
                rec.sequence,
                self.account,
                now.as_deref().unwrap_or("none")
            ),
        })
    }

    /// Polls a Stuck (or, without waiting, a Triggered) batch once; true if it has now
    /// completed (and was collected).
    async fn poll_stuck(&self, sequence: SequenceNumber, line_count: u64) -> Result<bool> {
        let batch = verdict::batch_ref(&self.record(sequence).await?);
        match self.protocol.poll(&batch).await? {
            PollResult::Pending => Ok(false),
            PollResult::Done(_) => {
                self.wait_and_collect(sequence, line_count, true).await?;
                Ok(true)
            }
        }
    }

    /// Takes one batch of this input as far as it goes; returns the state it was left in.
    async fn finish_existing(
        &self,
        sequence: SequenceNumber,
        positions: &[u32],
        wait: bool,
    ) -> Result<BatchState> {
        self.finish_existing_steps(sequence, positions, wait)
            .await?;
        Ok(self.record(sequence).await?.state)
    }

    async fn finish_existing_steps(
        &self,
        sequence: SequenceNumber,
        positions: &[u32],
        wait: bool,
    ) -> Result<()> {
        let rec = self.record(sequence).await?;
        debug!(account = %self.account, %sequence, state = rec.state.name(), "resuming batch");
        self.check_reference(&rec)?;
        match rec.state {
            BatchState::Reserved | BatchState::RequestUploaded => {
                let (payload, _) = self.build(sequence, positions)?;
                self.check_same_transactions(&rec, positions, &payload)?;
                self.upload_and_trigger(sequence, payload, positions.len() as u64, rec.state)
                    .await?;
                if !wait {
                    return Ok(());
                }
                self.wait_and_collect(sequence, positions.len() as u64, true)
                    .await
            }
            // Not waiting: look once; an answer that is there is collected.
            BatchState::Triggered if !wait => {
                self.poll_stuck(sequence, rec.line_count).await?;
                Ok(())
            }
            BatchState::Triggered | BatchState::Completed(_) | BatchState::Collected => {
                self.wait_and_collect(sequence, rec.line_count, true).await
            }
            BatchState::Stuck => {
                self.poll_stuck(sequence, rec.line_count).await?;
                Ok(())
            }
            BatchState::Cleaned | BatchState::Abandoned | BatchState::MarkedUnknown => Ok(()),
        }
    }

    /// Before a batch that was never triggered is uploaded again: this input must hold
    /// exactly its transactions, in order (PROTOCOL.md decision 4d). The bindings already
    /// matched each line's content; here the line count and the batch's digest must match
    /// too. The key and the software version around the transactions may have changed since
    /// (a rotated merchant key, an upgraded binary): the batch is finished with the current
    /// ones. Records reserved before the digest covered only the transactions hold the digest
    /// of the REQUEST bytes; for them the rebuilt bytes must still match.
    fn check_same_transactions(
        &self,
        rec: &BatchRecord,
        positions: &[u32],
        payload: &bytes::Bytes,
    ) -> Result<()> {
        let mut digests = Vec::with_capacity(positions.len());
        for &pos in positions {
            digests.push(content_digest(&self.job.transaction(pos as usize)?.fields));
        }
        let same = positions.len() as u64 == rec.line_count
            && (sequence_ledger::batch_digest(&digests) == rec.content_sha256
                || <[u8; 32]>::from(Sha256::digest(payload)) == rec.content_sha256);
        if same {
            return Ok(());
        }
        Err(Error::Resume {
            account: self.account.to_string(),
            message: format!(
                "batch {}: this input no longer holds exactly the {} transaction(s) bound to it ({} found; lines were removed or changed since); not resubmitting — re-run with the input that was submitted, or abandon the batch with `paybatch resolve --account {} --seq {} --abandon` (it was never triggered)",
                rec.sequence,
                rec.line_count,
                positions.len(),
                self.account,
                rec.sequence
            ),
        })
    }

    async fn upload_and_trigger(
        &self,
        sequence: SequenceNumber,
        payload: bytes::Bytes,
        line_count: u64,
        state: BatchState,
    ) -> Result<()> {
        let batch = if state == BatchState::Reserved {
            self.shutdown.check()?;
            // First use of this number in the drop: nothing numbered here or above may be
            // there yet (PROTOCOL.md decision 4b).
            self.refuse_foreign_answers(sequence, sequence).await?;
            let gateway_batch_id = self.protocol.upload(sequence, payload).await?;
            sequence_ledger::crash_point("orchestrator.after_request");
            let uploaded = match gateway_batch_id {
                Some(gateway_batch_id) => Transition::RequestUploadedAs { gateway_batch_id },
                None => Transition::RequestUploaded,
            };
            verdict::batch_ref(&self.transition(sequence, uploaded).await?)
        } else {
            verdict::batch_ref(&self.record(sequence).await?)
        };
        self.shutdown.check()?;
        if state == BatchState::RequestUploaded
            && let Some(above) = sequence.next()
        {
            // A resumed batch may have been triggered just before a crash, so its own
            // COMPLETE is expected; anything above it is not ours.
            self.refuse_foreign_answers(above, sequence).await?;
        }
        let trigger = self.protocol.trigger(&batch, line_count);
        if self.protocol.trigger_is_cancel_safe() {
            self.shutdown.until(async { Ok(trigger.await?) }).await?;
        } else {
            trigger.await?;
        }
        sequence_ledger::crash_point("orchestrator.after_process");
        self.transition(sequence, Transition::Triggered).await?;
        self.progress.uploaded(line_count);
        info!(account = %self.account, %sequence, lines = line_count, "batch triggered");
        Ok(())
    }

    /// Reserves, uploads and triggers one new batch, then waits for it (unless it is the last
    /// and the mode does not wait). Returns the number.
    async fn submit_new(&self, positions: &[u32], is_last: bool) -> Result<SequenceNumber> {
        self.shutdown.check()?;
        let (sequence, payload) = self.reserve(positions).await?;
        sequence_ledger::crash_point("orchestrator.after_reserve");
        let span = tracing::info_span!("batch", %sequence);
        async {
            self.upload_and_trigger(
                sequence,
                payload,
                positions.len() as u64,
                BatchState::Reserved,
            )
            .await?;
            let wait = !(is_last && self.mode == WaitMode::UntilTriggered);
            if wait {
                self.wait_and_collect(sequence, positions.len() as u64, false)
                    .await?;
            }
            Ok(sequence)
        }
        .instrument(span)
        .await
    }

    async fn reserve(&self, positions: &[u32]) -> Result<(SequenceNumber, bytes::Bytes)> {
        let (ledger, account) = (self.ledger.clone(), self.account.clone());
        let acct = self.account.to_string();
        let mut sequence = blocking(move || {
            ledger
                .next_sequence(&account)
                .map_err(|source| Error::Ledger {
                    account: acct,
                    source,
                })
        })
        .await?;
        // Checked before the number is reserved, so a refused account leaves no batch behind.
        self.refuse_foreign_answers(sequence, sequence).await?;
        for _ in 0..16 {
            let (payload, lines) = self.build(sequence, positions)?;
            let new = NewBatch {
                sequence,
                request_len: payload.len() as u64,
                lines,
                external_reference: self.protocol.external_reference(sequence)?,
            };
            let built = payload.clone();
            let (ledger, account) = (self.ledger.clone(), self.account.clone());
            let acct = self.account.to_string();
            let outcome = blocking(move || {
                ledger
                    .reserve(&account, new)
                    .map_err(|source| Error::Ledger {
                        account: acct,
                        source,
                    })
            })
            .await?;
            match outcome {
                Reserve::Reserved(_) => return Ok((sequence, built)),
                Reserve::LostRace { next } => sequence = next,
                Reserve::Conflict { conflicts } => {
                    let first = conflicts
                        .first()
                        .map(|c| {
                            let reference = kvp_format::mask_digit_runs(&c.client_ref);
                            format!("ref {reference:?} is already in {}", c.existing)
                        })
                        .unwrap_or_default();
                    return Err(Error::Resume {
                        account: self.account.to_string(),
                        message: format!(
                            "{} transaction(s) already bound elsewhere: {first}",
                            conflicts.len()
                        ),
                    });
                }
            }
        }
        Err(Error::Resume {
            account: self.account.to_string(),
            message: "lost the race for a sequence number 16 times; is another paybatch using this ledger?".into(),
        })
    }

    /// Polls until the verdict (or the deadline: Stuck), then stores results and cleans up.
    /// `resumed` polls at once instead of waiting the first interval.
    async fn wait_and_collect(
        &self,
        sequence: SequenceNumber,
        line_count: u64,
        resumed: bool,
    ) -> Result<()> {
        let mut rec = self.record(sequence).await?;
        let batch = verdict::batch_ref(&rec);
        if rec.state == BatchState::Triggered {
            let triggered_at = rec
                .transitions
                .iter()
                .rev()
                .find(|s| s.state == BatchState::Triggered)
                .map_or_else(now_ms, |s| s.at_unix_ms);
            let deadline = triggered_at
                .saturating_add(u64::try_from(self.poll.timeout.as_millis()).unwrap_or(u64::MAX));
            let mut delay = self.poll.interval;
            let mut first = resumed;
            let account = self.account.to_string();
            self.progress.begin_wait(&account, sequence, triggered_at);
            let _waiting = WaitGuard {
                progress: &self.progress,
                account: &account,
            };
            let mut next_slow_log = SLOW_AFTER;
            let verdict = loop {
                if !first {
                    self.shutdown.sleep(jitter(delay)).await?;
                    delay = (delay * 2).min(self.poll.max_interval);
                }
                first = false;
                sequence_ledger::crash_point("orchestrator.polling");
                match self.protocol.poll(&batch).await {
                    Ok(PollResult::Done(v)) => break Some(v),
                    Ok(PollResult::Pending) => {
                        let waited = Duration::from_millis(now_ms().saturating_sub(triggered_at));
                        if slow_log_due(waited, &mut next_slow_log) {
                            let slow = SlowBatch {
                                account: account.clone(),
                                sequence,
                                waited,
                            };
                            info!(account = %self.account, %sequence, waited_s = waited.as_secs(), "{slow}");
                        }
                    }
                    Err(e) if e.is_transient() => {
                        warn!(account = %self.account, %sequence, error = %e, "poll failed; will retry")
                    }
                    // A permanent storage failure (access denied, bad configuration, ...) will
                    // not go away by waiting until the Stuck deadline: stop the account now.
                    // The batch stays Triggered, so the next run resumes polling it.
                    Err(e @ gateway_protocol::Error::Storage { .. }) => {
                        return Err(Error::Resume {
                            account: account.clone(),
                            message: format!(
                                "batch {sequence}: polling for COMPLETE failed and retrying will not help: {e}; the batch stays Triggered — fix the cause and re-run the same submit to resume it"
                            ),
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
                if now_ms() >= deadline {
                    break None;
                }
            };
            let Some(v) = verdict else {
                warn!(account = %self.account, %sequence, "no COMPLETE before the deadline: batch is Stuck");
                self.transition(sequence, Transition::Stuck).await?;
                self.progress.stuck(line_count);
                return Ok(());
            };
            if !v.success {
                warn!(account = %self.account, %sequence, status = %v.status, "gateway rejected the batch");
            }
            rec = self.transition(sequence, verdict::completed(v)).await?;
        } else if rec.state == BatchState::Stuck {
            if let PollResult::Done(v) = self.protocol.poll(&batch).await? {
                rec = self.transition(sequence, verdict::completed(v)).await?;
            } else {
                return Ok(());
            }
        }
        if let BatchState::Completed(outcome) = rec.state {
            // Each line with a per-line result gets its own outcome; for a rejected batch the
            // rest is decided by the verdict and whether there was an answer at all
            // (PROTOCOL.md decision 4; the merge and the ledger's release rule read this).
            let (lines, answer) = if outcome == sequence_ledger::Outcome::Success {
                let lines = self
                    .protocol
                    .fetch_results(&batch, line_count)
                    .await
                    .map_err(|e| self.unusable_response(sequence, e))?;
                (lines, PerLineAnswer::Read)
            } else {
                let rejected = self
                    .protocol
                    .fetch_rejected_results(&batch, line_count)
                    .await?;
                (rejected.lines, verdict::per_line_answer(rejected.answer))
            };
            let results = lines
                .into_iter()
                .map(|r| StoredResult {
                    index: r.index,
                    fields: r.fields,
                })
                .collect();
            let (ledger, account) = (self.ledger.clone(), self.account.clone());
            let acct = self.account.to_string();
            rec = blocking(move || {
                ledger
                    .store_answer(&account, sequence, results, answer)
                    .map_err(|source| Error::Ledger {
                        account: acct,
                        source,
                    })
            })
            .await?;
            sequence_ledger::crash_point("orchestrator.after_results");
        }
        if rec.state == BatchState::Collected {
            sequence_ledger::crash_point("orchestrator.before_cleanup");
            self.protocol.cleanup(&batch).await?;
            self.transition(sequence, Transition::Cleaned).await?;
            self.progress.completed(line_count);
            info!(account = %self.account, %sequence, "batch collected and cleaned");
        }
        Ok(())
    }
}

impl Worker {
    /// The error of a batch whose COMPLETE says Success but whose per-line answer cannot be
    /// had. A transient storage error goes away by re-running; anything else (RESPONSE
    /// missing, lines missing or extra, another xSequenceNumber) may never go away, so the
    /// message names the operator's way out instead of "re-run" alone.
    fn unusable_response(&self, sequence: SequenceNumber, e: gateway_protocol::Error) -> Error {
        if e.is_transient() {
            return e.into();
        }
        Error::Resume {
            account: self.account.to_string(),
            message: format!(
                "batch {sequence}: COMPLETE says Success but its per-line results cannot be used: {e}. The batch stays Completed and its transactions unknown (they may have been processed: never send them again). Re-run once the gateway provides a correct RESPONSE_{sequence}; if it cannot, close the batch with `paybatch resolve --account {account} --seq {sequence} --mark-unknown --reason \"...\"` — its transactions stay unknown and the account's next batches go on",
                account = self.account
            ),
        }
    }
}

/// `d` ± up to 20 %, so many accounts do not poll in lock-step.
fn jitter(d: Duration) -> Duration {
    let factor = 0.8 + fastrand::f64() * 0.4;
    d.mul_f64(factor)
}
