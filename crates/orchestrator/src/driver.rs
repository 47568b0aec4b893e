//! The async driver: plans every account against the ledger, runs the accounts concurrently
//! (bounded by a semaphore, in a `JoinSet`), and merges the results in input order.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, BatchState, Ledger, StoredResult};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::account::{AccountRun, Worker};
use crate::error::{Error, Result};
use crate::input::Format;
use crate::job::{Job, ResultSpill};
use crate::merge::{AccountSummary, Outcome, OutputHead, output_record};
use crate::output::OutputWriter;
use crate::plan::{Bound, RejectedBatches, content_digest};
use crate::progress::Progress;
use crate::settings::Settings;
use gateway_protocol::GatewayProtocol;

/// The shutdown signal passed into the driver: when it fires, every account stops at its next
/// safe point (between steps; the ledger has what was done) and `submit` returns
/// [`Error::Shutdown`]. Re-running resumes.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Asks every holder of the signal to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// A signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A signal that never fires.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive for ever so `changed()` never reports a closed channel.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Whether the signal fired.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.is_triggered() {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Runs `step` unless the signal fires first: then `step` is dropped at its current await
    /// and this returns [`Error::Shutdown`]. Only for steps that are safe to abandon midway
    /// ([`crate::GatewayProtocol::trigger_is_cancel_safe`]).
    pub(crate) async fn until<T>(&self, step: impl Future<Output = Result<T>>) -> Result<T> {
        let mut rx = self.0.clone();
        tokio::select! {
            biased;
            out = step => out,
            _ = rx.wait_for(|v| *v) => Err(Error::Shutdown),
        }
    }

    /// Sleeps `d`, or returns [`Error::Shutdown`] as soon as the signal fires.
    pub(crate) async fn sleep(&self, d: Duration) -> Result<()> {
        self.until(async {
            tokio::time::sleep(d).await;
            self.check()
        })
        .await
    }
}

/// How long `submit` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WaitMode {
    /// Until every batch is collected (or Stuck): `submit --wait`.
    #[default]
    UntilCollected,
    /// Until every batch is triggered. Batch n+1 of an account is still only triggered after
    /// COMPLETE n, so only each account's last batch is left for `collect`.
    UntilTriggered,
}

/// Where and how to write the merged output.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
}

/// Options of one [`Orchestrator::submit`] run.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// How long to wait.
    pub wait: WaitMode,
    /// `false` for `collect`: only finish batches the ledger already holds.
    pub collect_only: bool,
    /// Write the merged output here.
    pub output: Option<OutputSpec>,
}

/// One account's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountReport {
    /// Counts per outcome and approved amounts.
    #[serde(flatten)]
    pub summary: AccountSummary,
    /// Batches of this run not finished yet: waiting for COMPLETE (no `--wait`), or not yet
    /// triggered because the run stopped (their lines are `unknown`; re-run the same submit).
    pub pending: Vec<u32>,
    /// Batches without COMPLETE by the deadline.
    pub stuck: Vec<u32>,
}

impl AccountReport {
    /// Counts a batch under its state's name and lists it as stuck or pending. One rule for
    /// submit's merge and for collect, so the two reports cannot disagree on a batch.
    pub(crate) fn count_batch(&mut self, sequence: SequenceNumber, state: BatchState) {
        *self
            .summary
            .batches
            .entry(state.name().to_owned())
            .or_default() += 1;
        match state {
            BatchState::Stuck => self.stuck.push(sequence.get()),
            BatchState::Reserved
            | BatchState::RequestUploaded
            | BatchState::Triggered
            | BatchState::Completed(_) => self.pending.push(sequence.get()),
            _ => {}
        }
    }
}

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

/// The result of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Per account.
    pub accounts: BTreeMap<String, AccountReport>,
    /// Transactions covered.
    pub transactions: u64,
    /// The output written, if any.
    pub output: Option<PathBuf>,
}

impl Report {
    /// True when every batch reached a final state and no account failed.
    pub fn is_complete(&self) -> bool {
        self.accounts
            .values()
            .all(|a| a.summary.failure.is_none() && a.stuck.is_empty() && a.pending.is_empty())
    }

    /// Totals over all accounts.
    pub fn totals(&self) -> AccountSummary {
        let mut t = AccountSummary::default();
        for a in self.accounts.values() {
            t.absorb(&a.summary);
        }
        t
    }
}

/// Builds an [`Orchestrator`]: settings, a ledger, and (optionally) protocols per account;
/// accounts without one connect as their settings say ([`gateway_protocol::Account::connect`]).
#[derive(Debug)]
pub struct OrchestratorBuilder {
    settings: Arc<Settings>,
    ledger: Option<Arc<Ledger>>,
    protocols: HashMap<String, Arc<dyn GatewayProtocol>>,
    progress: Arc<Progress>,
    rejected: RejectedBatches,
}

impl OrchestratorBuilder {
    /// Starts from settings.
    pub fn new(settings: Arc<Settings>) -> Self {
        Self {
            settings,
            ledger: None,
            protocols: HashMap::new(),
            progress: Arc::new(Progress::default()),
            rejected: RejectedBatches::default(),
        }
    }

    /// What to do with transactions of gateway-rejected batches (default: report them as
    /// `not_processed`, upload nothing; `Resubmit` is `--resubmit-rejected`).
    #[must_use]
    pub fn rejected_batches(mut self, rejected: RejectedBatches) -> Self {
        self.rejected = rejected;
        self
    }

    /// Uses this ledger instead of opening `settings.ledger.path`.
    #[must_use]
    pub fn ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Uses `protocol` for `account` (an APS client, a test gateway, ...).
    #[must_use]
    pub fn protocol(
        mut self,
        account: impl Into<String>,
        protocol: Arc<dyn GatewayProtocol>,
    ) -> Self {
        self.protocols.insert(account.into(), protocol);
        self
    }

    /// Shares these progress counters.
    #[must_use]
    pub fn progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Opens the ledger if none was given.
    ///
    /// # Errors
    /// [`Error::Ledger`] when the ledger cannot be opened (e.g. in use by another process).
    pub fn build(self) -> Result<Orchestrator> {
        let ledger = match self.ledger {
            Some(l) => l,
            None => {
                let path = &self.settings.ledger.path;
                if let Some(parent) = path.parent() {
                    kvp_format::owner_only::create_dir_all(parent)
                        .map_err(|e| Error::io(parent, e))?;
                }
                Arc::new(Ledger::open(path).map_err(|source| Error::Ledger {
                    account: "-".into(),
                    source,
                })?)
            }
        };
        Ok(Orchestrator {
            settings: self.settings,
            ledger,
            protocols: tokio::sync::Mutex::new(self.protocols),
            progress: self.progress,
            rejected: self.rejected,
        })
    }
}

/// Runs submissions and collections (see the crate docs for the guarantees).
#[derive(Debug)]
pub struct Orchestrator {
    pub(crate) settings: Arc<Settings>,
    pub(crate) ledger: Arc<Ledger>,
    protocols: tokio::sync::Mutex<HashMap<String, Arc<dyn GatewayProtocol>>>,
    progress: Arc<Progress>,
    pub(crate) rejected: RejectedBatches,
}

impl Orchestrator {
    /// A builder.
    pub fn builder(settings: Arc<Settings>) -> OrchestratorBuilder {
        OrchestratorBuilder::new(settings)
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The progress counters.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// The account's protocol (one given to the builder, else its configured account
    /// connected on first use).
    ///
    /// # Errors
    /// [`Error::Setting`] for an unknown account; the account's connection errors (a secret
    /// whose variable is unset, unreachable storage).
    pub async fn protocol_for(&self, account: &str) -> Result<Arc<dyn GatewayProtocol>> {
        let mut protocols = self.protocols.lock().await;
        if let Some(p) = protocols.get(account) {
            return Ok(p.clone());
        }
        let protocol = self.settings.account(account)?.connect().await?;
        protocols.insert(account.to_owned(), protocol.clone());
        Ok(protocol)
    }

    /// Submits (or, with `collect_only`, collects) the job: see the crate docs for the order
    /// of steps. One failing account does not stop the others; its failure is in the report.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the signal fired; [`Error::Io`] writing the output; ledger
    /// errors that are not tied to one account.
    pub async fn submit(
        &self,
        job: Arc<Job>,
        options: &SubmitOptions,
        shutdown: Shutdown,
    ) -> Result<Report> {
        self.progress.set_transactions(job.len() as u64);
        let by_account = job.positions_by_account();
        let semaphore = Arc::new(Semaphore::new(self.settings.limits.max_concurrent_accounts));
        let mut tasks: JoinSet<(String, AccountRun)> = JoinSet::new();
        let mut names: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut runs: BTreeMap<String, AccountRun> = BTreeMap::new();
        for (idx, positions) in by_account.into_iter().enumerate() {
            if positions.is_empty() {
                continue;
            }
            let Some(name) = job.accounts().get(idx).cloned() else {
                continue;
            };
            let account = AccountId::new(name.as_str()).map_err(|source| Error::Ledger {
                account: name.clone(),
                source,
            })?;
            let plan = {
                let (ledger, job2, account2) = (self.ledger.clone(), job.clone(), account.clone());
                let max = self.settings.max_batch_lines(&name);
                let (name2, rejected) = (name.clone(), self.rejected);
                tokio::task::spawn_blocking(move || {
                    plan_with_ledger(&ledger, &job2, &account2, &name2, &positions, max, rejected)
                })
                .await
                .map_err(|e| Error::Resume {
                    account: name.clone(),
                    message: e.to_string(),
                })?
            };
            // A failure before the worker runs leaves every transaction where the ledger has
            // it: the merge reports those bound to a batch by that batch's state (`unknown`
            // while it may be in flight), and only the never-bound ones `not_processed`.
            let plan = match plan {
                Ok(p) => p,
                Err(e) => {
                    runs.insert(name, AccountRun::failed(e.to_string()));
                    continue;
                }
            };
            let protocol = match self.protocol_for(&name).await {
                Ok(p) => p,
                Err(e) => {
                    runs.insert(name, AccountRun::failed(e.to_string()));
                    continue;
                }
            };
            let worker = Worker {
                account,
                ledger: self.ledger.clone(),
                protocol,
                job: job.clone(),
                poll: self.settings.poll,
                mode: options.wait,
                new_batches: !options.collect_only,
                shutdown: shutdown.clone(),
                progress: self.progress.clone(),
            };
            let permit_source = semaphore.clone();
            let progress = self.progress.clone();
            progress.account_started();
            let task_name = name.clone();
            let handle = tasks.spawn(async move {
                let _permit = permit_source.acquire_owned().await;
                let run = worker.run(plan).await;
                progress.account_finished();
                (task_name, run)
            });
            names.insert(handle.id(), name);
        }
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((_, (name, run))) => {
                    runs.insert(name, run);
                }
                // A panic in one account's task fails that account, not the run; what it
                // did is in the ledger, so the merge reports its transactions honestly.
                Err(e) => {
                    let name = names.get(&e.id()).cloned().unwrap_or_default();
                    let message = kvp_format::mask_digit_runs(&e.to_string()).into_owned();
                    tracing::error!(account = %name, error = %message, "account task failed");
                    runs.insert(
                        name,
                        AccountRun::failed(format!("the account's task failed: {message}")),
                    );
                }
            }
        }
        if shutdown.is_triggered() {
            return Err(Error::Shutdown);
        }
        self.merge(&job, runs, options).await
    }

    async fn merge(
        &self,
        job: &Arc<Job>,
        runs: BTreeMap<String, AccountRun>,
        options: &SubmitOptions,
    ) -> Result<Report> {
        let ledger = self.ledger.clone();
        let job = job.clone();
        let settings = self.settings.clone();
        let output = options.output.clone();
        let unbound = if options.collect_only {
            "not sent: collect does not create batches (run submit)"
        } else {
            "not sent"
        };
        tokio::task::spawn_blocking(move || {
            merge_blocking(&ledger, &job, &settings, &runs, output.as_ref(), unbound)
        })
        .await
        .map_err(|e| Error::Resume {
            account: "-".into(),
            message: format!("merge failed: {e}"),
        })?
    }
}

type PlanResult = std::result::Result<crate::plan::AccountPlan, Box<Error>>;

pub(crate) fn plan_with_ledger(
    ledger: &Ledger,
    job: &Job,
    account: &AccountId,
    name: &str,
    positions: &[u32],
    max: usize,
    rejected: RejectedBatches,
) -> PlanResult {
    let mut failure: Option<Error> = None;
    // Job::plan_account adds the protocol's own chunk rules (APS: no merchant_reference twice
    // in one file, the file size limit) to the line limit.
    let plan = job.plan_account(name, positions, max, |pos| {
        if failure.is_some() {
            return None;
        }
        let tx = match job.transaction(pos as usize) {
            Ok(t) => t,
            Err(e) => {
                failure = Some(e);
                return None;
            }
        };
        let digest = content_digest(&tx.fields);
        match ledger.check_reference_with(account, &tx.reference, &digest, rejected.release()) {
            Ok(Some(b)) => Some(Bound {
                sequence: b.sequence,
                index: b.index,
            }),
            Ok(None) => None,
            Err(sequence_ledger::Error::ContentConflict { existing, .. }) => {
                failure = Some(Error::Resume {
                    account: name.to_owned(),
                    message: format!(
                        "line {}: ref {:?} was submitted before ({existing}) with different content; refusing to send it again",
                        job.line_of(pos as usize),
                        kvp_format::mask_digit_runs(&tx.reference)
                    ),
                });
                None
            }
            Err(source) => {
                failure = Some(Error::Ledger {
                    account: name.to_owned(),
                    source,
                });
                None
            }
        }
    });
    if let Some(e) = failure {
        return Err(Box::new(e));
    }
    plan.map_err(|c| {
        Box::new(Error::Resume {
            account: name.to_owned(),
            message: format!("line {}: {}", job.line_of(c.position as usize), c.message),
        })
    })
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
fn merge_blocking(
    ledger: &Ledger,
    job: &Job,
    settings: &Settings,
    runs: &BTreeMap<String, AccountRun>,
    output: Option<&OutputSpec>,
    unbound: &str,
) -> Result<Report> {
    let mut report = Report {
        transactions: job.len() as u64,
        ..Report::default()
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
        let failure = runs.get(name).and_then(|r| r.failure.as_deref());
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
                        Outcome::NotProcessed,
                        vec![("xError".to_owned(), why)],
                    )
                }
                Some(b) if b.content_digest != content_digest(&tx.fields) => (
                    Some(b),
                    Outcome::Unknown,
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
        let outcome = Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == outcome)
            .unwrap_or(Outcome::Unknown);
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
) -> (Outcome, Vec<(String, String)>) {
    let error = |m: String| vec![("xError".to_owned(), m)];
    let record = batch.record.as_ref();
    let result = batch.results.get(&index);
    match batch.state {
        BatchState::Collected | BatchState::Cleaned => {
            match record.and_then(|r| r.verdict.as_ref()) {
                Some(v) if v.outcome == sequence_ledger::Outcome::Success => match result {
                    Some(fields) => (Outcome::from_x_result(x_result(fields)), fields.clone()),
                    None => (
                        Outcome::Unknown,
                        error("no stored result for this line".into()),
                    ),
                },
                Some(v) => rejected_line(account, sequence, batch, v, result),
                None => (Outcome::Unknown, error("batch has no verdict".into())),
            }
        }
        // Bound to a batch that is not final: the next run of the same submit finishes that
        // very batch (re-upload + PROCESS; the gateway may even have it already), so these
        // lines must never be sent anywhere else. `not_processed` would invite exactly that.
        BatchState::Stuck => (
            Outcome::Unknown,
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
            Outcome::Unknown,
            error(unfinished_note(
                account,
                sequence,
                batch.state.name(),
                failure,
            )),
        ),
        BatchState::Abandoned => (
            Outcome::Unknown,
            error(format!(
                "batch abandoned by an operator: {}",
                record.and_then(|r| r.note.as_deref()).unwrap_or("")
            )),
        ),
        BatchState::MarkedUnknown => (
            Outcome::Unknown,
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
) -> (Outcome, Vec<(String, String)>) {
    let batch_error = verdict
        .error
        .clone()
        .unwrap_or_else(|| format!("batch rejected: {}", verdict.status));
    if let Some(fields) = result.filter(|f| StoredResult::is_outcome(f)) {
        let mut out = fields.clone();
        out.push(("xBatchStatus".to_owned(), verdict.status.clone()));
        out.push(("xBatchError".to_owned(), batch_error));
        return (Outcome::from_x_result(x_result(fields)), out);
    }
    let rejected = batch.record.as_ref().is_some_and(|r| r.is_rejected());
    let (outcome, why) = if rejected {
        (Outcome::NotProcessed, batch_error)
    } else {
        let count = match verdict.processed_count {
            Some(n) => format!("says it processed {n} line(s)"),
            None => "gave no processed count and a per-line answer without this line".to_owned(),
        };
        (
            Outcome::Unknown,
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
