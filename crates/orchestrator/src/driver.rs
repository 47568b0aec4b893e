//! The engine's front: an [`Orchestrator`] submits a job (or collects what is in flight) for
//! every account at once and merges the results in input order.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use gateway_protocol::GatewayProtocol;
use sequence_ledger::{LeaseOwner, SequenceLedger};

use crate::builder::OrchestratorBuilder;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::input::Format;
use crate::job::Job;
use crate::merge::merge_blocking;
use crate::plan::RejectedBatches;
use crate::progress::Progress;
use crate::report::RunReport;
use crate::runner::Work;
use crate::settings::Settings;
use crate::shutdown::Shutdown;

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

/// The protocols of the accounts, connected on first use and shared by every task.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    settings: Arc<Settings>,
    protocols: Arc<tokio::sync::Mutex<HashMap<String, Arc<dyn GatewayProtocol>>>>,
}

impl Connector {
    pub(crate) fn new(
        settings: Arc<Settings>,
        given: HashMap<String, Arc<dyn GatewayProtocol>>,
    ) -> Self {
        Self {
            settings,
            protocols: Arc::new(tokio::sync::Mutex::new(given)),
        }
    }

    /// The account's protocol (one given to the builder, else its configured account
    /// connected on first use).
    ///
    /// # Errors
    /// [`Error::Setting`] for an unknown account; the account's connection errors (a secret
    /// whose variable is unset, unreachable storage).
    pub(crate) async fn protocol_for(&self, account: &str) -> Result<Arc<dyn GatewayProtocol>> {
        if let Some(p) = self.protocols.lock().await.get(account) {
            return Ok(p.clone());
        }
        // Connect without holding the lock: other accounts connect meanwhile.
        let protocol = self.settings.account(account)?.connect().await?;
        let mut protocols = self.protocols.lock().await;
        Ok(protocols
            .entry(account.to_owned())
            .or_insert(protocol)
            .clone())
    }
}

/// Runs submissions and collections (see the crate docs for the guarantees).
#[derive(Debug)]
pub struct Orchestrator {
    pub(crate) settings: Arc<Settings>,
    pub(crate) ledger: Arc<dyn SequenceLedger>,
    /// Who this orchestrator is when it takes an account's lease (host, pid, a random id).
    pub(crate) owner: LeaseOwner,
    pub(crate) connector: Connector,
    pub(crate) progress: Arc<Progress>,
    pub(crate) rejected: RejectedBatches,
    pub(crate) clock: Clock,
    pub(crate) seed: u64,
    /// One run at a time per account, across concurrent `submit`s and `collect`s.
    pub(crate) account_locks: crate::account_locks::AccountLocks,
}

impl Orchestrator {
    /// A builder.
    pub fn builder(settings: Arc<Settings>) -> OrchestratorBuilder {
        OrchestratorBuilder::new(settings)
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn SequenceLedger> {
        &self.ledger
    }

    /// Who this orchestrator is when it holds an account's lease.
    pub fn lease_owner(&self) -> &LeaseOwner {
        &self.owner
    }

    /// The progress counters.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Waits until no run of this orchestrator works on `account`, then holds it until the
    /// guard is dropped: runs that reach the account meanwhile wait (an operator's decision on
    /// one of its batches, taken while no worker moves it).
    pub async fn lock_account(&self, account: &str) -> crate::AccountGuard {
        self.account_locks.lock(account).await
    }

    /// Holds `account` if no run of this orchestrator works on it now ([`Orchestrator::lock_account`]
    /// without waiting).
    pub fn try_lock_account(&self, account: &str) -> Option<crate::AccountGuard> {
        self.account_locks.try_lock(account)
    }

    /// The account's protocol (one given to the builder, else its configured account
    /// connected on first use).
    ///
    /// # Errors
    /// [`Error::Setting`] for an unknown account; the account's connection errors (a secret
    /// whose variable is unset, unreachable storage).
    pub async fn protocol_for(&self, account: &str) -> Result<Arc<dyn GatewayProtocol>> {
        self.connector.protocol_for(account).await
    }

    /// Submits (or, with `collect_only`, collects) the job: see the crate docs for the order
    /// of steps. One failing account does not stop the others; its failure is in the report,
    /// and every transaction is reported as the ledger has it.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the signal fired; [`Error::Io`] writing the output; ledger
    /// errors that are not tied to one account.
    pub async fn submit(
        &self,
        job: Arc<Job>,
        options: &SubmitOptions,
        shutdown: Shutdown,
    ) -> Result<RunReport> {
        self.progress.set_transactions(job.len() as u64);
        let work = job
            .positions_by_account()
            .into_iter()
            .zip(job.accounts())
            .filter(|(positions, _)| !positions.is_empty())
            .map(|(positions, name)| (name.clone(), Work::Submit { positions }))
            .collect();
        let runs = self
            .run_accounts(job.clone(), work, options, shutdown.clone())
            .await;
        if shutdown.is_triggered() {
            return Err(Error::Shutdown);
        }
        let failures: BTreeMap<String, String> = runs
            .into_iter()
            .filter_map(|(name, run)| run.failure.map(|e| (name, e.to_string())))
            .collect();
        let (ledger, settings) = (self.ledger.clone(), self.settings.clone());
        let output = options.output.clone();
        let unbound = if options.collect_only {
            "not sent: collect does not create batches (run submit)"
        } else {
            "not sent"
        };
        tokio::task::spawn_blocking(move || {
            merge_blocking(
                ledger.as_ref(),
                &job,
                &settings,
                &failures,
                output.as_ref(),
                unbound,
            )
        })
        .await
        .map_err(|e| Error::task("*", &e))?
    }
}
