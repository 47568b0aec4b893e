//! The fan-out shared by `submit` and `collect`: one task per account in a `JoinSet`, at most
//! `limits.max_concurrent_accounts` at once (a `Semaphore`); planning against the ledger and
//! connecting to the gateway happen inside the permit, so a run over thousands of accounts
//! works on a few at a time. A panicking account fails that account, not the run. Each task
//! first takes its account's lock ([`crate::account_locks`]), then a permit: two runs on one
//! orchestrator never work on one account at once, and a task waiting for its account holds
//! no permit (so the runs cannot wait on each other in a circle). Then the account's lease,
//! under the permit; while another process holds it the permit is given back between
//! attempts, so accounts held elsewhere do not keep this process's free accounts waiting.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sequence_ledger::{AccountId, LeaseAttempt, LeaseKeeper, LeaseOwner, SequenceLedger};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::account_ledger::AccountLedger;
use crate::driver::{Orchestrator, SubmitOptions};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::plan::AccountPlan;
use crate::planning::plan_with_ledger;
use crate::shutdown::Shutdown;
use crate::worker::{AccountRun, Worker};

/// What one account's task does.
#[derive(Debug)]
pub(crate) enum Work {
    /// This job's positions of the account: plan them against the ledger, then finish what
    /// is bound and (unless collecting) send the rest.
    Submit {
        /// Input positions, in input order.
        positions: Vec<u32>,
    },
    /// Only finish the batches the ledger holds (collect without the input).
    Collect,
}

impl Orchestrator {
    /// Runs `work` for every account and returns how each run ended.
    pub(crate) async fn run_accounts(
        &self,
        job: Arc<Job>,
        work: Vec<(String, Work)>,
        options: &SubmitOptions,
        shutdown: Shutdown,
    ) -> BTreeMap<String, AccountRun> {
        let semaphore = Arc::new(Semaphore::new(self.settings.limits.max_concurrent_accounts));
        let mut tasks: JoinSet<(String, AccountRun)> = JoinSet::new();
        let mut names: HashMap<tokio::task::Id, String> = HashMap::new();
        for (n, (name, work)) in work.into_iter().enumerate() {
            let task = AccountTask {
                name: name.clone(),
                work,
                orchestrator: self.share(),
                job: job.clone(),
                options: options.clone(),
                shutdown: shutdown.clone(),
                seed: self.seed.wrapping_add(n as u64),
            };
            let permits = semaphore.clone();
            self.progress.account_started();
            let progress = self.progress.clone();
            let locks = self.account_locks.clone();
            let handle = tasks.spawn(async move {
                // Held from planning until the worker returns: one run at a time per account.
                let _account = locks.lock(&task.name).await;
                let name = task.name.clone();
                let run = task.run(permits).await;
                progress.account_finished();
                (name, run)
            });
            names.insert(handle.id(), name);
        }
        let mut runs = BTreeMap::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((_, (name, run))) => {
                    runs.insert(name, run);
                }
                // What the account did is in the ledger, so the merge reports its
                // transactions honestly.
                Err(e) => {
                    let name = names.get(&e.id()).cloned().unwrap_or_default();
                    let error = Error::task(&name, &e);
                    tracing::error!(account = %name, error = %error, "account task failed");
                    runs.insert(name, AccountRun::failed(error));
                }
            }
        }
        // Steps recorded without an fsync of their own (Triggered, Stuck, Cleaned) become
        // durable now, so a run that ended leaves nothing to redo.
        if let Err(e) = self.ledger.sync().await {
            tracing::warn!(error = %e, "the ledger's last steps were not synced; the next run repeats them");
        }
        runs
    }

    /// What a task needs of the orchestrator, owned.
    fn share(&self) -> Shared {
        Shared {
            settings: self.settings.clone(),
            ledger: self.ledger.clone(),
            owner: self.owner.clone(),
            connector: self.connector.clone(),
            progress: self.progress.clone(),
            rejected: self.rejected,
            clock: self.clock,
        }
    }
}

/// The orchestrator's parts a task owns.
struct Shared {
    settings: Arc<crate::settings::Settings>,
    ledger: Arc<dyn SequenceLedger>,
    owner: LeaseOwner,
    connector: crate::driver::Connector,
    progress: Arc<crate::progress::Progress>,
    rejected: crate::plan::RejectedBatches,
    clock: crate::clock::Clock,
}

/// One account's task.
struct AccountTask {
    name: String,
    work: Work,
    orchestrator: Shared,
    job: Arc<Job>,
    options: SubmitOptions,
    shutdown: Shutdown,
    seed: u64,
}

impl AccountTask {
    /// Runs the account under one of `permits` (`max_concurrent_accounts`), taken with the
    /// account's lease and held until the worker returns.
    async fn run(self, permits: Arc<Semaphore>) -> AccountRun {
        let account = match AccountId::new(self.name.as_str()) {
            Ok(a) => a,
            Err(source) => {
                return AccountRun::failed(Error::Ledger {
                    account: self.name.clone(),
                    source,
                });
            }
        };
        // One process drives the account at a time: its lease, renewed in the background,
        // is taken before the account is planned and given up when its worker returns.
        let (keeper, _permit) = match self.take_lease(&account, &permits).await {
            Ok((k, permit)) => (Arc::new(k), permit),
            Err(e) => return AccountRun::failed(e),
        };
        let run = match self.prepare(&account, keeper.clone()).await {
            Ok((worker, plan)) => worker.run(plan).await,
            // A failure before the worker runs leaves every transaction where the ledger has
            // it: the merge reports those bound to a batch by that batch's state (`unknown`
            // while it may be in flight), and only the never-bound ones `not_processed`.
            Err(e) => AccountRun::failed(e),
        };
        match Arc::try_unwrap(keeper) {
            Ok(keeper) => {
                if let Err(e) = keeper.release().await {
                    tracing::warn!(account = %self.name, error = %e, "the account's lease was not released; it expires on its own");
                }
            }
            // A clone outlived the worker: dropping it stops the renewals, the lease expires.
            Err(keeper) => drop(keeper),
        }
        run
    }

    /// Waits until the account's lease is free (saying who holds it until when), then takes
    /// it and keeps it renewed. Each attempt is made under a permit, which is given back while
    /// another process holds the account: accounts held elsewhere do not keep this process's
    /// free accounts waiting.
    async fn take_lease(
        &self,
        account: &AccountId,
        permits: &Arc<Semaphore>,
    ) -> Result<(LeaseKeeper, Option<OwnedSemaphorePermit>)> {
        let shared = &self.orchestrator;
        let ttl = shared.settings.ledger.lease_ttl;
        let mut announced: Option<(String, u64)> = None;
        let _wait = crate::progress::LeaseWaitGuard {
            progress: &shared.progress,
            account: &self.name,
        };
        loop {
            // The semaphore is never closed (an error would only mean running without one).
            let permit = permits.clone().acquire_owned().await.ok();
            let attempt = shared
                .ledger
                .acquire_lease(account, &shared.owner, ttl)
                .await
                .map_err(Error::ledger(account))?;
            match attempt {
                LeaseAttempt::Acquired(lease) => {
                    return Ok((
                        LeaseKeeper::start(shared.ledger.clone(), lease, ttl),
                        permit,
                    ));
                }
                LeaseAttempt::Held(other) => {
                    drop(permit);
                    let holder = other.owner.to_string();
                    if announced.as_ref() != Some(&(holder.clone(), other.epoch)) {
                        tracing::info!(account = %self.name, %holder, until = %other.expires_text(), "waiting for the account's lease");
                        announced = Some((holder.clone(), other.epoch));
                    }
                    shared
                        .progress
                        .begin_lease_wait(&self.name, holder, other.expires_at);
                    // Until it expires (by our clock, roughly) or a tenth of a time to live,
                    // whichever comes first: a holder that releases early is seen soon.
                    let until = other
                        .expires_at
                        .duration_since(std::time::SystemTime::now())
                        .unwrap_or_default();
                    let pause = until
                        .min(ttl / 10)
                        .max(std::time::Duration::from_millis(50));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.shutdown.wait() => return Err(Error::Shutdown),
                    }
                }
            }
        }
    }

    /// Plans against the ledger and connects to the gateway.
    async fn prepare(
        &self,
        account: &AccountId,
        keeper: Arc<LeaseKeeper>,
    ) -> Result<(Worker, AccountPlan)> {
        let shared = &self.orchestrator;
        let account = account.clone();
        let plan = match &self.work {
            Work::Collect => AccountPlan::default(),
            Work::Submit { positions } => {
                let (ledger, job, id) = (shared.ledger.clone(), self.job.clone(), account.clone());
                let (name, positions) = (self.name.clone(), positions.clone());
                let max = shared.settings.max_batch_lines(&self.name);
                let rejected = shared.rejected;
                tokio::task::spawn_blocking(move || {
                    let view = ledger.blocking_view(&id).map_err(Error::ledger(&id))?;
                    plan_with_ledger(view.as_ref(), &job, &name, &positions, max, rejected)
                })
                .await
                .map_err(|e| Error::task(&self.name, &e))??
            }
        };
        let protocol = shared.connector.protocol_for(&self.name).await?;
        let worker = Worker {
            ledger: AccountLedger::new(
                shared.ledger.clone(),
                account.clone(),
                keeper,
                shared.settings.ledger.lease_ttl,
            ),
            shared_ledger: shared.ledger.is_shared(),
            account,
            protocol,
            job: self.job.clone(),
            poll: shared.settings.poll,
            mode: self.options.wait,
            new_batches: !self.options.collect_only && matches!(self.work, Work::Submit { .. }),
            shutdown: self.shutdown.clone(),
            progress: shared.progress.clone(),
            clock: shared.clock,
            jitter: Mutex::new(fastrand::Rng::with_seed(self.seed)),
        };
        Ok((worker, plan))
    }
}
