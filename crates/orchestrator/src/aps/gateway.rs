//! [`ApsBatchApi`]: the orchestrator's [`GatewayProtocol`] over the APS batch service.
//!
//! | trait step | APS |
//! |---|---|
//! | `encode_request` | the CSV batch file (deterministic bytes) |
//! | `upload` | `UPLOAD_BATCH_FILE`; 51146 = already uploaded (line count checked) |
//! | `trigger` | `GET_BATCH_RESULTS` until validation is over, then `PROCESS_BATCH` if it passed |
//! | `poll` | `GET_BATCH_RESULTS` once: 70140 pending, 70000 done, 77xxx failed validation |
//! | `fetch_results` | `batch_results` joined on `Line_Number` (index = line − 1) |
//! | `fetch_rejected_results` | after a failed validation: each flagged line's own `response_code`/`response_message` |
//! | `cleanup` | nothing to delete |

use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use kvp_format::SequenceNumber;

use super::batch_file::{ApsCommand, ApsTransaction, is_card_data, write_batch_file};
use super::client::{ApsAnswer, ApsClient, UploadOutcome};
use super::codes::{BatchPhase, LineOutcome, ResponseCode};
use super::config::ApsAccountConfig;
use super::currency::{Currency, MinorUnits};
use super::error::Error as ApsError;
use super::reference::BatchReference;
use super::results::{ResultRow, join_complete, parse_batch_results};
use crate::error::{Error, Result};
use crate::protocol::{
    BatchFile, BatchVerdict, GatewayProtocol, LineResult, Masking, PollResult, RequestLine,
};

/// One APS merchant account as a gateway protocol.
#[derive(Debug, Clone)]
pub struct ApsBatchApi {
    client: ApsClient,
}

impl ApsBatchApi {
    /// The protocol for one account.
    ///
    /// # Errors
    /// [`Error::Protocol`] (sequence 0) for a configuration the HTTP client refuses.
    pub fn new(cfg: ApsAccountConfig) -> Result<Self> {
        let account = cfg.account.clone();
        let client = ApsClient::new(cfg).map_err(|e| Error::Protocol {
            account,
            sequence: 0,
            message: e.to_string(),
        })?;
        Ok(Self { client })
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
        self.transaction(fields).map(|_| ())
    }

    /// The `batch_reference` of batch `sequence`.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a bad `reference_prefix`.
    pub fn reference(&self, sequence: SequenceNumber) -> Result<BatchReference> {
        let cfg = self.client.config();
        BatchReference::for_batch(&cfg.reference_prefix, &cfg.account, sequence.get())
            .map_err(|e| self.error(sequence, e))
    }

    fn transaction(
        &self,
        fields: &[(String, String)],
    ) -> std::result::Result<ApsTransaction, ApsError> {
        ApsTransaction::from_fields(
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.client.config().currency,
        )
    }

    fn error(&self, sequence: SequenceNumber, e: ApsError) -> Error {
        Error::Protocol {
            account: self.client.config().account.clone(),
            sequence: sequence.get(),
            message: e.to_string(),
        }
    }

    /// `GET_BATCH_RESULTS` until validation is over (or the validation deadline passes).
    async fn wait_validation(
        &self,
        sequence: SequenceNumber,
        reference: &BatchReference,
    ) -> Result<ApsAnswer> {
        let cfg = self.client.config();
        let started = Instant::now();
        let mut pause = cfg.poll_interval;
        loop {
            let answer = self
                .client
                .batch_results(reference)
                .await
                .map_err(|e| self.error(sequence, e))?;
            if BatchPhase::of(answer.code) != BatchPhase::Validating {
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
}

/// "line 2: 77004 Invalid command; line 3: ..." (at most 10 lines named).
fn validation_summary(reference: &str, answer: &ApsAnswer) -> String {
    let mut text = format!(
        "validation failed ({} {})",
        answer.code, answer.response_message
    );
    if let Some(rows) = answer
        .batch_results
        .as_deref()
        .and_then(|t| parse_batch_results(reference, t).ok())
    {
        let named: Vec<String> = rows
            .iter()
            .take(10)
            .map(|r| {
                format!(
                    "line {}: {} {}",
                    r.line_number,
                    r.get("response_code").unwrap_or(""),
                    r.get("response_message").unwrap_or("")
                )
            })
            .collect();
        if !named.is_empty() {
            text.push_str(": ");
            text.push_str(&named.join("; "));
        }
        if rows.len() > 10 {
            text.push_str(&format!(" (+{} more)", rows.len() - 10));
        }
    }
    text
}

/// The lines a failed validation flagged (77136 `batch_results`), each with its own reason as
/// `xStatus` (the 5-digit `response_code`) and `xError` (its `response_message`) — the merge
/// shows them as `xLineStatus`/`xLineError` next to the batch verdict — followed by the row's
/// columns. Rows outside the batch and repeats of a line are left out.
fn rejected_lines(rows: Vec<ResultRow>, line_count: u64) -> Vec<LineResult> {
    let mut seen = std::collections::HashSet::new();
    rows.into_iter()
        .filter(|r| (1..=line_count).contains(&r.line_number) && seen.insert(r.line_number))
        .map(|row| {
            let mut fields = vec![
                (
                    "xStatus".to_owned(),
                    row.get("response_code").unwrap_or("").to_owned(),
                ),
                (
                    "xError".to_owned(),
                    row.get("response_message").unwrap_or("").to_owned(),
                ),
            ];
            let index = row.line_number - 1;
            fields.extend(safe_columns(row.fields));
            LineResult { index, fields }
        })
        .collect()
}

/// The merged-output fields of one result row: the APS columns as sent, plus `xResult` /
/// `xStatus` / `xError` so the merge classifies it like any other account, and for an
/// approved line `xAuthAmount` in major units (APS answers in minor units) so the account's
/// approved amount is summed like a Sola account's.
fn line_fields(row: ResultRow) -> Vec<(String, String)> {
    let status_text = row.get("status").map(str::to_owned).or_else(|| {
        row.get("response_code")
            .and_then(|c| c.get(..2))
            .map(str::to_owned)
    });
    let status: Option<u8> = status_text.as_deref().and_then(|s| s.trim().parse().ok());
    let command = row.get("command").and_then(|c| ApsCommand::parse(c).ok());
    let outcome = match (command, status) {
        (Some(command), Some(status)) => LineOutcome::of(command, status),
        // Each success/failure status belongs to exactly one command.
        (None, Some(14 | 4 | 6 | 8)) => LineOutcome::Approved,
        (None, Some(13 | 5 | 7 | 9)) => LineOutcome::Declined,
        _ => LineOutcome::Error,
    };
    let (letter, word) = match outcome {
        LineOutcome::Approved => ("A", "Approved"),
        LineOutcome::Declined => ("D", "Declined"),
        LineOutcome::Error => ("E", "Error"),
    };
    let message = row.get("response_message").unwrap_or("").to_owned();
    let mut fields = vec![
        ("xResult".to_owned(), letter.to_owned()),
        ("xStatus".to_owned(), word.to_owned()),
    ];
    if outcome != LineOutcome::Approved {
        fields.push(("xError".to_owned(), message));
    }
    if let Some(fort_id) = row.get("fort_id").filter(|f| !f.is_empty()) {
        fields.push(("xRefNum".to_owned(), fort_id.to_owned()));
    }
    if outcome == LineOutcome::Approved
        && let Some(amount) = major_amount(&row)
    {
        fields.push(("xAuthAmount".to_owned(), amount));
    }
    fields.extend(safe_columns(row.fields));
    fields
}

/// A result row's columns without card data (`card_number`, `card_security_code`,
/// `expiry_date`, `card_holder_name`, and whatever `kvp_format::is_sensitive` flags): the
/// service should not return them, and if it does they must not reach the ledger or output.
fn safe_columns(fields: Vec<(String, String)>) -> impl Iterator<Item = (String, String)> {
    fields.into_iter().filter(|(k, _)| !is_card_data(k))
}

/// `amount` (minor units) of a result row in major units of its `currency`, if both are there
/// and make sense.
fn major_amount(row: &ResultRow) -> Option<String> {
    let minor: u64 = row.get("amount")?.trim().parse().ok()?;
    let currency = Currency::new(row.get("currency")?.trim()).ok()?;
    Some(currency.to_major(MinorUnits(minor)))
}

#[async_trait]
impl GatewayProtocol for ApsBatchApi {
    fn account(&self) -> &str {
        &self.client.config().account
    }

    fn external_reference(&self, sequence: SequenceNumber) -> Result<Option<String>> {
        Ok(Some(self.reference(sequence)?.as_str().to_owned()))
    }

    fn encode_request(&self, sequence: SequenceNumber, lines: &[RequestLine<'_>]) -> Result<Bytes> {
        let mut txs = Vec::with_capacity(lines.len());
        for line in lines {
            let tx = self.transaction(line.fields).map_err(|e| Error::Protocol {
                account: self.client.config().account.clone(),
                sequence: sequence.get(),
                message: format!("line {}: {e}", line.index),
            })?;
            txs.push(tx);
        }
        let file = write_batch_file(&txs).map_err(|e| self.error(sequence, e))?;
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
        Ok(Bytes::from(file))
    }

    /// The CSV batch file, named `BATCH_REFERENCE.csv` (masked like any other lines; it never
    /// holds card data, which validation refuses).
    fn batch_files(
        &self,
        sequence: SequenceNumber,
        lines: &[RequestLine<'_>],
        masking: Masking,
    ) -> Result<Vec<BatchFile>> {
        let path = format!("{}.csv", self.reference(sequence)?.as_str());
        let bytes = masking.apply(lines, |lines| self.encode_request(sequence, lines))?;
        Ok(vec![BatchFile { path, bytes }])
    }

    async fn upload(&self, sequence: SequenceNumber, payload: Bytes) -> Result<()> {
        let reference = self.reference(sequence)?;
        match self
            .client
            .upload(&reference, &payload)
            .await
            .map_err(|e| self.error(sequence, e))?
        {
            UploadOutcome::Uploaded { batch_id } => {
                tracing::info!(account = %self.account(), %sequence, %reference, batch_id = batch_id.as_deref().unwrap_or(""), "APS batch uploaded");
                Ok(())
            }
            UploadOutcome::AlreadyUploaded => {
                // An earlier attempt got through. Make sure it is this batch: same line count.
                let lines = payload
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    .saturating_sub(1) as u64;
                let answer = self
                    .client
                    .batch_results(&reference)
                    .await
                    .map_err(|e| self.error(sequence, e))?;
                match answer.transactions_count {
                    Some(count) if count != lines => Err(self.error(
                        sequence,
                        ApsError::protocol(
                            "UPLOAD_BATCH_FILE",
                            reference.as_str(),
                            format!("the service already holds this reference with {count} lines, this batch has {lines}: was the ledger recreated? set a new reference_prefix"),
                        ),
                    )),
                    _ => {
                        tracing::info!(account = %self.account(), %sequence, %reference, "APS batch was already uploaded (146)");
                        Ok(())
                    }
                }
            }
        }
    }

    async fn trigger(&self, sequence: SequenceNumber, _line_count: u64) -> Result<()> {
        let reference = self.reference(sequence)?;
        let answer = self.wait_validation(sequence, &reference).await?;
        match BatchPhase::of(answer.code) {
            BatchPhase::Validated => {
                let started = self
                    .client
                    .process(&reference)
                    .await
                    .map_err(|e| self.error(sequence, e))?;
                if started.code == ResponseCode::PROCESS_ACCEPTED {
                    Ok(())
                } else {
                    Err(self.error(
                        sequence,
                        ApsError::Rejected {
                            operation: "PROCESS_BATCH",
                            reference: reference.to_string(),
                            response_code: started.code.to_string(),
                            response_message: started.response_message,
                        },
                    ))
                }
            }
            // Nothing to start: poll reports the failed validation as the batch's verdict.
            BatchPhase::ValidationFailed => Ok(()),
            // Started before a crash, between PROCESS_BATCH and the ledger's mark.
            BatchPhase::Processing | BatchPhase::Processed => Ok(()),
            _ => Err(self.error(
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

    /// Yes: `trigger` waits for validation, which can take long, and dropping it at any await
    /// is harmless. It is a `GET_BATCH_RESULTS` (a read), a sleep, or the `PROCESS_BATCH` call;
    /// if that one reached APS before being dropped, the next run's `trigger` finds the batch
    /// processing (or processed) and carries on without sending it again.
    fn trigger_is_cancel_safe(&self) -> bool {
        true
    }

    async fn poll(&self, sequence: SequenceNumber) -> Result<PollResult> {
        let reference = self.reference(sequence)?;
        let answer = match self.client.batch_results(&reference).await {
            Ok(answer) => answer,
            Err(e) if e.is_transient() => {
                // Already retried inside the client: look again at the next poll.
                tracing::warn!(account = %self.account(), %sequence, error = %e, "APS poll failed; will poll again");
                return Ok(PollResult::Pending);
            }
            Err(e) => return Err(self.error(sequence, e)),
        };
        match BatchPhase::of(answer.code) {
            BatchPhase::Validating | BatchPhase::Processing => Ok(PollResult::Pending),
            BatchPhase::Validated => {
                // The ledger says triggered, the service says not started: PROCESS_BATCH is
                // idempotent, so ask again and keep polling.
                self.client
                    .process(&reference)
                    .await
                    .map_err(|e| self.error(sequence, e))?;
                Ok(PollResult::Pending)
            }
            BatchPhase::Processed => Ok(PollResult::Done(BatchVerdict {
                success: true,
                status: answer.code.to_string(),
                error: None,
                processed_count: answer.transactions_count,
                fields: Vec::new(),
            })),
            BatchPhase::ValidationFailed => Ok(PollResult::Done(BatchVerdict {
                success: false,
                status: answer.code.to_string(),
                error: Some(validation_summary(reference.as_str(), &answer)),
                processed_count: Some(0),
                fields: Vec::new(),
            })),
            BatchPhase::UnknownReference | BatchPhase::Failed => Err(self.error(
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

    async fn fetch_results(
        &self,
        sequence: SequenceNumber,
        line_count: u64,
    ) -> Result<Vec<LineResult>> {
        let reference = self.reference(sequence)?;
        let answer = self
            .client
            .batch_results(&reference)
            .await
            .map_err(|e| self.error(sequence, e))?;
        if BatchPhase::of(answer.code) != BatchPhase::Processed {
            return Err(self.error(
                sequence,
                ApsError::protocol(
                    "GET_BATCH_RESULTS",
                    reference.as_str(),
                    format!("expected processed results, got {}", answer.code),
                ),
            ));
        }
        let text = answer.batch_results.as_deref().unwrap_or("Line_Number\n");
        let rows =
            parse_batch_results(reference.as_str(), text).map_err(|e| self.error(sequence, e))?;
        let rows = join_complete("GET_BATCH_RESULTS", reference.as_str(), rows, line_count)
            .map_err(|e| self.error(sequence, e))?;
        Ok(rows
            .into_iter()
            .map(|row| LineResult {
                index: row.line_number - 1,
                fields: line_fields(row),
            })
            .collect())
    }

    async fn fetch_rejected_results(
        &self,
        sequence: SequenceNumber,
        line_count: u64,
    ) -> Result<Vec<LineResult>> {
        let reference = self.reference(sequence)?;
        let answer = self
            .client
            .batch_results(&reference)
            .await
            .map_err(|e| self.error(sequence, e))?;
        if BatchPhase::of(answer.code) != BatchPhase::ValidationFailed {
            tracing::warn!(account = %self.account(), %sequence, %reference, code = %answer.code, "rejected APS batch: no validation results to report per line");
            return Ok(Vec::new());
        }
        let Some(text) = answer.batch_results.as_deref() else {
            return Ok(Vec::new());
        };
        match parse_batch_results(reference.as_str(), text) {
            Ok(rows) => Ok(rejected_lines(rows, line_count)),
            Err(e) => {
                // The verdict already decides the outcome; per-line reasons are extra.
                tracing::warn!(account = %self.account(), %sequence, %reference, error = %e, "unreadable validation results of a rejected APS batch");
                Ok(Vec::new())
            }
        }
    }

    async fn cleanup(&self, _sequence: SequenceNumber) -> Result<()> {
        // The service keeps its batches; there is nothing of ours to delete.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[(&str, &str)]) -> ResultRow {
        ResultRow {
            line_number: 1,
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn line_outcomes() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("command", "PURCHASE"),
                    ("status", "14"),
                    ("response_code", "14000"),
                ],
                "A",
            ),
            (
                &[
                    ("command", "PURCHASE"),
                    ("status", "13"),
                    ("response_code", "13020"),
                ],
                "D",
            ),
            (&[("command", "PURCHASE"), ("status", "04")], "E"),
            (&[("command", "CAPTURE"), ("status", "04")], "A"),
            (&[("response_code", "06000")], "A"),
            (&[("response_code", "09020")], "D"),
            (&[("response_code", "00008")], "E"),
            (&[("status", "15")], "E"),
            (&[], "E"),
        ];
        for (fields, letter) in cases {
            let out = line_fields(row(fields));
            assert_eq!(
                out[0],
                ("xResult".to_owned(), (*letter).to_owned()),
                "{fields:?}"
            );
        }
        let out = line_fields(row(&[
            ("status", "14"),
            ("fort_id", "169"),
            ("response_message", "Success"),
        ]));
        assert!(out.contains(&("xRefNum".to_owned(), "169".to_owned())));
        assert!(!out.iter().any(|(k, _)| k == "xError"));
    }

    #[test]
    fn card_data_in_result_rows_is_dropped() {
        let card = [
            ("card_number", "4111111111111111"),
            ("CARD_SECURITY_CODE", "123"),
            ("expiry_date", "2512"),
            ("card_holder_name", "J Doe"),
            ("xCardNum", "5111111111111118"),
            ("xCVV", "999"),
        ];
        let mut with_card = vec![("status", "14"), ("merchant_reference", "o1")];
        with_card.extend(card);
        let approved = line_fields(row(&with_card));
        let mut flagged = vec![("response_code", "77006"), ("response_message", "bad")];
        flagged.extend(card);
        let rejected = rejected_lines(vec![row(&flagged)], 1);
        for fields in [approved, rejected[0].fields.clone()] {
            for (key, value) in card {
                assert!(
                    !fields
                        .iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case(key) || v == value),
                    "{key} kept: {fields:?}"
                );
            }
        }
        assert!(line_fields(row(&with_card)).contains(&("merchant_reference".into(), "o1".into())));
    }

    #[test]
    fn approved_lines_carry_the_amount_in_major_units() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (
                &[("status", "14"), ("amount", "1234"), ("currency", "USD")],
                Some("12.34"),
            ),
            (
                &[("status", "14"), ("amount", "1234"), ("currency", "KWD")],
                Some("1.234"),
            ),
            (
                &[("status", "14"), ("amount", "1234"), ("currency", "JPY")],
                Some("1234"),
            ),
            (
                &[("status", "13"), ("amount", "1234"), ("currency", "USD")],
                None,
            ),
            (
                &[("status", "14"), ("amount", "12.34"), ("currency", "USD")],
                None,
            ),
            (&[("status", "14"), ("amount", "1234")], None),
        ];
        for (fields, expected) in cases {
            let out = line_fields(row(fields));
            let got = out
                .iter()
                .find(|(k, _)| k == "xAuthAmount")
                .map(|(_, v)| v.as_str());
            assert_eq!(got, *expected, "{fields:?}");
        }
    }
}
