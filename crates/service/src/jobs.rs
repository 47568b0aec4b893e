//! The jobs: accepting one (validated, durable, then answered), running each through the one
//! engine (at most `max_concurrent_jobs` at once; jobs sharing an account queue behind each
//! other in the engine), resuming those a stop or a crash left, and their records.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use orchestrator::{
    Format, InputReader, InvalidPolicy, Job, Orchestrator, OutputSpec, RunReport, Settings,
    Shutdown, SubmitOptions, WaitMode,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::error::{Error, Result, blocking};
use crate::record::{JobAccount, JobId, JobRecord, JobState, timestamp};
use crate::store::{Incoming, JobStore};

/// One problem of an invalid input: its 1-based line and the masked message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// 1-based line of the record (0: the input as a whole).
    pub line: u64,
    /// What is wrong; digit runs that could be a card number are masked.
    pub message: String,
}

/// What became of a submitted body.
#[derive(Debug)]
pub enum Accepted {
    /// A new job, durable.
    New(JobRecord),
    /// The same idempotency key and body as an earlier job: that job.
    Existing(JobRecord),
    /// The idempotency key was used with another body.
    KeyConflict(JobId),
    /// The input is invalid: nothing was kept.
    Invalid(Vec<Problem>),
}

/// A received body, before it is a job.
#[derive(Debug)]
pub struct Body {
    /// Where it was written.
    pub incoming: Incoming,
    /// Its format.
    pub format: Format,
    /// Its length.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The `Idempotency-Key`.
    pub key: Option<String>,
}

/// The jobs and the engine they run in.
#[derive(Debug)]
pub struct Jobs {
    store: JobStore,
    settings: Arc<Settings>,
    engine: Arc<Orchestrator>,
    records: Mutex<BTreeMap<JobId, JobRecord>>,
    /// Idempotency key → job; one lock per key so two requests with one key make one job.
    keys: Mutex<HashMap<String, JobId>>,
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    slots: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
    stop: Shutdown,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain values; a panic elsewhere cannot leave them half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Jobs {
    /// The jobs of `store` (records loaded, nothing started yet: see [`Jobs::resume_all`]).
    ///
    /// # Errors
    /// Reading the records.
    pub async fn open(
        store: JobStore,
        settings: Arc<Settings>,
        engine: Arc<Orchestrator>,
        max_concurrent_jobs: usize,
        stop: Shutdown,
    ) -> Result<Arc<Self>> {
        let loaded = {
            let store = store.clone();
            blocking(move || store.load_all()).await?
        };
        let mut records = BTreeMap::new();
        let mut keys = HashMap::new();
        for r in loaded {
            if let Some(k) = &r.idempotency_key {
                keys.insert(k.clone(), r.id.clone());
            }
            records.insert(r.id.clone(), r);
        }
        Ok(Arc::new(Self {
            store,
            settings,
            engine,
            records: Mutex::new(records),
            keys: Mutex::new(keys),
            key_locks: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max_concurrent_jobs)),
            tasks: Mutex::new(JoinSet::new()),
            stop,
            stopping: AtomicBool::new(false),
        }))
    }

    /// The store.
    pub fn store(&self) -> &JobStore {
        &self.store
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Orchestrator> {
        &self.engine
    }

    /// The settings.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobRecord> {
        lock(&self.records).values().cloned().collect()
    }

    /// One job.
    pub fn get(&self, id: &JobId) -> Option<JobRecord> {
        lock(&self.records).get(id).cloned()
    }

    /// Jobs per state (every state present, 0 when none).
    pub fn count_by_state(&self) -> BTreeMap<JobState, u64> {
        let mut out: BTreeMap<JobState, u64> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for r in lock(&self.records).values() {
            *out.entry(r.state).or_default() += 1;
        }
        out
    }

    /// No new jobs from now on (they get 503); running ones stop at their next safe point
    /// once the engine's shutdown fires.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether [`Jobs::begin_stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits for every job task to return (after the shutdown fired, each stops at a safe
    /// point).
    pub async fn wait_idle(&self) {
        loop {
            let mut set = std::mem::take(&mut *lock(&self.tasks));
            if set.is_empty() {
                return;
            }
            while let Some(joined) = set.join_next().await {
                if let Err(e) = joined {
                    // A panic's message may quote a value: masked like every task error.
                    let e = e.to_string();
                    error!(error = %kvp_format::mask_digit_runs(&e), "a job task failed");
                }
            }
        }
    }

    /// Starts every job that is accepted or running (left by a stop or a crash), oldest first.
    pub fn resume_all(self: &Arc<Self>) {
        let open: Vec<JobId> = lock(&self.records)
            .values()
            .filter(|r| !r.state.is_finished())
            .map(|r| r.id.clone())
            .collect();
        if !open.is_empty() {
            info!(
                jobs = open.len(),
                "resuming jobs accepted before this start"
            );
        }
        for id in open {
            self.spawn_run(id);
        }
    }

    /// Validates a received body and, when valid, makes it a durable job and starts it.
    ///
    /// # Errors
    /// Writing the job ([`Error::Io`], [`Error::Record`]); a failed blocking task.
    pub async fn accept(self: &Arc<Self>, body: Body) -> Result<Accepted> {
        // One request at a time per idempotency key, from the check to the commit.
        let key_lock = body
            .key
            .as_ref()
            .map(|k| lock(&self.key_locks).entry(k.clone()).or_default().clone());
        let _held = match &key_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        if let Some(key) = &body.key {
            let existing = lock(&self.keys).get(key).cloned();
            if let Some(id) = existing {
                return Ok(match self.get(&id) {
                    Some(r) if r.body_sha256 == body.sha256 => Accepted::Existing(r),
                    _ => Accepted::KeyConflict(id),
                });
            }
        }
        let Body {
            incoming,
            format,
            bytes,
            sha256,
            key,
        } = body;
        let settings = self.settings.clone();
        let input = incoming.input();
        let checked = blocking(move || Ok(check_input(&input, format, &settings))).await?;
        let counts = match checked {
            Ok(counts) => counts,
            Err(problems) => return Ok(Accepted::Invalid(problems)),
        };
        let now = SystemTime::now();
        let record = JobRecord {
            id: JobId::new(now),
            state: JobState::Accepted,
            created: timestamp(now),
            finished: None,
            format: format.extension().to_owned(),
            transactions: counts.values().sum(),
            bytes,
            body_sha256: sha256,
            idempotency_key: key.clone(),
            totals: BTreeMap::new(),
            accounts: counts
                .into_iter()
                .map(|(account, transactions)| JobAccount {
                    account,
                    transactions,
                    ..JobAccount::default()
                })
                .collect(),
            error: None,
            results: false,
            runs: 0,
        };
        {
            let (store, record) = (self.store.clone(), record.clone());
            blocking(move || store.commit(incoming, &record)).await?;
        }
        lock(&self.records).insert(record.id.clone(), record.clone());
        if let Some(k) = key {
            lock(&self.keys).insert(k, record.id.clone());
        }
        info!(job = %record.id, transactions = record.transactions, "job accepted");
        self.spawn_run(record.id.clone());
        Ok(Accepted::New(record))
    }

    /// Runs a failed job again (its cause fixed: a batch resolved, a drop reachable again);
    /// the engine finishes what the ledger holds of it and sends only what was never bound.
    /// `None` when there is no such job; `Some(Err(state))` when it is not failed.
    pub async fn retry(
        self: &Arc<Self>,
        id: &JobId,
    ) -> Option<std::result::Result<JobRecord, JobState>> {
        // Checked and changed under one lock: two retries at once start one run.
        let record = {
            let mut records = lock(&self.records);
            let r = records.get_mut(id)?;
            if r.state != JobState::Failed {
                return Some(Err(r.state));
            }
            r.state = JobState::Accepted;
            r.error = None;
            r.clone()
        };
        self.persist(&record).await;
        self.spawn_run(id.clone());
        Some(Ok(record))
    }

    fn spawn_run(self: &Arc<Self>, id: JobId) {
        let me = self.clone();
        let mut tasks = lock(&self.tasks);
        // Reap finished tasks so the set holds only running ones.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move { me.run(id).await });
    }

    /// Updates a record in memory and on disk.
    async fn update(&self, id: &JobId, change: impl FnOnce(&mut JobRecord)) -> Option<JobRecord> {
        let record = {
            let mut records = lock(&self.records);
            let r = records.get_mut(id)?;
            change(r);
            r.clone()
        };
        self.persist(&record).await;
        Some(record)
    }

    async fn persist(&self, record: &JobRecord) {
        let (store, saved) = (self.store.clone(), record.clone());
        if let Err(e) = blocking(move || store.save(&saved)).await {
            // Memory and disk now differ; the next start reads the disk and resumes the job if
            // it was not finished there, which the engine finishes exactly once.
            error!(job = %record.id, error = %e, "cannot persist the job record");
        }
    }

    async fn run(self: Arc<Self>, id: JobId) {
        let stop = self.stop.clone();
        let slot = tokio::select! {
            slot = self.slots.clone().acquire_owned() => slot,
            () = stop.wait() => return,
        };
        let Ok(_slot) = slot else { return };
        if stop.is_triggered() {
            return;
        }
        let Some(record) = self
            .update(&id, |r| {
                r.state = JobState::Running;
                r.runs += 1;
                r.error = None;
                r.results = false;
            })
            .await
        else {
            return;
        };
        info!(job = %id, run = record.runs, "job running");
        let outcome = self.submit(&record).await;
        match outcome {
            Err(Error::Engine(e)) if matches!(*e, orchestrator::Error::Shutdown) => {
                info!(job = %id, "job stopped at a safe point; it resumes at the next start");
            }
            Ok(report) => {
                let complete = report.is_complete();
                self.update(&id, |r| finish(r, Some(&report), None, complete))
                    .await;
                info!(job = %id, complete, "job finished");
            }
            Err(e) => {
                let message = kvp_format::mask_digit_runs(&e.to_string()).into_owned();
                warn!(job = %id, error = %message, "job failed");
                let results = self.store.results(&id, Format::Kvp).is_file();
                self.update(&id, |r| {
                    finish(r, None, Some(message), false);
                    r.results = results;
                })
                .await;
            }
        }
    }

    async fn submit(&self, record: &JobRecord) -> Result<RunReport> {
        let format: Format = record.format.parse().map_err(|message: String| {
            Error::from(orchestrator::Error::Setting {
                key: "format".into(),
                message,
            })
        })?;
        let (store, id, settings) = (self.store.clone(), record.id.clone(), self.settings.clone());
        let job = blocking(move || {
            store.clear_results(&id)?;
            let mut reader = InputReader::open(&store.input(&id), Some(format))?;
            Ok(Job::load(
                &mut reader,
                &settings,
                InvalidPolicy::RejectInput,
                &mut |_, _| {},
            )?)
        })
        .await?;
        let options = SubmitOptions {
            wait: WaitMode::UntilCollected,
            collect_only: false,
            output: Some(OutputSpec {
                path: self.store.results(&record.id, Format::Kvp),
                format: Format::Kvp,
            }),
        };
        Ok(self
            .engine
            .submit(Arc::new(job), &options, self.stop.clone())
            .await?)
    }
}

/// The record of a run that ended.
fn finish(r: &mut JobRecord, report: Option<&RunReport>, error: Option<String>, complete: bool) {
    r.state = if complete {
        JobState::Complete
    } else {
        JobState::Failed
    };
    r.finished = Some(timestamp(SystemTime::now()));
    r.error = error;
    if let Some(report) = report {
        r.results = report.output.is_some();
        r.totals = outcome_counts(&report.totals());
        for a in &mut r.accounts {
            if let Some(rep) = report.accounts.get(&a.account) {
                a.totals = outcome_counts(&rep.summary);
                a.batches = rep.summary.batches.clone();
                a.pending = rep.pending.clone();
                a.stuck = rep.stuck.clone();
                a.failure = rep
                    .summary
                    .failure
                    .as_deref()
                    .map(|f| kvp_format::mask_digit_runs(f).into_owned());
            }
        }
        if r.error.is_none() && !complete {
            r.error = Some(
                "some transactions are not final (an account failed or a batch is Stuck): see accounts; fix the cause, then POST /v1/jobs/{id}/retry".into(),
            );
        }
    }
}

fn outcome_counts(s: &orchestrator::AccountSummary) -> BTreeMap<String, u64> {
    s.outcomes
        .iter()
        .map(|(o, n)| (o.as_str().to_owned(), *n))
        .collect()
}

/// Validates a whole input as `submit` would: per account its transactions, or every problem
/// (masked). Nothing is reserved.
fn check_input(
    path: &Path,
    format: Format,
    settings: &Settings,
) -> std::result::Result<BTreeMap<String, u64>, Vec<Problem>> {
    let problem = |line: u64, message: &str| Problem {
        line,
        message: kvp_format::mask_digit_runs(message).into_owned(),
    };
    let mut reader = match InputReader::open(path, Some(format)) {
        Ok(r) => r,
        Err(e) => return Err(vec![problem(0, &e.to_string())]),
    };
    let mut problems = Vec::new();
    let loaded = Job::load(
        &mut reader,
        settings,
        InvalidPolicy::RejectInput,
        &mut |p, _| problems.push(problem(p.line, &p.message)),
    );
    match loaded {
        Ok(job) if job.is_empty() => Err(vec![problem(0, "the input holds no records")]),
        Ok(job) => Ok(job
            .accounts()
            .iter()
            .zip(job.positions_by_account())
            .filter(|(_, p)| !p.is_empty())
            .map(|(a, p)| (a.clone(), p.len() as u64))
            .collect()),
        Err(orchestrator::Error::Input { line, message, .. }) => {
            problems.push(problem(line, &message));
            Err(problems)
        }
        Err(orchestrator::Error::Invalid { .. }) => Err(problems),
        Err(e) => Err(vec![problem(0, &e.to_string())]),
    }
}
