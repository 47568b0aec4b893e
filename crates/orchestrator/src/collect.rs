//! `collect` without the input: finish every batch the ledger has in flight and write what
//! the ledger knows about their transactions (by account, batch and line; the input order is
//! not known without the input).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, Ledger};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::account::{AccountRun, Worker};
use crate::driver::{
    AccountReport, LedgerBatch, Orchestrator, OutputSpec, Report, Shutdown, WaitMode, line_outcome,
};
use crate::error::{Error, Result};
use crate::input::{InputRecord, RecordSource};
use crate::job::{InvalidPolicy, Job};
use crate::merge::{OutputHead, output_record};
use crate::output::OutputWriter;
use crate::plan::AccountPlan;
use crate::settings::Settings;

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
    ) -> Result<Report> {
        let ledger = self.ledger.clone();
        let in_flight = tokio::task::spawn_blocking(move || ledger.in_flight())
            .await
            .map_err(|e| Error::Resume {
                account: "-".into(),
                message: e.to_string(),
            })?
            .map_err(|source| Error::Ledger {
                account: "-".into(),
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
        let semaphore = Arc::new(Semaphore::new(self.settings.limits.max_concurrent_accounts));
        let mut tasks: JoinSet<(String, AccountRun)> = JoinSet::new();
        let mut runs: BTreeMap<String, AccountRun> = BTreeMap::new();
        for name in by_account.keys() {
            let account = AccountId::new(name.as_str()).map_err(|source| Error::Ledger {
                account: name.clone(),
                source,
            })?;
            let protocol = match self.protocol_for(name).await {
                Ok(p) => p,
                Err(e) => {
                    runs.insert(name.clone(), AccountRun::failed(e.to_string()));
                    continue;
                }
            };
            let worker = Worker {
                account,
                ledger: self.ledger.clone(),
                protocol,
                job: empty.clone(),
                poll: self.settings.poll,
                mode: WaitMode::UntilCollected,
                new_batches: false,
                shutdown: shutdown.clone(),
                progress: self.progress().clone(),
            };
            let permits = semaphore.clone();
            let name = name.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                (name, worker.run(AccountPlan::default()).await)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (name, run) = joined.map_err(|e| Error::Resume {
                account: "-".into(),
                message: format!("an account task failed: {e}"),
            })?;
            runs.insert(name, run);
        }
        if shutdown.is_triggered() {
            return Err(Error::Shutdown);
        }
        let ledger = self.ledger.clone();
        let settings = self.settings.clone();
        let output = output.cloned();
        tokio::task::spawn_blocking(move || {
            write_in_flight(&ledger, &settings, &by_account, &runs, output.as_ref())
        })
        .await
        .map_err(|e| Error::Resume {
            account: "-".into(),
            message: e.to_string(),
        })?
    }
}

fn write_in_flight(
    ledger: &Ledger,
    settings: &Settings,
    by_account: &BTreeMap<String, Vec<SequenceNumber>>,
    runs: &BTreeMap<String, AccountRun>,
    output: Option<&OutputSpec>,
) -> Result<Report> {
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
    let mut report = Report::default();
    for (name, sequences) in by_account {
        let account = AccountId::new(name.as_str()).map_err(|source| Error::Ledger {
            account: name.clone(),
            source,
        })?;
        let ledger_err = |source| Error::Ledger {
            account: name.clone(),
            source,
        };
        let failure = runs.get(name).and_then(|r| r.failure.clone());
        let mut entry = AccountReport::default();
        entry.summary.failure = failure.clone();
        let mut refs: HashMap<u32, Vec<(u64, String)>> = HashMap::new();
        for (client_ref, b) in ledger.bindings_of(&account).map_err(ledger_err)? {
            if sequences.contains(&b.sequence) {
                refs.entry(b.sequence.get())
                    .or_default()
                    .push((b.index, client_ref));
            }
        }
        for &sequence in sequences {
            let batch = LedgerBatch::read(ledger, &account, sequence).map_err(ledger_err)?;
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
