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
    AccountId, BatchRecord, BatchState, Ledger, NewBatch, NewBinding, Reserve, StoredResult,
    Transition,
};
use sha2::{Digest, Sha256};
use tracing::{Instrument, debug, info, warn};

use crate::driver::{Shutdown, WaitMode};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::plan::{AccountPlan, content_digest};
use crate::progress::{Progress, SLOW_AFTER, SlowBatch, WaitGuard, slow_log_due};
use crate::protocol::{GatewayProtocol, PollResult, RequestLine};
use crate::settings::PollSettings;

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

/// What happened to one account.
#[derive(Debug, Default)]
pub(crate) struct AccountRun {
    /// Every batch this input's transactions are in: number and input positions by xIndex.
    pub batches: Vec<(SequenceNumber, Vec<u32>)>,
    /// Positions never put into a batch (the account failed or was blocked first).
    pub unsent: Vec<u32>,
    /// Why the account stopped early.
    pub failure: Option<String>,
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
        let mut run = AccountRun::default();
        let fresh = plan.fresh.into_iter();
        // Batches of this input the ledger already holds, oldest first.
        let mut existing = plan.existing.into_iter();
        while let Some((sequence, positions)) = existing.next() {
            run.batches.push((sequence, positions.clone()));
            let stop = match self.finish_existing(sequence, &positions).await {
                Err(e) => Some(e.to_string()),
                // A Stuck batch is unanswered: finishing a later one would put PROCESS_{n+1}
                // before COMPLETE_n (PROTOCOL.md §2 item 5). The later ones stay bound to
                // their numbers and are reported `unknown`.
                Ok(BatchState::Stuck) => Some(format!(
                    "batch {sequence} is Stuck (no COMPLETE in time); later batches were not finished or sent — check the gateway, then re-run the same submit or `paybatch resolve --account {} --seq {sequence}`",
                    self.account
                )),
                Ok(_) => None,
            };
            if let Some(message) = stop {
                run.failure = Some(message);
                run.batches.extend(existing);
                run.unsent = fresh.flatten().collect();
                return run;
            }
        }
        // Batches of other inputs still in flight block new ones (one in flight per account).
        match self.blocking_batch().await {
            Ok(None) => {}
            Ok(Some(message)) => {
                run.failure = Some(message);
                run.unsent = fresh.flatten().collect();
                return run;
            }
            Err(e) => {
                run.failure = Some(e.to_string());
                run.unsent = fresh.flatten().collect();
                return run;
            }
        }
        if !self.new_batches {
            run.unsent = fresh.flatten().collect();
            return run;
        }
        let mut pending: Vec<Vec<u32>> = fresh.collect();
        pending.reverse();
        while let Some(positions) = pending.pop() {
            let is_last = pending.is_empty();
            match self.submit_new(&positions, is_last).await {
                Ok(sequence) => run.batches.push((sequence, positions)),
                Err((reserved, e)) => {
                    if let Some(sequence) = reserved {
                        run.batches.push((sequence, positions));
                    } else {
                        run.unsent.extend(positions);
                    }
                    run.failure = Some(e.to_string());
                    run.unsent.extend(pending.into_iter().rev().flatten());
                    return run;
                }
            }
            // A Stuck batch blocks the rest of the account until an operator resolves it.
            if let Some((sequence, _)) = run.batches.last()
                && let Ok(rec) = self.record(*sequence).await
                && rec.state == BatchState::Stuck
                && !pending.is_empty()
            {
                run.failure = Some(format!(
                    "batch {sequence} is Stuck (no COMPLETE in time); later batches were not sent — check the gateway, then `paybatch resolve`"
                ));
                run.unsent.extend(pending.into_iter().rev().flatten());
                return run;
            }
        }
        run
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
                BatchState::Cleaned | BatchState::Abandoned => {}
            }
        }
        Ok(None)
    }

    /// Refuses to go on with an unfinished batch that the gateway would now be asked about
    /// under another name than the one it was reserved under: uploading it again would
    /// process its transactions twice, polling it would ask about a batch the gateway does not
    /// know. Records without a stored name (Sola, or reserved before names were stored) pass.
    fn check_reference(&self, rec: &BatchRecord) -> Result<()> {
        if matches!(rec.state, BatchState::Cleaned | BatchState::Abandoned) {
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

    /// Polls a Stuck batch once; true if it has now completed (and was collected).
    async fn poll_stuck(&self, sequence: SequenceNumber, line_count: u64) -> Result<bool> {
        match self.protocol.poll(sequence).await? {
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
    ) -> Result<BatchState> {
        self.finish_existing_steps(sequence, positions).await?;
        Ok(self.record(sequence).await?.state)
    }

    async fn finish_existing_steps(
        &self,
        sequence: SequenceNumber,
        positions: &[u32],
    ) -> Result<()> {
        let rec = self.record(sequence).await?;
        debug!(account = %self.account, %sequence, state = rec.state.name(), "resuming batch");
        self.check_reference(&rec)?;
        match rec.state {
            BatchState::Reserved | BatchState::RequestUploaded => {
                let (payload, _) = self.build(sequence, positions)?;
                let digest: [u8; 32] = Sha256::digest(&payload).into();
                if digest != rec.request_sha256 || payload.len() as u64 != rec.request_len {
                    return Err(Error::Resume {
                        account: self.account.to_string(),
                        message: format!(
                            "batch {sequence}: the rebuilt REQUEST differs from the one bound in the ledger (input or config changed); not resubmitting"
                        ),
                    });
                }
                self.upload_and_trigger(sequence, payload, positions.len() as u64, rec.state)
                    .await?;
                self.wait_and_collect(sequence, positions.len() as u64, true)
                    .await
            }
            BatchState::Triggered | BatchState::Completed(_) | BatchState::Collected => {
                self.wait_and_collect(sequence, rec.line_count, true).await
            }
            BatchState::Stuck => {
                self.poll_stuck(sequence, rec.line_count).await?;
                Ok(())
            }
            BatchState::Cleaned | BatchState::Abandoned => Ok(()),
        }
    }

    async fn upload_and_trigger(
        &self,
        sequence: SequenceNumber,
        payload: bytes::Bytes,
        line_count: u64,
        state: BatchState,
    ) -> Result<()> {
        if state == BatchState::Reserved {
            self.shutdown.check()?;
            self.protocol.upload(sequence, payload).await?;
            sequence_ledger::crash_point("orchestrator.after_request");
            self.transition(sequence, Transition::RequestUploaded)
                .await?;
        }
        self.shutdown.check()?;
        let trigger = self.protocol.trigger(sequence, line_count);
        if self.protocol.trigger_is_cancel_safe() {
            self.shutdown.until(trigger).await?;
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
    /// and the mode does not wait). Returns the number, or the number reserved (if any) and
    /// the error.
    async fn submit_new(
        &self,
        positions: &[u32],
        is_last: bool,
    ) -> std::result::Result<SequenceNumber, (Option<SequenceNumber>, Error)> {
        self.shutdown.check().map_err(|e| (None, e))?;
        let (sequence, payload) = self.reserve(positions).await.map_err(|e| (None, e))?;
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
            Ok(())
        }
        .instrument(span)
        .await
        .map(|()| sequence)
        .map_err(|e| (Some(sequence), e))
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
        for _ in 0..16 {
            let (payload, lines) = self.build(sequence, positions)?;
            let new = NewBatch {
                sequence,
                request_sha256: Sha256::digest(&payload).into(),
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
                match self.protocol.poll(sequence).await {
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
                    Err(Error::Storage { ref source, .. })
                        if source.kind() == storage_backends::ErrorKind::Transient =>
                    {
                        warn!(account = %self.account, %sequence, error = %source, "poll failed; will retry")
                    }
                    // A permanent failure (access denied, bad configuration, ...) will not go
                    // away by waiting until the Stuck deadline: stop the account now. The
                    // batch stays Triggered, so the next run resumes polling it.
                    Err(e @ Error::Storage { .. }) => {
                        return Err(Error::Resume {
                            account: account.clone(),
                            message: format!(
                                "batch {sequence}: polling for COMPLETE failed and retrying will not help: {e}; the batch stays Triggered — fix the cause and re-run the same submit to resume it"
                            ),
                        });
                    }
                    Err(e) => return Err(e),
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
            rec = self.transition(sequence, v.into_transition()).await?;
        } else if rec.state == BatchState::Stuck {
            if let PollResult::Done(v) = self.protocol.poll(sequence).await? {
                rec = self.transition(sequence, v.into_transition()).await?;
            } else {
                return Ok(());
            }
        }
        if let BatchState::Completed(outcome) = rec.state {
            // A rejected batch: the verdict decides the outcome, RESPONSE (if any) only adds
            // what the gateway said about each line. Its bindings are released only when
            // xProcessedCount=0 (the ledger's rule), whatever RESPONSE holds.
            let lines = if outcome == sequence_ledger::Outcome::Success {
                self.protocol.fetch_results(sequence, line_count).await?
            } else {
                self.protocol
                    .fetch_rejected_results(sequence, line_count)
                    .await?
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
                    .store_results(&account, sequence, results)
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
            self.protocol.cleanup(sequence).await?;
            self.transition(sequence, Transition::Cleaned).await?;
            self.progress.completed(line_count);
            info!(account = %self.account, %sequence, "batch collected and cleaned");
        }
        Ok(())
    }
}

/// `d` ± up to 20 %, so many accounts do not poll in lock-step.
fn jitter(d: Duration) -> Duration {
    let factor = 0.8 + fastrand::f64() * 0.4;
    d.mul_f64(factor)
}
