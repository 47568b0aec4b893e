//! The merge: one output record per input transaction, in input order, with the outcome the
//! ledger proves for its line (PROTOCOL.md decisions 4 and 11).

use std::collections::{BTreeMap, HashMap};

use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, BatchState, Ledger, StoredResult};

use crate::driver::OutputSpec;
use crate::error::{Error, Result};
use crate::job::{Job, ResultSpill};
use crate::outcome::{LineOutcome, OutputHead, output_record};
use crate::output::OutputWriter;
use crate::plan::content_digest;
use crate::report::AccountReport;
use crate::report::RunReport;
use crate::settings::Settings;

/// A batch as the ledger holds it now, with its stored per-line results once collected.
pub(crate) struct LedgerBatch {
    /// The batch record; `None` when the ledger has none (read as `Reserved`).
    pub(crate) record: Option<sequence_ledger::BatchRecord>,
    /// The record's state, `Reserved` without a record.
    pub(crate) state: BatchState,
    /// Result fields by line index; empty unless the batch is `Collected` or `Cleaned`.
    pub(crate) results: HashMap<u64, Vec<(String, String)>>,
}

impl LedgerBatch {
    /// Reads batch `sequence` of `account`; fails with the ledger's error.
    pub(crate) fn read(
        ledger: &Ledger,
        account: &AccountId,
        sequence: SequenceNumber,
    ) -> std::result::Result<Self, sequence_ledger::Error> {
        let record = ledger.batch(account, sequence)?;
        let state = record.as_ref().map_or(BatchState::Reserved, |r| r.state);
        let results = if matches!(state, BatchState::Collected | BatchState::Cleaned) {
            ledger
                .results(account, sequence)?
                .into_iter()
                .map(|r| (r.index, r.fields))
                .collect()
        } else {
            HashMap::new()
        };
        Ok(Self {
            record,
            state,
            results,
        })
    }
}

/// The batches of one account the merge has read, a few at a time: positions of an account
/// come in input order, which visits its batches mostly one after the other.
struct BatchCache<'a> {
    ledger: &'a Ledger,
    account: &'a AccountId,
    batches: HashMap<SequenceNumber, LedgerBatch>,
}

impl BatchCache<'_> {
    const CAPACITY: usize = 8;

    fn get(
        &mut self,
        sequence: SequenceNumber,
    ) -> std::result::Result<&LedgerBatch, sequence_ledger::Error> {
        if !self.batches.contains_key(&sequence) {
            if self.batches.len() >= Self::CAPACITY {
                self.batches.clear();
            }
            let batch = LedgerBatch::read(self.ledger, self.account, sequence)?;
            self.batches.insert(sequence, batch);
        }
        self.batches
            .get(&sequence)
            .ok_or(sequence_ledger::Error::NoSuchBatch {
                account: self.account.clone(),
                sequence,
            })
    }
}

/// Writes one output record per input transaction, in input order, from what the ledger
/// holds — not from what the run believes it did: a transaction bound to a batch gets that
/// batch's outcome for its line (`unknown` while the batch may be in flight, whatever stopped
/// the run), one whose ref is bound to other content is `unknown` (its ref may have been
/// processed), and only a never-bound one is `not_processed`, with the account's failure (or
/// `unbound`) as the reason.
pub(crate) fn merge_blocking(
    ledger: &Ledger,
    job: &Job,
    settings: &Settings,
    failures: &BTreeMap<String, String>,
    output: Option<&OutputSpec>,
    unbound: &str,
) -> Result<RunReport> {
    let mut report = RunReport {
        transactions: job.len() as u64,
        ..RunReport::default()
    };
    let mut spill = ResultSpill::new(job.len())?;
    let ref_field = settings.input.ref_field.as_str();
    let account_field = settings.input.account_field.as_str();
    for (idx, positions) in job.positions_by_account().into_iter().enumerate() {
        let Some(name) = job.accounts().get(idx) else {
            continue;
        };
        if positions.is_empty() {
            continue;
        }
        let account = AccountId::new(name.as_str()).map_err(|source| Error::Ledger {
            account: name.clone(),
            source,
        })?;
        let ledger_err = |source| Error::Ledger {
            account: name.clone(),
            source,
        };
        let failure = failures.get(name).map(String::as_str);
        let mut entry = AccountReport::default();
        entry.summary.failure = failure.map(str::to_owned);
        let mut cache = BatchCache {
            ledger,
            account: &account,
            batches: HashMap::new(),
        };
        let mut counted = std::collections::BTreeSet::new();
        for pos in positions {
            let tx = job.transaction(pos as usize)?;
            let binding = ledger
                .binding(&account, &tx.reference)
                .map_err(ledger_err)?;
            let (bound, outcome, fields) = match binding {
                None => {
                    let why = failure.unwrap_or(unbound).to_owned();
                    (
                        None,
                        LineOutcome::NotProcessed,
                        vec![("xError".to_owned(), why)],
                    )
                }
                Some(b) if b.content_digest != content_digest(&tx.fields) => (
                    Some(b),
                    LineOutcome::Unknown,
                    vec![(
                        "xError".to_owned(),
                        format!(
                            "this ref was submitted before with different content ({b}, account {name}); that transaction may have been processed, and this one was not sent — do not send either elsewhere"
                        ),
                    )],
                ),
                Some(b) => {
                    let batch = cache.get(b.sequence).map_err(ledger_err)?;
                    if counted.insert(b.sequence) {
                        entry.count_batch(b.sequence, batch.state);
                    }
                    let (outcome, fields) = line_outcome(name, b.sequence, batch, b.index, failure);
                    (Some(b), outcome, fields)
                }
            };
            let head = OutputHead {
                ref_field,
                account_field,
                reference: &tx.reference,
                account: name,
                sequence: bound.map(|b| b.sequence.get()),
                index: bound.map(|b| b.index),
            };
            let mut record = output_record(head, outcome, &fields);
            // Keep `account` at a fixed place for the merge loop regardless of the field names.
            if let Some(slot) = record.get_mut(1) {
                slot.1.clone_from(name);
            }
            spill.put(pos as usize, &record)?;
        }
        report.accounts.insert(name.clone(), entry);
    }
    let mut writer = match output {
        Some(spec) => Some(OutputWriter::create(
            &spec.path,
            spec.format,
            &[ref_field, account_field],
        )?),
        None => None,
    };
    for pos in 0..job.len() {
        let Some(record) = spill.get(pos)? else {
            continue;
        };
        let account = record.get(1).map(|(_, v)| v.clone()).unwrap_or_default();
        let outcome = record.get(2).map(|(_, v)| v.as_str()).unwrap_or_default();
        let outcome = LineOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == outcome)
            .unwrap_or(LineOutcome::Unknown);
        if let Some(entry) = report.accounts.get_mut(&account) {
            entry.summary.add(outcome, &record);
        }
        if let Some(w) = writer.as_mut() {
            w.write(&record)?;
        }
    }
    if let (Some(w), Some(_)) = (writer, output) {
        report.output = Some(w.finish()?);
    }
    Ok(report)
}

/// The outcome of line `index` of a batch as the ledger holds it (PROTOCOL.md decisions 4 and
/// 11). Only a batch the gateway provably did not process gives `not_processed`; every line of
/// a batch that was or may have been triggered is `unknown` until its answer is read.
pub(crate) fn line_outcome(
    account: &str,
    sequence: SequenceNumber,
    batch: &LedgerBatch,
    index: u64,
    failure: Option<&str>,
) -> (LineOutcome, Vec<(String, String)>) {
    let error = |m: String| vec![("xError".to_owned(), m)];
    let record = batch.record.as_ref();
    let result = batch.results.get(&index);
    match batch.state {
        BatchState::Collected | BatchState::Cleaned => {
            match record.and_then(|r| r.verdict.as_ref()) {
                Some(v) if v.outcome == sequence_ledger::BatchOutcome::Success => match result {
                    Some(fields) => (LineOutcome::from_x_result(x_result(fields)), fields.clone()),
                    None => (
                        LineOutcome::Unknown,
                        error("no stored result for this line".into()),
                    ),
                },
                Some(v) => rejected_line(account, sequence, batch, v, result),
                None => (LineOutcome::Unknown, error("batch has no verdict".into())),
            }
        }
        // Bound to a batch that is not final: the next run of the same submit finishes that
        // very batch (re-upload + PROCESS; the gateway may even have it already), so these
        // lines must never be sent anywhere else. `not_processed` would invite exactly that.
        BatchState::Stuck => (
            LineOutcome::Unknown,
            error(unfinished_note(
                account,
                sequence,
                "Stuck: no COMPLETE by the deadline; the gateway may have processed it",
                failure,
            )),
        ),
        BatchState::Reserved
        | BatchState::RequestUploaded
        | BatchState::Triggered
        | BatchState::Completed(_) => (
            LineOutcome::Unknown,
            error(unfinished_note(
                account,
                sequence,
                batch.state.name(),
                failure,
            )),
        ),
        BatchState::Abandoned => (
            LineOutcome::Unknown,
            error(format!(
                "batch abandoned by an operator: {}",
                record.and_then(|r| r.note.as_deref()).unwrap_or("")
            )),
        ),
        BatchState::MarkedUnknown => (
            LineOutcome::Unknown,
            error(format!(
                "batch {sequence} of account {account} was closed by an operator without the gateway's answer ({}); it may have been processed — never send it again",
                record.and_then(|r| r.note.as_deref()).unwrap_or("")
            )),
        ),
    }
}

fn x_result(fields: &[(String, String)]) -> Option<&str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("xResult"))
        .map(|(_, v)| v.as_str())
}

/// A line of a batch whose verdict is a gateway error (PROTOCOL.md decision 4): its own result
/// when the gateway gave one (with the batch's status beside it as `xBatchStatus` /
/// `xBatchError`); otherwise `not_processed` only when the batch provably processed nothing,
/// else `unknown`. Remarks without `xResult` (APS: why validation refused the line) follow
/// the batch's fields, their `xStatus`/`xError` renamed `xLineStatus`/`xLineError`.
fn rejected_line(
    account: &str,
    sequence: SequenceNumber,
    batch: &LedgerBatch,
    verdict: &sequence_ledger::Verdict,
    result: Option<&Vec<(String, String)>>,
) -> (LineOutcome, Vec<(String, String)>) {
    let batch_error = verdict
        .error
        .clone()
        .unwrap_or_else(|| format!("batch rejected: {}", verdict.status));
    if let Some(fields) = result.filter(|f| StoredResult::is_outcome(f)) {
        let mut out = fields.clone();
        out.push(("xBatchStatus".to_owned(), verdict.status.clone()));
        out.push(("xBatchError".to_owned(), batch_error));
        return (LineOutcome::from_x_result(x_result(fields)), out);
    }
    let rejected = batch.record.as_ref().is_some_and(|r| r.is_rejected());
    let (outcome, why) = if rejected {
        (LineOutcome::NotProcessed, batch_error)
    } else {
        let count = match verdict.processed_count {
            Some(n) => format!("says it processed {n} line(s)"),
            None => "gave no processed count and a per-line answer without this line".to_owned(),
        };
        (
            LineOutcome::Unknown,
            format!(
                "batch {sequence} of account {account} was rejected ({batch_error}) but the gateway {count}; this line has no result of its own, so it may have been processed — never send it again"
            ),
        )
    };
    let mut fields = vec![
        ("xStatus".to_owned(), verdict.status.clone()),
        ("xError".to_owned(), why),
    ];
    for (k, value) in result.into_iter().flatten() {
        let key = match k.as_str() {
            "xStatus" => "xLineStatus",
            "xError" => "xLineError",
            other => other,
        };
        fields.push((key.to_owned(), value.clone()));
    }
    (outcome, fields)
}

/// The `xError` of a line bound to a batch that is not final.
fn unfinished_note(
    account: &str,
    sequence: SequenceNumber,
    state: &str,
    failure: Option<&str>,
) -> String {
    let mut note = format!(
        "batch {sequence} of account {account} is not finished (state {state}); re-run the same submit to finish it — do not resubmit these elsewhere"
    );
    if let Some(why) = failure {
        note.push_str("; this run stopped: ");
        note.push_str(why);
    }
    note
}
