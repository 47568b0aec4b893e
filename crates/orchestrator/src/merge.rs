//! The merge: one output record per input transaction, in input order, with the outcome the
//! ledger proves for its line (PROTOCOL.md decisions 4 and 11).
//!
//! Two sequential passes. The first walks each account's spilled transactions in input order
//! with the account's batches' stored results (one read per batch), decides every line's
//! outcome, counts it, and appends the formatted output record to that account's stream of a
//! results spill. The second writes the records out in input order, taking each position's
//! next record from its account's stream. No line is read twice and none is looked up at
//! random.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, AccountView, BatchResults, BatchState, LineResult, SequenceLedger,
};

use crate::driver::OutputSpec;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::outcome::{LineOutcome, OutPair, OutputHead, output_record};
use crate::output::OutputWriter;
use crate::report::{AccountReport, RunReport};
use crate::scratch::ScratchDir;
use crate::settings::Settings;
use crate::spill::StreamWriter;

/// What the results spill buffers while it is written, and again while every account's stream
/// is read at once in input order.
const RESULTS_BUDGET: usize = 2 << 20;

/// A batch as the ledger holds it now, with its stored per-line results once collected.
pub(crate) struct LedgerBatch {
    /// The batch record; `None` when the ledger has none (read as `Reserved`).
    pub(crate) record: Option<sequence_ledger::BatchRecord>,
    /// The record's state, `Reserved` without a record.
    pub(crate) state: BatchState,
    /// The stored results; empty unless the batch is `Collected` or `Cleaned` (and its
    /// results were not pruned).
    pub(crate) results: BatchResults,
}

impl LedgerBatch {
    /// Reads batch `sequence` of `account`; fails with the ledger's error.
    pub(crate) fn read(
        ledger: &dyn AccountView,
        sequence: SequenceNumber,
    ) -> std::result::Result<Self, sequence_ledger::Error> {
        let record = ledger.batch(sequence)?;
        let state = record.as_ref().map_or(BatchState::Reserved, |r| r.state);
        let results = if matches!(state, BatchState::Collected | BatchState::Cleaned) {
            ledger.batch_results(sequence)?
        } else {
            BatchResults::default()
        };
        Ok(Self {
            record,
            state,
            results,
        })
    }

    /// When its results were dropped by `paybatch ledger prune`, if they were.
    fn pruned_at(&self) -> Option<u64> {
        self.record.as_ref().and_then(|r| r.results_pruned_at)
    }
}

/// The batches of one account the merge has read, a few at a time: positions of an account
/// come in input order, which visits its batches mostly one after the other.
struct BatchCache<'a> {
    ledger: &'a dyn AccountView,
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
            let batch = LedgerBatch::read(self.ledger, sequence)?;
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
    ledger: &dyn SequenceLedger,
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
    let ref_field = settings.input.ref_field.as_str();
    let account_field = settings.input.account_field.as_str();
    let writer = match output {
        Some(spec) => Some(OutputWriter::create(
            &spec.path,
            spec.format,
            &[ref_field, account_field],
        )?),
        None => None,
    };
    let dir = ScratchDir::create("paybatch-results-")?;
    let mut spill = match writer {
        Some(_) => Some(StreamWriter::create(
            &dir.path().join("results.spill"),
            job.accounts().len(),
            RESULTS_BUDGET,
        )?),
        None => None,
    };
    for (idx, name) in job.accounts().iter().enumerate() {
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
        let view = ledger.blocking_view(&account).map_err(ledger_err)?;
        let mut cache = BatchCache {
            ledger: view.as_ref(),
            account: &account,
            batches: HashMap::new(),
        };
        let mut counted = BTreeSet::new();
        let mut any = false;
        let mut records = job.records(idx);
        while let Some(tx) = records.next()? {
            any = true;
            let binding = view
                .binding_with(tx.reference, &tx.digest)
                .map_err(ledger_err)?;
            let (outcome, fields): (LineOutcome, Vec<OutPair<'_>>) = match &binding {
                None => {
                    let why = failure.unwrap_or(unbound);
                    (
                        LineOutcome::NotProcessed,
                        vec![("xError", Cow::Borrowed(why))],
                    )
                }
                Some(b) if b.content_digest != tx.digest => (
                    LineOutcome::Unknown,
                    vec![(
                        "xError",
                        Cow::Owned(format!(
                            "this ref was submitted before with different content ({b}, account {name}); that transaction may have been processed, and this one was not sent — do not send either elsewhere"
                        )),
                    )],
                ),
                Some(b) => {
                    let batch = cache.get(b.sequence).map_err(ledger_err)?;
                    if counted.insert(b.sequence) {
                        entry.count_batch(b.sequence, batch.state);
                    }
                    line_outcome(name, b.sequence, batch, b.index, failure)
                }
            };
            let head = OutputHead {
                ref_field,
                account_field,
                reference: tx.reference,
                account: name,
                sequence: binding.map(|b| b.sequence.get()),
                index: binding.map(|b| b.index),
            };
            let record = output_record(head, outcome, &fields);
            entry.summary.add(outcome, &record);
            if let (Some(w), Some(spill)) = (writer.as_ref(), spill.as_mut()) {
                let mut formatted = Ok(());
                spill.push_with(idx, |buf| formatted = w.format(&record, buf))?;
                formatted?;
            }
        }
        if any {
            report.accounts.insert(name.clone(), entry);
        }
    }
    if let (Some(mut w), Some(spill)) = (writer, spill) {
        let streams = spill.finish()?;
        let mut cursors: Vec<_> = (0..job.accounts().len())
            .map(|a| streams.cursor(a))
            .collect();
        for pos in 0..job.len() {
            let record = cursors
                .get_mut(job.account_of(pos))
                .map(|c| c.next_record())
                .transpose()?
                .flatten()
                .ok_or_else(|| {
                    Error::setting("output", format!("no output record for position {pos}"))
                })?;
            w.write_formatted(record)?;
        }
        report.output = Some(w.finish()?);
    }
    Ok(report)
}

/// The outcome of line `index` of a batch as the ledger holds it (PROTOCOL.md decisions 4 and
/// 11). Only a batch the gateway provably did not process gives `not_processed`; every line of
/// a batch that was or may have been triggered is `unknown` until its answer is read.
pub(crate) fn line_outcome<'a>(
    account: &str,
    sequence: SequenceNumber,
    batch: &'a LedgerBatch,
    index: u64,
    failure: Option<&str>,
) -> (LineOutcome, Vec<OutPair<'a>>) {
    let error = |m: String| vec![("xError", Cow::Owned(m))];
    let record = batch.record.as_ref();
    let result = batch.results.get(index);
    match batch.state {
        BatchState::Collected | BatchState::Cleaned => {
            match record.and_then(|r| r.verdict.as_ref()) {
                Some(_) if result.is_none() && batch.pruned_at().is_some() => (
                    LineOutcome::Unknown,
                    error(pruned_note(account, sequence, batch.pruned_at())),
                ),
                Some(v) if v.outcome == sequence_ledger::BatchOutcome::Success => match result {
                    Some(line) => (
                        LineOutcome::from_x_result(line.get("xResult")),
                        borrowed(line),
                    ),
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
        // By an operator (`resolve --abandon`) or at a takeover of a never-triggered batch: the
        // note says which and why.
        BatchState::Abandoned => (
            LineOutcome::Unknown,
            error(format!(
                "batch abandoned: {}",
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

/// A stored result's fields, borrowed.
fn borrowed<'a>(line: LineResult<'a>) -> Vec<OutPair<'a>> {
    line.fields().map(|(k, v)| (k, Cow::Borrowed(v))).collect()
}

/// A line of a batch whose verdict is a gateway error (PROTOCOL.md decision 4): its own result
/// when the gateway gave one (with the batch's status beside it as `xBatchStatus` /
/// `xBatchError`); otherwise `not_processed` only when the batch provably processed nothing,
/// else `unknown`. Remarks without `xResult` (APS: why validation refused the line) follow
/// the batch's fields, their `xStatus`/`xError` renamed `xLineStatus`/`xLineError`.
fn rejected_line<'a>(
    account: &str,
    sequence: SequenceNumber,
    batch: &'a LedgerBatch,
    verdict: &'a sequence_ledger::Verdict,
    result: Option<LineResult<'a>>,
) -> (LineOutcome, Vec<OutPair<'a>>) {
    let batch_error = verdict
        .error
        .clone()
        .unwrap_or_else(|| format!("batch rejected: {}", verdict.status));
    if let Some(line) = result.filter(LineResult::is_outcome) {
        let mut out = borrowed(line);
        out.push(("xBatchStatus", Cow::Borrowed(verdict.status.as_str())));
        out.push(("xBatchError", Cow::Owned(batch_error)));
        return (LineOutcome::from_x_result(line.get("xResult")), out);
    }
    let rejected = batch.record.as_ref().is_some_and(|r| r.is_rejected());
    let (outcome, why) = if rejected {
        (LineOutcome::NotProcessed, batch_error)
    } else {
        let unreadable = batch.record.as_ref().and_then(|r| r.per_line_answer)
            == Some(sequence_ledger::PerLineAnswer::Unreadable);
        let count = match verdict.processed_count {
            _ if unreadable => {
                "wrote a per-line answer that could not be read, or that contradicts its processed count".to_owned()
            }
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
        ("xStatus", Cow::Borrowed(verdict.status.as_str())),
        ("xError", Cow::Owned(why)),
    ];
    for (k, value) in result.into_iter().flat_map(|l| l.fields()) {
        let key = match k {
            "xStatus" => "xLineStatus",
            "xError" => "xLineError",
            other => other,
        };
        fields.push((key, Cow::Borrowed(value)));
    }
    (outcome, fields)
}

/// The `xError` of a line of a collected batch whose stored results were pruned.
fn pruned_note(account: &str, sequence: SequenceNumber, pruned_at: Option<u64>) -> String {
    let when = pruned_at
        .map(|ms| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            format!("pruned {}", humantime::format_rfc3339_seconds(at))
        })
        .unwrap_or_else(|| "pruned".to_owned());
    format!(
        "batch {sequence} of account {account} was answered and collected, but its per-line results are no longer in the ledger ({when} by `paybatch ledger prune`); the gateway processed it as it answered then — never send this line again"
    )
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
