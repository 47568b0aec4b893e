//! The batch commands behind the HTTP side: upload (validation), `PROCESS_BATCH` and
//! `GET_BATCH_RESULTS` — each batch's phases, the journal of processed lines, and which
//! orders were already purchased.

use std::collections::HashSet;

use serde_json::Value;

use super::answer::{
    Answer, FORT_BASE, Row, UNSETTLED, batch_id_of, rejected, result_row, rows_csv,
};
use super::error::Result;
use super::journal::ApsJournalEntry;
use super::options::{ApsMerchant, ReferenceMode, ResultOrder, ValidationMode};
use super::server::{Batch, Inner, MAX_FILE, Phase, Shared, lock};
use super::validate::{LineProblem, Validation, validate_with};

impl Shared {
    /// The `batch_id` check of a command on `batch`: `None` when it passes, else the refusal
    /// (`status` is the command's failure status, 71 or 73).
    fn batch_id_refused(
        &self,
        batch: &Batch,
        given: Option<&str>,
        status: u8,
        answer: Answer,
    ) -> std::result::Result<Answer, Answer> {
        match given {
            Some(id) if id.trim() != batch.batch_id => {
                Err(answer.code(status, 2, "Invalid parameter format: batch_id"))
            }
            None if lock(&self.knobs).require_batch_id => {
                Err(answer.code(status, 1, "Missing parameter: batch_id"))
            }
            _ => Ok(answer),
        }
    }

    pub(super) fn upload_checked(
        &self,
        merchant: &ApsMerchant,
        reference: &str,
        file: Option<&[u8]>,
        answer: Answer,
    ) -> Answer {
        let Some(file) = file else {
            return answer.code(51, 1, "Missing parameter: file");
        };
        if file.len() > MAX_FILE {
            return answer.code(51, 2, "Invalid parameter format: file larger than 50 MB");
        }
        let mut inner = lock(&self.inner);
        let key = (merchant.merchant_identifier.clone(), reference.to_owned());
        if let Some(existing) = inner.batches.get(&key) {
            return answer
                .code(51, 146, "Batch reference already exists")
                .with("batch_id", Value::String(existing.batch_id.clone()));
        }
        let mut validation = validate_with(file, &self.header_names);
        if lock(&self.knobs).validation == ValidationMode::FailAll {
            validation = Validation::LinesInvalid {
                count: validation.count(),
                problems: vec![LineProblem {
                    line_number: 1,
                    merchant_reference: String::new(),
                    message_code: 6,
                    message: "Technical problem (simulated validation failure)".into(),
                }],
            };
        }
        let batch_id = batch_id_of(&merchant.merchant_identifier, reference);
        inner.batches.insert(
            key,
            Batch {
                batch_id: batch_id.clone(),
                validation,
                phase: Phase::Validating {
                    remaining: self.validation_polls,
                },
            },
        );
        answer
            .code(50, 0, "Success")
            .with("batch_id", Value::String(batch_id))
    }

    pub(super) fn results(
        &self,
        merchant: &ApsMerchant,
        reference: &str,
        given_batch_id: Option<&str>,
        answer: Answer,
    ) -> Answer {
        let mut inner = lock(&self.inner);
        let (stalled, validation_rows, omit_count) = {
            let knobs = lock(&self.knobs);
            (
                knobs.validation == ValidationMode::Stall,
                knobs.validation_rows,
                knobs.omit_transactions_count,
            )
        };
        let offset = self.reference.line_number_offset();
        let key = (merchant.merchant_identifier.clone(), reference.to_owned());
        let Some(batch) = inner.batches.get_mut(&key) else {
            return answer.code(71, 141, "Batch reference not found");
        };
        let answer = match self.batch_id_refused(batch, given_batch_id, 71, answer) {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        let answer = if omit_count {
            answer
        } else {
            answer.with("transactions_count", Value::from(batch.validation.count()))
        };
        let answer = answer.with("batch_id", Value::String(batch.batch_id.clone()));
        match batch.phase.clone() {
            Phase::Validating { remaining } if remaining > 0 || stalled => {
                batch.phase = Phase::Validating {
                    remaining: remaining.saturating_sub(1),
                };
                answer.code(70, 138, "Batch file is still being validated")
            }
            Phase::Validating { .. } => {
                batch.phase = match batch.validation {
                    Validation::Valid(_) => Phase::Validated,
                    _ => Phase::Rejected,
                };
                drop(inner);
                self.results(merchant, reference, given_batch_id, answer)
            }
            Phase::Validated => self.validated(&batch.validation, validation_rows, answer),
            Phase::Rejected => rejected(&batch.validation, offset, answer),
            Phase::Processing { remaining } if remaining > 0 => {
                batch.phase = Phase::Processing {
                    remaining: remaining - 1,
                };
                answer.code(70, 140, "Batch file is still being processed")
            }
            Phase::Processing { .. } => {
                match self.run(&mut inner, &merchant.merchant_identifier, reference) {
                    Ok(rows) => answer.processed(&rows),
                    Err(e) => {
                        tracing::error!(error = %e, "APS simulator could not journal a batch");
                        answer.code(71, 6, "Technical problem")
                    }
                }
            }
            Phase::Processed { rows } => answer.processed(&rows),
        }
    }

    /// The answer about a validated batch: `76000` (3a) or `70000` (published), with a row per
    /// line when the `validation_rows` knob is on.
    fn validated(&self, validation: &Validation, rows: bool, answer: Answer) -> Answer {
        let (status, text) = match self.reference {
            ReferenceMode::Published => (70, "Success"),
            ReferenceMode::Assumed3a => (76, "Batch file validated successfully"),
        };
        let answer = answer.code(status, 0, text);
        let Validation::Valid(lines) = validation else {
            return answer;
        };
        if !rows || lines.is_empty() {
            return answer;
        }
        let offset = self.reference.line_number_offset();
        let rows: Vec<Row> = lines
            .iter()
            .map(|l| {
                vec![
                    (
                        "Line_Number".into(),
                        (l.line_number - 1 + offset).to_string(),
                    ),
                    ("merchant_reference".into(), l.merchant_reference.clone()),
                    ("response_code".into(), format!("{status:02}000")),
                    ("response_message".into(), "Valid".into()),
                ]
            })
            .collect();
        answer.with("batch_results", Value::String(rows_csv(&rows)))
    }

    pub(super) fn process(
        &self,
        merchant: &ApsMerchant,
        reference: &str,
        given_batch_id: Option<&str>,
        answer: Answer,
    ) -> Answer {
        let mut inner = lock(&self.inner);
        let key = (merchant.merchant_identifier.clone(), reference.to_owned());
        let Some(batch) = inner.batches.get_mut(&key) else {
            return answer.code(73, 141, "Batch reference not found");
        };
        let answer = match self.batch_id_refused(batch, given_batch_id, 73, answer) {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        match batch.phase {
            Phase::Validating { .. } => answer.code(73, 138, "Batch file is still being validated"),
            Phase::Rejected => answer.code(73, 136, "Batch file validation failed"),
            Phase::Validated => {
                batch.phase = Phase::Processing {
                    remaining: self.processing_polls,
                };
                answer.code(72, 147, "Batch processing started")
            }
            // A repeated PROCESS_BATCH (a retry after a lost answer) starts nothing new.
            Phase::Processing { .. } | Phase::Processed { .. } => {
                answer.code(72, 147, "Batch processing started")
            }
        }
    }

    /// Processes every line once, journals them durably, then publishes shuffled rows.
    fn run(&self, inner: &mut Inner, merchant: &str, reference: &str) -> Result<Vec<Row>> {
        let key = (merchant.to_owned(), reference.to_owned());
        let lines = match inner.batches.get(&key).map(|b| &b.validation) {
            Some(Validation::Valid(lines)) => lines.clone(),
            _ => Vec::new(),
        };
        let unsettled_cents = lock(&self.knobs).unsettled_cents;
        let offset = self.reference.line_number_offset();
        let mut entries = Vec::with_capacity(lines.len());
        let mut purchased_now = HashSet::new();
        for line in &lines {
            let (ok, failed) = match line.command.as_str() {
                "PURCHASE" => (14, 13),
                "CAPTURE" => (4, 5),
                "REFUND" => (6, 7),
                _ => (8, 9),
            };
            let order = (merchant.to_owned(), line.merchant_reference.clone());
            let unsettled = UNSETTLED
                .get((line.line_number.saturating_sub(1) % 4) as usize)
                .map_or(15, |(s, _)| *s);
            let code = if unsettled_cents.is_some_and(|c| line.amount.is_some_and(|a| a % 100 == c))
            {
                format!("{unsettled:02}000")
            } else if line.command == "PURCHASE"
                && (inner.purchased.contains(&order) || purchased_now.contains(&order))
            {
                format!("{failed:02}007")
            } else if line.amount.is_some_and(|a| a % 100 == self.decline_cents) {
                format!("{failed:02}020")
            } else {
                format!("{ok:02}000")
            };
            if line.command == "PURCHASE" {
                purchased_now.insert(order);
            }
            let fort_id = FORT_BASE + inner.next_fort_id;
            inner.next_fort_id += 1;
            entries.push(ApsJournalEntry {
                merchant_identifier: merchant.to_owned(),
                batch_reference: reference.to_owned(),
                line_number: line.line_number,
                command: line.command.clone(),
                merchant_reference: line.merchant_reference.clone(),
                amount: line.amount,
                currency: line.currency.clone(),
                response_code: code,
                fort_id: fort_id.to_string(),
            });
        }
        let mut rows: Vec<Row> = entries.iter().map(|e| result_row(e, offset)).collect();
        inner.journal.append(entries)?;
        inner.purchased.extend(purchased_now);
        if lock(&self.knobs).result_order == ResultOrder::Shuffled {
            inner.rng.shuffle(&mut rows);
        }
        if let Some(batch) = inner.batches.get_mut(&key) {
            batch.phase = Phase::Processed { rows: rows.clone() };
        }
        Ok(rows)
    }
}
