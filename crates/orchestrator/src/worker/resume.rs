//! Batches the ledger already holds: this input's own (finished with the same number and the
//! same transactions) and other inputs' (finished first when that needs no payload).

use kvp_format::SequenceNumber;
use sequence_ledger::{BatchRecord, BatchState, NewBinding};
use tracing::debug;

use super::Worker;
use crate::error::{Error, Result};
use crate::verdict;
use crate::{RequestCheck, Withdrawn};
use gateway_protocol::PollResult;

impl Worker {
    /// Takes one batch of this input as far as it goes (`wait`: until its answer is
    /// collected, else just triggered); returns the state it was left in.
    pub(super) async fn finish_existing(
        &self,
        sequence: SequenceNumber,
        positions: &[u32],
        wait: bool,
    ) -> Result<BatchState> {
        let rec = self.ledger.batch(sequence).await?;
        debug!(account = %self.account, %sequence, state = rec.state.name(), "resuming batch");
        if matches!(
            rec.state,
            BatchState::Reserved | BatchState::RequestUploaded
        ) {
            self.remove_unpublished(sequence).await;
        }
        self.check_reference(&rec)?;
        match rec.state {
            BatchState::Reserved | BatchState::RequestUploaded => {
                let (payload, bindings) = self.build(sequence, positions)?;
                self.check_same_transactions(&rec, &bindings, &payload)?;
                if rec.state == BatchState::RequestUploaded {
                    // Its REQUEST is not uploaded again: what is under its name must still be
                    // ours before PROCESS goes out.
                    self.protocol.verify_uploaded(sequence, &payload).await?;
                }
                let lines = positions.len() as u64;
                self.upload_and_trigger(sequence, payload, lines, rec.state, false)
                    .await?;
                if wait {
                    self.wait_and_collect(sequence, lines, true).await?;
                }
            }
            // Not waiting: look once; an answer that is there is collected.
            BatchState::Triggered if !wait => {
                self.poll_once(sequence, rec.line_count).await?;
            }
            BatchState::Triggered | BatchState::Completed(_) | BatchState::Collected => {
                self.wait_and_collect(sequence, rec.line_count, true)
                    .await?;
            }
            BatchState::Stuck => {
                self.poll_once(sequence, rec.line_count).await?;
            }
            BatchState::Cleaned | BatchState::Abandoned | BatchState::MarkedUnknown => {}
        }
        Ok(self.ledger.batch(sequence).await?.state)
    }

    /// Finishes the account's batches from other inputs (not in `own`, this input's) that are
    /// still in flight, where that needs no payload (Triggered onwards). One that cannot be
    /// finished stops the account: a Stuck one (still unanswered), or one never triggered
    /// (its transactions are in another input).
    pub(super) async fn finish_others(&self, own: &[SequenceNumber]) -> Result<()> {
        for rec in self.ledger.batches().await? {
            if own.contains(&rec.sequence) {
                continue;
            }
            self.check_reference(&rec)?;
            let blocked = |hint| Error::Blocked {
                account: self.account.to_string(),
                sequence: rec.sequence,
                state: rec.state,
                hint,
            };
            match rec.state {
                BatchState::Triggered => {
                    // Finishing it needs no payload: poll, collect, clean.
                    self.wait_and_collect(rec.sequence, rec.line_count, true)
                        .await?;
                    if self.ledger.batch(rec.sequence).await?.state == BatchState::Stuck {
                        return Err(blocked(
                            "no COMPLETE in time; resolve it before new batches",
                        ));
                    }
                }
                BatchState::Completed(_) | BatchState::Collected => {
                    self.wait_and_collect(rec.sequence, rec.line_count, true)
                        .await?;
                }
                BatchState::Stuck => {
                    if !self.poll_once(rec.sequence, rec.line_count).await? {
                        return Err(blocked(
                            "still no COMPLETE; check the gateway, then `paybatch resolve`",
                        ));
                    }
                }
                // On a shared ledger this process holds the account's lease, so whoever
                // reserved this batch lost it: take it over (docs/ARCHITECTURE.md).
                BatchState::Reserved | BatchState::RequestUploaded if self.shared_ledger => {
                    self.take_over(&rec).await?;
                }
                BatchState::Reserved | BatchState::RequestUploaded => {
                    return Err(blocked(
                        "it was reserved for transactions that are not in this input; re-run with that input (or abandon it with `paybatch resolve`)",
                    ));
                }
                BatchState::Cleaned | BatchState::Abandoned | BatchState::MarkedUnknown => {}
            }
        }
        Ok(())
    }

    /// Takes over a batch another process reserved before it lost the account's lease
    /// (PROTOCOL.md §5). `Reserved`: never triggered (PROCESS_X follows a committed
    /// RequestUploaded, which that process can no longer commit), so it is released — its
    /// transactions unbound for the next run of their input — unless the drop says otherwise:
    /// a trigger or an answer there contradicts the ledger, and releasing would report lines
    /// `not_processed` that the gateway may process, so the account stops, naming the batch,
    /// for an operator. `RequestUploaded`: REQUEST_X
    /// was written and read back by its holder before it recorded the step. When PROCESS_X
    /// is there too (or the answer), the holder triggered it before it was lost: the step is
    /// recorded and the batch polled and collected. Otherwise REQUEST_X must still be in the
    /// drop (where the protocol can tell), then PROCESS_X is written (the same bytes the
    /// holder would have written; the gateway ignores a number it has seen) and the batch is
    /// polled and collected like any other.
    async fn take_over(&self, rec: &BatchRecord) -> Result<()> {
        let sequence = rec.sequence;
        self.remove_unpublished(sequence).await;
        let inspection = self.protocol.inspect(sequence).await?;
        let triggered = inspection.triggered == Some(true) || inspection.answered == Some(true);
        if rec.state == BatchState::Reserved {
            if triggered {
                tracing::error!(account = %self.account, %sequence, found = ?inspection.found, "a batch recorded as never triggered has a trigger or an answer in the drop: not released");
                return Err(Error::Blocked {
                    account: self.account.to_string(),
                    sequence,
                    state: rec.state,
                    hint: "it is recorded as never triggered, but the drop holds its trigger or its answer: the gateway may process it; check the drop, then `paybatch resolve` (never abandon it while that file is there)",
                });
            }
            let reason = format!(
                "released at a takeover by {}: reserved by a process that lost the account's lease before triggering it; its transactions go into a new batch when their input is run again",
                self.ledger.owner()
            );
            self.ledger
                .resolve(
                    sequence,
                    sequence_ledger::Transition::Abandoned {
                        reason: reason.clone(),
                    },
                    reason,
                )
                .await?;
            tracing::warn!(account = %self.account, %sequence, "took over a batch that was never triggered: released it");
            self.withdraw_request(rec).await;
            return Ok(());
        }
        if triggered {
            // The lost holder wrote PROCESS_X (the gateway may have consumed REQUEST_X
            // since): record the step it could not, then poll and collect.
            tracing::warn!(account = %self.account, %sequence, "taking over a batch another process triggered: collecting it");
            self.ledger
                .transition_deferred(sequence, sequence_ledger::Transition::Triggered)
                .await?;
            return self.wait_and_collect(sequence, rec.line_count, true).await;
        }
        if inspection.uploaded == Some(false) {
            return Err(Error::Blocked {
                account: self.account.to_string(),
                sequence,
                state: rec.state,
                hint: "it is recorded as uploaded, but the gateway holds neither its request nor its trigger (Sola: no REQUEST or PROCESS in the drop; APS: the service does not know the reference): check, then `paybatch resolve`",
            });
        }
        if !self.check_taken_over_request(rec).await? {
            // Its request left the drop since the inspection: the gateway took it after a
            // PROCESS the lost holder wrote late. Collect it like a triggered one.
            tracing::warn!(account = %self.account, %sequence, "taking over a batch another process triggered meanwhile: collecting it");
            self.ledger
                .transition_deferred(sequence, sequence_ledger::Transition::Triggered)
                .await?;
            return self.wait_and_collect(sequence, rec.line_count, true).await;
        }
        tracing::warn!(account = %self.account, %sequence, "taking over a batch another process uploaded: triggering and collecting it");
        self.upload_and_trigger(
            sequence,
            bytes::Bytes::new(),
            rec.line_count,
            BatchState::RequestUploaded,
            false,
        )
        .await?;
        self.wait_and_collect(sequence, rec.line_count, true).await
    }

    /// Before a takeover triggers a batch another process uploaded: what the gateway holds
    /// under its name must carry the transactions the ledger bound to the number
    /// ([`crate::check_request`]), or a PROCESS would send a request this ledger did not write
    /// (`ForeignRequest`). A protocol that cannot show its uploads (APS) passes. A request
    /// gone since the inspection found it is looked for again: `Ok(false)` when the drop now
    /// shows its trigger or answer (the lost holder's PROCESS landed late, and the gateway
    /// took the request), else the account stops.
    async fn check_taken_over_request(&self, rec: &BatchRecord) -> Result<bool> {
        match crate::check_request(&*self.protocol, rec).await? {
            RequestCheck::Ours | RequestCheck::NotShown => Ok(true),
            RequestCheck::NotOurs => {
                tracing::error!(account = %self.account, sequence = %rec.sequence, "the request under a taken-over batch's name is not the one its ledger record describes: not triggered");
                Err(gateway_protocol::Error::ForeignRequest {
                    account: self.account.to_string(),
                    sequence: rec.sequence,
                }
                .into())
            }
            RequestCheck::Absent => {
                let now = self.protocol.inspect(rec.sequence).await?;
                if now.triggered == Some(true) || now.answered == Some(true) {
                    return Ok(false);
                }
                Err(Error::Blocked {
                    account: self.account.to_string(),
                    sequence: rec.sequence,
                    state: rec.state,
                    hint: "it is recorded as uploaded, but its request left the drop with no trigger and no answer there: check with the gateway, then `paybatch resolve` (--mark-unknown unless the gateway confirms it never processed it)",
                })
            }
        }
    }

    /// After a batch that was never triggered was released: removes its request from the
    /// drop when it is this ledger's (its lines hold card data, and nothing will send them).
    /// Best effort: the batch is final whatever happens here.
    async fn withdraw_request(&self, rec: &BatchRecord) {
        match crate::withdraw_own_request(&*self.protocol, rec).await {
            Ok(Withdrawn::Removed) => {
                tracing::info!(account = %self.account, sequence = %rec.sequence, "removed the released batch's request from the drop");
            }
            Ok(Withdrawn::NotOurs) => {
                tracing::warn!(account = %self.account, sequence = %rec.sequence, "the request under the released batch's number is not this ledger's: left in the drop");
            }
            Ok(Withdrawn::Nothing) => {}
            Err(e) => {
                tracing::warn!(account = %self.account, sequence = %rec.sequence, error = %e, "cannot remove the released batch's request from the drop");
            }
        }
    }

    /// Removes what an upload of `sequence` interrupted by a crash left in the drop (its
    /// temporary files hold the batch's card data). Best effort: a failure is logged and the
    /// batch goes on (the files are hidden from the gateway and from listings; a batch still
    /// unfinished is tried again at its next resume).
    async fn remove_unpublished(&self, sequence: SequenceNumber) {
        match self.protocol.remove_unpublished(sequence).await {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(account = %self.account, %sequence, removed, "removed the temporary files of an interrupted upload");
            }
            Err(e) => {
                tracing::warn!(account = %self.account, %sequence, error = %e, "cannot remove the temporary files of an interrupted upload");
            }
        }
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
        Err(Error::ReferenceChanged {
            account: self.account.to_string(),
            sequence: rec.sequence,
            stored: stored.clone(),
            now,
        })
    }

    /// Polls a Stuck (or, without waiting, a Triggered) batch once; true if it has now
    /// completed (and was collected).
    pub(super) async fn poll_once(
        &self,
        sequence: SequenceNumber,
        line_count: u64,
    ) -> Result<bool> {
        let batch = verdict::batch_ref(&self.ledger.batch(sequence).await?);
        match self.protocol.poll(&batch).await? {
            PollResult::Pending => Ok(false),
            PollResult::Done(_) => {
                self.wait_and_collect(sequence, line_count, true).await?;
                Ok(true)
            }
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
        lines: &[NewBinding],
        payload: &bytes::Bytes,
    ) -> Result<()> {
        let digests = lines.iter().map(|l| &l.content_digest);
        if crate::own_request::matches_record(rec, digests, payload) {
            return Ok(());
        }
        Err(Error::BatchChanged {
            account: self.account.to_string(),
            sequence: rec.sequence,
            bound: rec.line_count,
            found: lines.len() as u64,
        })
    }
}
