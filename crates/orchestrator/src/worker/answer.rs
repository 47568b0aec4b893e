//! Waiting for a batch's verdict, and collecting its answer: poll with backoff until the
//! verdict or the deadline (Stuck), record the verdict, store the per-line results durably,
//! then delete exactly this batch's answer files.

use std::time::Duration;

use gateway_protocol::PollResult;
use kvp_format::SequenceNumber;
use sequence_ledger::{BatchOutcome, BatchState, PerLineAnswer, StoredResult, Transition};
use tracing::{info, warn};

use super::Worker;
use crate::error::{Error, Result};
use crate::progress::{SLOW_AFTER, SlowBatch, StorageErrorKind, WaitGuard, slow_log_due};
use crate::verdict;

impl Worker {
    /// Polls until the verdict (or the deadline: Stuck), then stores results and cleans up.
    /// `resumed` polls at once instead of waiting the first interval.
    ///
    /// Durable writes per batch here: one, the verdict and the per-line results together
    /// ([`AccountLedger::complete_and_store`](crate::account_ledger::AccountLedger)), before
    /// the answer files are deleted. `Stuck` and `Cleaned` are deferred: lost in a crash, they
    /// are found again (the deadline is past; RESPONSE/COMPLETE are deleted again).
    pub(super) async fn wait_and_collect(
        &self,
        sequence: SequenceNumber,
        line_count: u64,
        resumed: bool,
    ) -> Result<()> {
        let mut rec = self.ledger.batch(sequence).await?;
        let batch = verdict::batch_ref(&rec);
        let fresh = match rec.state {
            BatchState::Triggered => {
                let Some(v) = self.await_verdict(&rec, resumed).await? else {
                    warn!(account = %self.account, %sequence, "no COMPLETE before the deadline: batch is Stuck");
                    self.ledger
                        .transition_deferred(sequence, Transition::Stuck)
                        .await?;
                    self.progress.stuck(line_count);
                    return Ok(());
                };
                if !v.success {
                    warn!(account = %self.account, %sequence, status = %v.status, "gateway rejected the batch");
                }
                Some(verdict::completed(v))
            }
            BatchState::Stuck => match self.protocol.poll(&batch).await? {
                PollResult::Done(v) => Some(verdict::completed(verdict::scrubbed(v))),
                PollResult::Pending => return Ok(()),
            },
            _ => None,
        };
        let outcome = match (&fresh, rec.state) {
            (Some(step), _) => match step.target() {
                BatchState::Completed(outcome) => Some(outcome),
                _ => None,
            },
            (None, BatchState::Completed(outcome)) => Some(outcome),
            _ => None,
        };
        // Whether the verdict says nothing was processed (`xProcessedCount=0`).
        let claims_none = match &fresh {
            Some(Transition::Completed(v) | Transition::CompletedWith(v, _)) => {
                v.processed_count == Some(0)
            }
            Some(_) => false,
            None => rec
                .verdict
                .as_ref()
                .is_some_and(|v| v.processed_count == Some(0)),
        };
        if let Some(outcome) = outcome {
            match self
                .fetch_answer(&batch, sequence, outcome, claims_none, line_count)
                .await
            {
                Ok((results, answer)) => {
                    rec = match fresh {
                        Some(step) => {
                            self.ledger
                                .complete_and_store(sequence, step, results, answer)
                                .await?
                        }
                        None => self.ledger.store_answer(sequence, results, answer).await?,
                    };
                    sequence_ledger::crash_point("orchestrator.after_results");
                }
                Err(e) => {
                    // The verdict is kept (status shows it; the next run reads the answer
                    // again); without the answer the batch is not collected.
                    if let Some(step) = fresh {
                        self.ledger.transition_deferred(sequence, step).await?;
                    }
                    return Err(e);
                }
            }
        }
        if rec.state == BatchState::Collected {
            sequence_ledger::crash_point("orchestrator.before_cleanup");
            self.protocol.cleanup(&batch).await?;
            self.ledger
                .transition_deferred(sequence, Transition::Cleaned)
                .await?;
            self.progress.completed(line_count);
            info!(account = %self.account, %sequence, "batch collected and cleaned");
        }
        Ok(())
    }

    /// The per-line answer of a batch with verdict `outcome`: each line with a per-line
    /// result gets its own outcome; for a rejected batch the rest is decided by the verdict
    /// and whether there was an answer at all (PROTOCOL.md decision 4; the merge and the
    /// ledger's release rule read this).
    async fn fetch_answer(
        &self,
        batch: &gateway_protocol::BatchRef,
        sequence: SequenceNumber,
        outcome: BatchOutcome,
        claims_none: bool,
        line_count: u64,
    ) -> Result<(Vec<StoredResult>, PerLineAnswer)> {
        let (lines, answer) = if outcome == BatchOutcome::Success {
            let lines = self
                .protocol
                .fetch_results(batch, line_count)
                .await
                .map_err(|e| self.unusable_answer(sequence, e))?;
            (lines, PerLineAnswer::Read)
        } else {
            let rejected = self
                .protocol
                .fetch_rejected_results(batch, line_count)
                .await?;
            let mut answer = verdict::per_line_answer(rejected.answer);
            // A line the gateway approved, declined or left pending was processed: an answer
            // that also says nothing was (`xProcessedCount=0`) contradicts itself, and proves
            // nothing about the lines it does not mention — kept like an unreadable one, so
            // those are `unknown`, never released (the lines it mentions keep their outcome).
            let processed = || {
                rejected.lines.iter().any(|r| {
                    r.fields.get("xResult").is_some_and(|x| {
                        matches!(
                            crate::LineOutcome::from_x_result(Some(x)),
                            crate::LineOutcome::Approved
                                | crate::LineOutcome::Declined
                                | crate::LineOutcome::Unknown
                        )
                    })
                })
            };
            if claims_none && answer == PerLineAnswer::Read && processed() {
                warn!(account = %self.account, %sequence, "the rejected batch's answer has processed lines: its processed count is not believed, and its other lines are unknown");
                answer = PerLineAnswer::Unreadable;
            }
            (rejected.lines, answer)
        };
        let results = lines
            .into_iter()
            .map(|r| StoredResult {
                index: r.index,
                fields: verdict::scrubbed_fields(r.fields),
            })
            .collect();
        Ok((results, answer))
    }

    /// Polls a Triggered batch with doubling, jittered delays until its verdict, or `None` at
    /// the deadline, which counts from the ledger's Triggered stamp (a restart does not
    /// extend it). Transient failures are retried; a permanent storage failure stops the
    /// account at once (the batch stays Triggered).
    async fn await_verdict(
        &self,
        rec: &sequence_ledger::BatchRecord,
        resumed: bool,
    ) -> Result<Option<gateway_protocol::GatewayVerdict>> {
        let sequence = rec.sequence;
        let batch = verdict::batch_ref(rec);
        let triggered_at = rec
            .transitions
            .iter()
            .rev()
            .find(|s| s.state == BatchState::Triggered)
            .map_or_else(|| self.clock.now_ms(), |s| s.at_unix_ms);
        let timeout = u64::try_from(self.poll.timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = triggered_at.saturating_add(timeout);
        let account = self.account.to_string();
        self.progress.begin_wait(&account, sequence, triggered_at);
        let _waiting = WaitGuard {
            progress: &self.progress,
            account: &account,
        };
        let mut delay = self.poll.interval;
        let mut first = resumed;
        let mut next_slow_log = SLOW_AFTER;
        loop {
            if !first {
                // A lease lost while waiting (another process took the account over) stops
                // the wait at once: that process finishes this batch.
                tokio::select! {
                    slept = self.shutdown.sleep(self.jitter(delay)) => slept?,
                    () = self.ledger.lost() => return Err(self.ledger.lost_error()),
                }
                delay = (delay * 2).min(self.poll.max_interval);
            }
            first = false;
            if self.ledger.lease_lost() {
                return Err(self.ledger.lost_error());
            }
            sequence_ledger::crash_point("orchestrator.polling");
            match self.protocol.poll(&batch).await {
                Ok(PollResult::Done(v)) => return Ok(Some(verdict::scrubbed(v))),
                Ok(PollResult::Pending) => {
                    let waited =
                        Duration::from_millis(self.clock.now_ms().saturating_sub(triggered_at));
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
                    warn!(account = %self.account, %sequence, error = %e, "poll failed; will retry");
                    self.progress
                        .storage_error(self.account.as_str(), StorageErrorKind::Transient);
                }
                // A permanent storage failure (access denied, bad configuration, ...) will
                // not go away by waiting until the Stuck deadline: stop the account now.
                // The batch stays Triggered, so the next run resumes polling it.
                Err(source @ gateway_protocol::Error::Storage { .. }) => {
                    return Err(Error::PollFailed {
                        account: self.account.to_string(),
                        sequence,
                        source,
                    });
                }
                Err(e) => return Err(e.into()),
            }
            if self.clock.now_ms() >= deadline {
                return Ok(None);
            }
        }
    }

    /// The error of a batch whose COMPLETE says Success but whose per-line answer cannot be
    /// had. A transient failure goes away by re-running; anything else (RESPONSE missing,
    /// lines missing or extra, another xSequenceNumber) may never go away, so the error names
    /// the operator's way out instead of "re-run" alone.
    fn unusable_answer(&self, sequence: SequenceNumber, e: gateway_protocol::Error) -> Error {
        if e.is_transient() {
            return e.into();
        }
        Error::UnusableAnswer {
            account: self.account.to_string(),
            sequence,
            source: e,
        }
    }
}
