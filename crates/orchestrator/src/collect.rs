//! `collect` without the input: finish every batch the ledger has in flight and write what
//! the ledger knows about their transactions (by account, batch and line; the input order is
//! not known without the input).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, SequenceLedger};

use crate::driver::{Orchestrator, OutputSpec, SubmitOptions, WaitMode};
use crate::error::{Error, Result};
use crate::input::{InputRecord, RecordSource};
use crate::job::{InvalidPolicy, Job};
use crate::merge::{LedgerBatch, line_outcome};
use crate::outcome::{OutputHead, output_record};
use crate::output::OutputWriter;
use crate::report::{AccountReport, RunReport};
use crate::runner::Work;
use crate::settings::Settings;
use crate::shutdown::Shutdown;

struct Empty;

impl RecordSource for Empty {
    fn read_record(&mut self, _rec: &mut InputRecord) -> Result<bool> {
        Ok(false)
    }
    fn name(&self) -> &str {
        "-"
    }
}

impl Orchestrator {
    /// Finishes every batch in flight in the ledger (poll, store results, clean up; Stuck
    /// ones are polled once) and writes one output record per transaction of those batches,
    /// ordered by account, batch and line. Batches not yet triggered cannot be finished
    /// without their input: their account is reported failed with a message saying so.
    ///
    /// # Errors
    /// [`Error::Shutdown`]; ledger and output errors.
    pub async fn collect_in_flight(
        &self,
        output: Option<&OutputSpec>,
        shutdown: Shutdown,
    ) -> Result<RunReport> {
        let in_flight = self
            .ledger
            .in_flight()
            .await
            .map_err(|source| Error::LedgerOpen {
                path: self.ledger.describe().into(),
                source,
            })?;
        let mut by_account: BTreeMap<String, Vec<SequenceNumber>> = BTreeMap::new();
        for (account, rec) in in_flight {
            by_account
                .entry(account.to_string())
                .or_default()
                .push(rec.sequence);
        }
        let empty = Arc::new(Job::load(
            &mut Empty,
            &self.settings,
            InvalidPolicy::RejectInput,
            &mut |_, _| {},
        )?);
        let options = SubmitOptions {
            wait: WaitMode::UntilCollected,
            collect_only: true,
            output: None,
        };
        let work = by_account
            .keys()
            .map(|name| (name.clone(), Work::Collect))
            .collect();
        let runs = self
            .run_accounts(empty, work, &options, shutdown.clone())
            .await;
        if shutdown.is_triggered() {
            return Err(Error::Shutdown);
        }
        let failures: BTreeMap<String, String> = runs
            .into_iter()
            .filter_map(|(name, run)| run.failure.map(|e| (name, e.to_string())))
            .collect();
        // Each in-flight batch's lines: reference and index (the collect has no input).
        let mut lines: BTreeMap<String, HashMap<u32, Vec<(u64, String)>>> = BTreeMap::new();
        for (name, sequences) in &by_account {
            let account = AccountId::new(name.as_str()).map_err(Error::ledger_named(name))?;
            let refs = lines.entry(name.clone()).or_default();
            for (client_ref, b) in self
                .ledger
                .bindings_of(&account)
                .await
                .map_err(Error::ledger_named(name))?
            {
                if sequences.contains(&b.sequence) {
                    refs.entry(b.sequence.get())
                        .or_default()
                        .push((b.index, client_ref));
                }
            }
        }
        let ledger = self.ledger.clone();
        let settings = self.settings.clone();
        let output = output.cloned();
        tokio::task::spawn_blocking(move || {
            write_in_flight(
                ledger.as_ref(),
                &settings,
                &by_account,
                lines,
                &failures,
                output.as_ref(),
            )
        })
        .await
        .map_err(|e| Error::task("*", &e))?
    }
}

fn write_in_flight(
    ledger: &dyn SequenceLedger,
    settings: &Settings,
    by_account: &BTreeMap<String, Vec<SequenceNumber>>,
    mut lines_of: BTreeMap<String, HashMap<u32, Vec<(u64, String)>>>,
    failures: &BTreeMap<String, String>,
    output: Option<&OutputSpec>,
) -> Result<RunReport> {
    let ref_field = settings.input.ref_field.as_str();
    let account_field = settings.input.account_field.as_str();
    let mut writer = match output {
        Some(spec) => Some(OutputWriter::create(
            &spec.path,
            spec.format,
            &[ref_field, account_field],
        )?),
        None => None,
    };
    let mut report = RunReport::default();
    for (name, sequences) in by_account {
        let account = AccountId::new(name.as_str()).map_err(|source| Error::Ledger {
            account: name.clone(),
            source,
        })?;
        let ledger_err = |source| Error::Ledger {
            account: name.clone(),
            source,
        };
        let failure = failures.get(name).cloned();
        let mut entry = AccountReport::default();
        entry.summary.failure = failure.clone();
        let mut refs = lines_of.remove(name).unwrap_or_default();
        let view = ledger.blocking_view(&account).map_err(ledger_err)?;
        for &sequence in sequences {
            let batch = LedgerBatch::read(view.as_ref(), sequence).map_err(ledger_err)?;
            entry.count_batch(sequence, batch.state);
            let mut lines = refs.remove(&sequence.get()).unwrap_or_default();
            lines.sort_unstable();
            for (index, reference) in lines {
                let (outcome, fields) =
                    line_outcome(name, sequence, &batch, index, failure.as_deref());
                let head = OutputHead {
                    ref_field,
                    account_field,
                    reference: &reference,
                    account: name,
                    sequence: Some(sequence.get()),
                    index: Some(index),
                };
                let record = output_record(head, outcome, &fields);
                entry.summary.add(outcome, &record);
                report.transactions += 1;
                if let Some(w) = writer.as_mut() {
                    w.write(&record)?;
                }
            }
        }
        report.accounts.insert(name.clone(), entry);
    }
    if let Some(w) = writer {
        report.output = Some(w.finish()?);
    }
    Ok(report)
}
