//! [`ApsBatchApi`]: the orchestrator's [`GatewayProtocol`] over the APS batch service.
//!
//! | trait step | APS |
//! |---|---|
//! | `encode_request` | the CSV batch file (deterministic bytes) |
//! | `upload` | `UPLOAD_BATCH_FILE` → its `batch_id`; 51146 = already uploaded, accepted only when the service's line count and every `merchant_reference` it names match this file |
//! | `trigger` | `GET_BATCH_RESULTS` until validation is over, then `PROCESS_BATCH` (to the Process URL) if it passed |
//! | `poll` | `GET_BATCH_RESULTS` once: a verdict only from per-line transaction rows (processed) or 77xxx (failed validation); everything else is pending or an error |
//! | `fetch_results` | per-line rows (JSON `batch_results` or a CSV body) joined on `Line_Number` = index + `line_number_offset`, checked against the lines' `merchant_reference` |
//! | `fetch_rejected_results` | after a failed validation: each flagged line's own `response_code`/`response_message`, joined the same way |
//! | `cleanup` | nothing to delete |
//!
//! `batch_id` (the upload's) is sent on every `GET_BATCH_RESULTS` and `PROCESS_BATCH` once
//! the ledger holds it ([`BatchRef`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use kvp_format::SequenceNumber;

use crate::batch_file::{ApsTransaction, HeaderNames, write_batch_file_with};
use crate::client::{AnswerForm, ApsAnswer, ApsClient, UploadOutcome};
use crate::config::ApsAccountConfig;
use crate::error::Error as ApsError;
use crate::reading::{Reading, any_rows, line_fields, read, rejected_lines, validation_summary};
use crate::reference::BatchReference;
use crate::results::{check_references, join_complete, join_partial, parse_batch_results};
use gateway_protocol::{
    AnswerFile, BatchFile, BatchLine, BatchRef, Error, GatewayProtocol, GatewayVerdict, Inspection,
    LineFields, LineResult, Masking, PollResult, RejectedAnswer, Result,
};

const RESULTS: &str = "GET_BATCH_RESULTS";
const UPLOAD: &str = "UPLOAD_BATCH_FILE";

/// The `merchant_reference` of every line of a batch, in line order.
type LineReferences = Arc<Vec<String>>;

/// One APS merchant account as a gateway protocol.
#[derive(Debug, Clone)]
pub struct ApsBatchApi {
    client: ApsClient,
    /// The lines' `merchant_reference`s of every batch this process encoded or uploaded, by
    /// number: per-line answers are checked against them (a row about another order is not
    /// this batch's). Dropped at `cleanup`. A batch finished by a process that never built it
    /// (`paybatch collect`, a resumed triggered batch) is checked by line numbers and count.
    lines: Arc<Mutex<HashMap<SequenceNumber, LineReferences>>>,
}

impl ApsBatchApi {
    /// The protocol for one account.
    ///
    /// # Errors
    /// [`Error::Gateway`] for a configuration the HTTP client refuses.
    pub fn new(cfg: ApsAccountConfig) -> Result<Self> {
        let account = cfg.account.clone();
        let client = ApsClient::new(cfg).map_err(|e| Error::Gateway {
            account,
            transient: false,
            source: Box::new(e),
        })?;
        Ok(Self {
            client,
            lines: Arc::default(),
        })
    }

    /// The client (for tools that talk to the service directly).
    pub fn client(&self) -> &ApsClient {
        &self.client
    }

    /// Checks one input record's fields (without `account` and `ref`) the way
    /// [`GatewayProtocol::encode_request`] will, so bad lines are reported before anything is
    /// reserved.
    ///
    /// # Errors
    /// The APS input error naming the field.
    pub fn check_fields(&self, fields: &[(String, String)]) -> std::result::Result<(), ApsError> {
        ApsTransaction::from_fields(
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.client.config().currency,
        )
        .map(|_| ())
    }

    /// The files batch `sequence` would put at the service, for a dry run: the CSV batch file
    /// named `BATCH_REFERENCE.csv` (masked like any other lines; it never holds card data,
    /// which validation refuses).
    ///
    /// # Errors
    /// A line that cannot be written; a bad `reference_prefix`.
    pub fn batch_files(
        &self,
        sequence: SequenceNumber,
        lines: &[BatchLine<'_>],
        masking: Masking,
    ) -> Result<Vec<BatchFile>> {
        let path = format!("{}.csv", self.reference(sequence)?.as_str());
        let bytes = masking.apply(lines, |lines| self.encode_request(sequence, lines))?;
        Ok(vec![BatchFile { path, bytes }])
    }

    /// The `batch_reference` of batch `sequence`.
    ///
    /// # Errors
    /// [`Error::Gateway`] for a bad `reference_prefix`.
    pub fn reference(&self, sequence: SequenceNumber) -> Result<BatchReference> {
        let cfg = self.client.config();
        BatchReference::for_batch(&cfg.reference_prefix, &cfg.account, sequence.get())
            .map_err(|e| self.error(sequence, e))
    }

    fn transaction(&self, fields: LineFields<'_>) -> std::result::Result<ApsTransaction, ApsError> {
        let decoded: Vec<_> = fields.iter().collect();
        ApsTransaction::from_fields(
            decoded.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
            self.client.config().currency,
        )
    }

    /// An APS error about batch `sequence` as a gateway step's error: transient when the
    /// client calls it so (a timeout, a 5xx after its retries), so the engine may try again.
    fn error(&self, sequence: SequenceNumber, e: ApsError) -> Error {
        Error::Gateway {
            account: self.client.config().account.clone(),
            transient: e.is_transient(),
            source: format!("batch {sequence}: {e}").into(),
        }
    }

    fn offset(&self) -> u64 {
        self.client.config().line_number_offset
    }

    fn remember(&self, sequence: SequenceNumber, references: Vec<String>) {
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lines.insert(sequence, Arc::new(references));
    }

    fn remembered(&self, sequence: SequenceNumber) -> Option<LineReferences> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&sequence)
            .cloned()
    }

    fn forget(&self, sequence: SequenceNumber) {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&sequence);
    }

    /// `GET_BATCH_RESULTS` until validation is over (or the validation deadline passes).
    async fn wait_validation(
        &self,
        sequence: SequenceNumber,
        reference: &BatchReference,
        batch_id: Option<&str>,
    ) -> Result<ApsAnswer> {
        let cfg = self.client.config();
        let started = Instant::now();
        let mut pause = cfg.poll_interval;
        loop {
            let answer = self
                .client
                .batch_results(reference, batch_id)
                .await
                .map_err(|e| self.error(sequence, e))?;
            if read(RESULTS, reference.as_str(), &answer).map_err(|e| self.error(sequence, e))?
                != Reading::Validating
            {
                return Ok(answer);
            }
            let waited = started.elapsed();
            if waited >= cfg.validation_timeout {
                return Err(self.error(
                    sequence,
                    ApsError::Deadline {
                        reference: reference.to_string(),
                        phase: "validating",
                    },
                ));
            }
            // Never sleep past the deadline. A shutdown drops this wait (trigger_is_cancel_safe).
            tokio::time::sleep(pause.min(cfg.validation_timeout.saturating_sub(waited))).await;
            pause = (pause * 2).min(cfg.max_poll_interval);
        }
    }

    /// `51146`: the service already holds a batch under this reference. It is this batch only
    /// if the service's line count (which must be given) equals this file's, and every
    /// `merchant_reference` its answer names per line is the one of that line in this file.
    /// Anything else fails the upload — nothing is sent for this batch — with the way out.
    async fn check_existing(
        &self,
        sequence: SequenceNumber,
        reference: &BatchReference,
        batch_id: Option<&str>,
        ours: &[String],
    ) -> Result<Option<String>> {
        let answer = self
            .client
            .batch_results(reference, batch_id)
            .await
            .map_err(|e| self.error(sequence, e))?;
        let rows = any_rows(reference.as_str(), &answer);
        let lines = ours.len() as u64;
        let way_out = "was the ledger restored or recreated? set a new reference_prefix (nothing was sent for this batch)";
        let refuse = |message: String| {
            Err(self.error(
                sequence,
                ApsError::protocol(UPLOAD, reference.as_str(), message),
            ))
        };
        if matches!(
            crate::codes::BatchPhase::of(answer.code),
            crate::codes::BatchPhase::UnknownReference | crate::codes::BatchPhase::Failed
        ) {
            return refuse(format!(
                "the service says the reference already exists, then answers {} {:?} about it: cannot tell whether it holds this batch; {way_out}",
                answer.code,
                kvp_format::mask_digit_runs(&answer.response_message)
            ));
        }
        let count = match answer.form {
            AnswerForm::SignedJson => answer.transactions_count,
            AnswerForm::CsvBody => Some(rows.len() as u64),
        };
        match count {
            None => {
                return refuse(format!(
                    "the service already holds this reference ({}) but gives no transactions_count: cannot tell whether it holds this batch's {lines} lines; {way_out}",
                    answer.code
                ));
            }
            Some(count) if count != lines => {
                return refuse(format!(
                    "the service already holds this reference with {count} lines, this batch has {lines}; {way_out}"
                ));
            }
            Some(_) => {}
        }
        // Rows of any kind (validation reasons or rows, results) name their line's order.
        let joined = join_partial(RESULTS, reference.as_str(), rows, lines, self.offset())
            .and_then(|rows| check_references(RESULTS, reference.as_str(), &rows, ours));
        if let Err(e) = joined {
            return refuse(format!(
                "the service already holds this reference for other transactions: {e}; {way_out}"
            ));
        }
        tracing::info!(account = %self.account(), %sequence, %reference, "APS batch was already uploaded (51146): same line count and references");
        Ok(answer.batch_id().or_else(|| batch_id.map(str::to_owned)))
    }

    /// Per-line rows joined to the batch's lines (every line for processed results, the
    /// flagged ones for validation reasons) and checked against their `merchant_reference`
    /// when this process knows them.
    fn joined(
        &self,
        batch: &BatchRef,
        reference: &BatchReference,
        rows: Vec<crate::results::ResultRow>,
        line_count: u64,
        every_line: bool,
    ) -> Result<Vec<(u64, crate::results::ResultRow)>> {
        let sequence = batch.sequence;
        let offset = self.offset();
        let joined = if every_line {
            join_complete(RESULTS, reference.as_str(), rows, line_count, offset)
        } else {
            join_partial(RESULTS, reference.as_str(), rows, line_count, offset)
        }
        .map_err(|e| self.error(sequence, e))?;
        if let Some(ours) = self.remembered(sequence) {
            check_references(RESULTS, reference.as_str(), &joined, &ours)
                .map_err(|e| self.error(sequence, e))?;
        }
        Ok(joined)
    }
}

/// The `merchant_reference` of every data row of a batch file written with `names`.
fn payload_references(
    payload: &[u8],
    names: &HeaderNames,
) -> std::result::Result<Vec<String>, ApsError> {
    let bad = |message: &str| ApsError::Csv {
        reference: "-".to_owned(),
        line: 1,
        message: message.to_owned(),
        source: None,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(payload);
    let mut records = reader.records();
    let header = records
        .next()
        .ok_or_else(|| bad("batch file has no header"))?
        .map_err(|_| bad("batch file header unreadable"))?;
    let column = header
        .iter()
        .position(|c| c == names.cell("merchant_reference"))
        .ok_or_else(|| bad("batch file has no merchant_reference column"))?;
    records
        .map(|r| {
            r.map_err(|_| bad("batch file row unreadable"))
                .map(|r| r.get(column).unwrap_or("").to_owned())
        })
        .collect()
}

#[async_trait]
impl GatewayProtocol for ApsBatchApi {
    fn account(&self) -> &str {
        &self.client.config().account
    }

    fn external_reference(&self, sequence: SequenceNumber) -> Result<Option<String>> {
        Ok(Some(self.reference(sequence)?.as_str().to_owned()))
    }

    fn encode_request(&self, sequence: SequenceNumber, lines: &[BatchLine<'_>]) -> Result<Bytes> {
        let mut txs = Vec::with_capacity(lines.len());
        for line in lines {
            let tx = self.transaction(line.fields).map_err(|e| Error::Protocol {
                account: self.client.config().account.clone(),
                sequence,
                message: format!("line {}: {e}", line.index),
            })?;
            txs.push(tx);
        }
        let file = write_batch_file_with(&txs, &self.client.config().header_names)
            .map_err(|e| self.error(sequence, e))?;
        let limit = self.client.config().max_file_bytes;
        if file.len() > limit {
            return Err(self.error(
                sequence,
                ApsError::input(
                    "batch",
                    format!(
                        "file of {} bytes is over the {limit} byte limit; lower max_batch_lines",
                        file.len()
                    ),
                ),
            ));
        }
        self.remember(
            sequence,
            txs.into_iter().map(|t| t.merchant_reference).collect(),
        );
        Ok(Bytes::from(file))
    }

    async fn upload(&self, sequence: SequenceNumber, payload: Bytes) -> Result<Option<String>> {
        let reference = self.reference(sequence)?;
        let ours = payload_references(&payload, &self.client.config().header_names)
            .map_err(|e| self.error(sequence, e))?;
        self.remember(sequence, ours.clone());
        match self
            .client
            .upload(&reference, &payload)
            .await
            .map_err(|e| self.error(sequence, e))?
        {
            UploadOutcome::Uploaded { batch_id } => {
                tracing::info!(account = %self.account(), %sequence, %reference, batch_id = batch_id.as_deref().unwrap_or(""), "APS batch uploaded");
                Ok(batch_id)
            }
            UploadOutcome::AlreadyUploaded { batch_id } => {
                self.check_existing(sequence, &reference, batch_id.as_deref(), &ours)
                    .await
            }
        }
    }

    async fn trigger(&self, batch: &BatchRef, _line_count: u64) -> Result<()> {
        let sequence = batch.sequence;
        let batch_id = batch.gateway_batch_id.as_deref();
        let reference = self.reference(sequence)?;
        let answer = self.wait_validation(sequence, &reference, batch_id).await?;
        let rejected = |answer: &ApsAnswer, operation: &'static str| {
            self.error(
                sequence,
                ApsError::Rejected {
                    operation,
                    reference: reference.to_string(),
                    response_code: answer.code.to_string(),
                    response_message: answer.response_message.clone(),
                },
            )
        };
        match read(RESULTS, reference.as_str(), &answer).map_err(|e| self.error(sequence, e))? {
            // 76000, or 70000 without per-line transaction rows: validated, never processed
            // by this answer's account. Start it.
            Reading::Validated { .. } => {
                let started = self
                    .client
                    .process(&reference, batch_id)
                    .await
                    .map_err(|e| self.error(sequence, e))?;
                // 72xxx: processing accepted (72147 in 3a); 73xxx and anything else: refused.
                if started.code.status == 72 {
                    Ok(())
                } else {
                    Err(rejected(&started, "PROCESS_BATCH"))
                }
            }
            // Nothing to start: poll reports the failed validation as the batch's verdict.
            Reading::ValidationFailed => Ok(()),
            // PROCESS_BATCH reached the service before a crash, between sending it and the
            // ledger's mark: processing or per-line transaction results prove it.
            Reading::Processing | Reading::Processed(_) => Ok(()),
            Reading::Validating | Reading::UnknownReference | Reading::Failed => {
                Err(rejected(&answer, "GET_BATCH_RESULTS"))
            }
        }
    }

    /// Yes: `trigger` waits for validation, which can take long, and dropping it at any await
    /// is harmless. It is a `GET_BATCH_RESULTS` (a read), a sleep, or the `PROCESS_BATCH` call;
    /// if that one reached APS before being dropped, the next run's `trigger` finds the batch
    /// processing (or processed) and carries on without sending it again.
    fn trigger_is_cancel_safe(&self) -> bool {
        true
    }

    /// Called for a batch the ledger records as triggered: `trigger` returned, so
    /// `PROCESS_BATCH` was accepted (or validation had failed). A verdict comes only from
    /// per-line transaction rows (processed) or a failed validation; an answer that cannot be
    /// one is pending (still working, or `70000` without rows) or an error.
    async fn poll(&self, batch: &BatchRef) -> Result<PollResult> {
        let sequence = batch.sequence;
        let batch_id = batch.gateway_batch_id.as_deref();
        let reference = self.reference(sequence)?;
        let answer = match self.client.batch_results(&reference, batch_id).await {
            Ok(answer) => answer,
            Err(e) if e.is_transient() => {
                // Already retried inside the client: look again at the next poll.
                tracing::warn!(account = %self.account(), %sequence, error = %e, "APS poll failed; will poll again");
                return Ok(PollResult::Pending);
            }
            Err(e) => return Err(self.error(sequence, e)),
        };
        match read(RESULTS, reference.as_str(), &answer).map_err(|e| self.error(sequence, e))? {
            Reading::Validating | Reading::Processing => Ok(PollResult::Pending),
            Reading::Validated { explicit: true } => {
                // 76000: the ledger says triggered, the service says not started. Ask again
                // (the service starts a batch once) and keep polling.
                let started = self
                    .client
                    .process(&reference, batch_id)
                    .await
                    .map_err(|e| self.error(sequence, e))?;
                tracing::warn!(account = %self.account(), %sequence, %reference, code = %started.code, "APS batch triggered but still waiting for PROCESS_BATCH; asked again");
                Ok(PollResult::Pending)
            }
            Reading::Validated { explicit: false } => {
                // 70000 without per-line transaction rows after PROCESS_BATCH was accepted:
                // not results. Wait; the batch goes Stuck (unknown) at the deadline.
                tracing::debug!(account = %self.account(), %sequence, %reference, "APS answered 70000 without per-line transaction rows; still waiting for results");
                Ok(PollResult::Pending)
            }
            Reading::Processed(rows) => Ok(PollResult::Done(GatewayVerdict {
                success: true,
                status: answer.code.to_string(),
                error: None,
                processed_count: answer.transactions_count.or(Some(rows.len() as u64)),
                fields: Vec::new(),
            })),
            Reading::ValidationFailed => Ok(PollResult::Done(GatewayVerdict {
                success: false,
                status: answer.code.to_string(),
                error: Some(validation_summary(reference.as_str(), &answer)),
                processed_count: Some(0),
                fields: Vec::new(),
            })),
            Reading::UnknownReference | Reading::Failed => Err(self.error(
                sequence,
                ApsError::Rejected {
                    operation: "GET_BATCH_RESULTS",
                    reference: reference.to_string(),
                    response_code: answer.code.to_string(),
                    response_message: answer.response_message,
                },
            )),
        }
    }

    async fn fetch_results(&self, batch: &BatchRef, line_count: u64) -> Result<Vec<LineResult>> {
        let sequence = batch.sequence;
        let reference = self.reference(sequence)?;
        let answer = self
            .client
            .batch_results(&reference, batch.gateway_batch_id.as_deref())
            .await
            .map_err(|e| self.error(sequence, e))?;
        let rows = match read(RESULTS, reference.as_str(), &answer)
            .map_err(|e| self.error(sequence, e))?
        {
            Reading::Processed(rows) => rows,
            _ => {
                return Err(self.error(
                    sequence,
                    ApsError::protocol(
                        RESULTS,
                        reference.as_str(),
                        format!(
                            "expected processed per-line results, got {} without them",
                            answer.code
                        ),
                    ),
                ));
            }
        };
        let joined = self.joined(batch, &reference, rows, line_count, true)?;
        Ok(joined
            .into_iter()
            .map(|(index, row)| LineResult {
                index,
                fields: line_fields(row).into(),
            })
            .collect())
    }

    /// What the service says of the batch (one `GET_BATCH_RESULTS`, by its reference):
    /// validating, validated and not started, failed validation (nothing processed),
    /// processing, or processed (answered). An unknown reference (never uploaded, or expired)
    /// and a `70000` without per-line transaction rows (after `PROCESS_BATCH` it may mean
    /// processed) tell nothing of a trigger or an answer; any other answer is an error.
    async fn inspect(&self, sequence: SequenceNumber) -> Result<Inspection> {
        let reference = self.reference(sequence)?;
        let answer = self
            .client
            .batch_results(&reference, None)
            .await
            .map_err(|e| self.error(sequence, e))?;
        let reading = read(RESULTS, reference.as_str(), &answer);
        let (uploaded, triggered, answered, said) = match &reading {
            // Never uploaded, or expired (after processing, maybe): nothing to tell by.
            Ok(Reading::UnknownReference) => (Some(false), None, None, "not known to the service"),
            Ok(Reading::Validating) => (Some(true), Some(false), Some(false), "validating"),
            Ok(Reading::Validated { explicit: true }) => (
                Some(true),
                Some(false),
                Some(false),
                "validated, not started",
            ),
            // After PROCESS_BATCH this may mean processed: unknown.
            Ok(Reading::Validated { explicit: false }) => (
                Some(true),
                None,
                None,
                "validated, or processed without per-line results",
            ),
            // Proof that nothing was processed (when consistent: see `read`).
            Ok(Reading::ValidationFailed) => (
                Some(true),
                Some(false),
                Some(false),
                "failed validation, nothing processed",
            ),
            Ok(Reading::Processing) => (Some(true), Some(true), Some(false), "processing"),
            Ok(Reading::Processed(_)) => (Some(true), Some(true), Some(true), "processed"),
            // An answer that is none of these proves nothing either way: an error, so that
            // nothing is decided on it.
            Ok(Reading::Failed) | Err(_) => {
                return Err(self.error(
                    sequence,
                    ApsError::Rejected {
                        operation: "GET_BATCH_RESULTS",
                        reference: reference.to_string(),
                        response_code: answer.code.to_string(),
                        response_message: answer.response_message.clone(),
                    },
                ));
            }
        };
        Ok(Inspection {
            uploaded,
            triggered,
            answered,
            found: vec![format!("APS batch {reference}: {said} ({})", answer.code)],
        })
    }

    async fn fetch_rejected_results(
        &self,
        batch: &BatchRef,
        line_count: u64,
    ) -> Result<RejectedAnswer> {
        let sequence = batch.sequence;
        let reference = self.reference(sequence)?;
        let answer = self
            .client
            .batch_results(&reference, batch.gateway_batch_id.as_deref())
            .await
            .map_err(|e| self.error(sequence, e))?;
        if read(RESULTS, reference.as_str(), &answer).ok() != Some(Reading::ValidationFailed) {
            // The verdict was a failed validation, and now the service says something else:
            // nothing can be concluded from either (never "no answer", which with a count of
            // 0 would release the lines).
            tracing::warn!(account = %self.account(), %sequence, %reference, code = %answer.code, "rejected APS batch: asked again, the service no longer reports a failed validation");
            return Ok(RejectedAnswer {
                answer: AnswerFile::Unreadable,
                lines: Vec::new(),
            });
        }
        let Some(text) = answer.batch_results.as_deref() else {
            return Ok(RejectedAnswer::absent());
        };
        let rows = match parse_batch_results(reference.as_str(), text) {
            Ok(rows) => rows,
            Err(e) => {
                // Nothing can be concluded from reasons that cannot be read.
                tracing::warn!(account = %self.account(), %sequence, %reference, error = %e, "unreadable validation results of a rejected APS batch");
                return Ok(RejectedAnswer {
                    answer: AnswerFile::Unreadable,
                    lines: Vec::new(),
                });
            }
        };
        // Reasons that do not fit the file (numbered differently than configured, about
        // other orders) fail the collection: never shifted onto neighbouring lines.
        let joined = self.joined(batch, &reference, rows, line_count, false)?;
        // Validation reasons carry no `xResult`: they are remarks, not outcomes — a batch
        // that failed validation was never processed.
        Ok(RejectedAnswer {
            answer: AnswerFile::Read,
            lines: rejected_lines(joined),
        })
    }

    async fn cleanup(&self, batch: &BatchRef) -> Result<()> {
        // The service keeps its batches; there is nothing of ours to delete.
        self.forget(batch.sequence);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_back_from_the_payload() {
        let file = b"command,Order,amount\r\nCAPTURE,o1,1\r\nREFUND,\"o,2\",2\r\n";
        let names = HeaderNames::new([("merchant_reference", "Order")]).unwrap();
        assert_eq!(payload_references(file, &names).unwrap(), ["o1", "o,2"]);
        assert!(payload_references(file, &HeaderNames::default()).is_err());
        assert!(payload_references(b"", &names).is_err());
        assert_eq!(
            payload_references(b"merchant_reference\r\n", &HeaderNames::default()).unwrap(),
            Vec::<String>::new()
        );
    }
}
