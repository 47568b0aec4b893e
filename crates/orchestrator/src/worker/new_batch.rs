//! A new batch: its payload and bindings, the durable reservation of its number, then
//! REQUEST (verified) and PROCESS, always in that order.

use kvp_format::SequenceNumber;
use sequence_ledger::{BatchState, NewBatch, NewBinding, Reserve, Transition};
use tracing::{Instrument, info};

use super::Worker;
use crate::driver::WaitMode;
use crate::error::{Error, Result};
use crate::verdict;
use gateway_protocol::BatchLine;

impl Worker {
    /// The batch payload for `positions` (xIndex = place in the list) and its bindings.
    pub(super) fn build(
        &self,
        sequence: SequenceNumber,
        positions: &[u32],
    ) -> Result<(bytes::Bytes, Vec<NewBinding>)> {
        let account = self
            .job
            .account_index(self.account.as_str())
            .ok_or_else(|| Error::setting("accounts", "account not in the job"))?;
        let txs = self.job.batch(account, positions)?;
        let mut lines = Vec::with_capacity(txs.len());
        let mut bindings = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            let tx = tx?;
            lines.push(BatchLine {
                index: i as u64,
                fields: tx.fields,
            });
            bindings.push(NewBinding {
                client_ref: tx.reference.to_owned(),
                index: i as u64,
                content_digest: tx.digest,
            });
        }
        let payload = self.protocol.encode_request(sequence, &lines)?;
        Ok((payload, bindings))
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

    /// REQUEST_X (unless already recorded as uploaded), then PROCESS_X, each recorded in the
    /// ledger once done. `answers_checked`: the drop was just found free of answers numbered
    /// `sequence` or above (a batch reserved a moment ago).
    pub(super) async fn upload_and_trigger(
        &self,
        sequence: SequenceNumber,
        payload: bytes::Bytes,
        line_count: u64,
        state: BatchState,
        answers_checked: bool,
    ) -> Result<()> {
        let batch = if state == BatchState::Reserved {
            self.shutdown.check()?;
            // First use of this number in the drop: nothing numbered here or above may be
            // there yet (PROTOCOL.md decision 4b).
            if !answers_checked {
                self.refuse_foreign_answers(sequence, sequence).await?;
            }
            let gateway_batch_id = self.protocol.upload(sequence, payload).await?;
            sequence_ledger::crash_point("orchestrator.after_request");
            let uploaded = match gateway_batch_id {
                Some(gateway_batch_id) => Transition::RequestUploadedAs { gateway_batch_id },
                None => Transition::RequestUploaded,
            };
            let record = self.ledger.transition(sequence, uploaded).await?;
            sequence_ledger::crash_point("orchestrator.after_uploaded");
            verdict::batch_ref(&record)
        } else {
            verdict::batch_ref(&self.ledger.batch(sequence).await?)
        };
        self.shutdown.check()?;
        if state == BatchState::RequestUploaded
            && let Some(above) = sequence.next()
        {
            // A resumed batch may have been triggered just before a crash, so its own
            // COMPLETE is expected; anything above it is not ours.
            self.refuse_foreign_answers(above, sequence).await?;
        }
        // PROCESS_X only while the account is still ours (a process paused past its lease
        // stops here; the one that took the account over triggers the batch).
        // A shutdown while it waits out an unreachable database stops here, untriggered.
        self.shutdown.until(self.ledger.confirm_lease()).await?;
        let trigger = self.protocol.trigger(&batch, line_count);
        if self.protocol.trigger_is_cancel_safe() {
            self.shutdown.until(async { Ok(trigger.await?) }).await?;
        } else {
            trigger.await?;
        }
        sequence_ledger::crash_point("orchestrator.after_process");
        // Deferred: lost in a crash, the batch is RequestUploaded again and is triggered
        // again, which the gateway's sequence rule makes harmless (as a crash between PROCESS
        // and this record always could).
        self.ledger
            .transition_deferred(sequence, Transition::Triggered)
            .await?;
        self.progress.uploaded(line_count);
        info!(account = %self.account, %sequence, lines = line_count, "batch triggered");
        Ok(())
    }

    /// Reserves, uploads and triggers one new batch, then waits for it (unless it is the last
    /// and the mode does not wait). Returns the number.
    pub(super) async fn submit_new(
        &self,
        positions: &[u32],
        is_last: bool,
    ) -> Result<SequenceNumber> {
        self.shutdown.check()?;
        let (sequence, payload) = self.reserve(positions).await?;
        sequence_ledger::crash_point("orchestrator.after_reserve");
        let span = tracing::info_span!("batch", %sequence);
        async {
            let lines = positions.len() as u64;
            self.upload_and_trigger(sequence, payload, lines, BatchState::Reserved, true)
                .await?;
            if !(is_last && self.mode == WaitMode::UntilTriggered) {
                self.wait_and_collect(sequence, lines, false).await?;
            }
            Ok(sequence)
        }
        .instrument(span)
        .await
    }

    /// Reserves the account's next number for `positions`, durably, before anything carrying
    /// it exists (PROTOCOL.md decision 6).
    async fn reserve(&self, positions: &[u32]) -> Result<(SequenceNumber, bytes::Bytes)> {
        let mut sequence = self.ledger.next_sequence().await?;
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
            match self.ledger.reserve(new).await? {
                Reserve::Reserved(_) => return Ok((sequence, payload)),
                Reserve::LostRace { next } => sequence = next,
                Reserve::Conflict { conflicts } => {
                    let (line, message) = conflicts
                        .first()
                        .map(|c| {
                            let pos = positions.get(c.index as usize).copied().unwrap_or(0);
                            let reference = kvp_format::mask_digit_runs(&c.client_ref);
                            (
                                self.job.line_of(pos as usize),
                                format!(
                                    "ref {reference:?} is already in {} ({} transaction(s) of this batch are bound elsewhere)",
                                    c.existing,
                                    conflicts.len()
                                ),
                            )
                        })
                        .unwrap_or_default();
                    return Err(Error::Conflict {
                        account: self.account.to_string(),
                        line,
                        message,
                    });
                }
            }
        }
        Err(Error::LostRace {
            account: self.account.to_string(),
        })
    }
}
