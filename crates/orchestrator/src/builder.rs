//! Building an [`Orchestrator`]: its settings, its ledger, protocols given by the program.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_protocol::GatewayProtocol;
use sequence_ledger::{LeaseOwner, Ledger, SequenceLedger, SledLedger};

use crate::clock::Clock;
use crate::driver::{Connector, Orchestrator};
use crate::error::{Error, Result};
use crate::plan::RejectedBatches;
use crate::progress::Progress;
use crate::settings::Settings;

/// Builds an [`Orchestrator`]: settings, a ledger, and (optionally) protocols per account;
/// accounts without one connect as their settings say ([`gateway_protocol::Account::connect`]).
#[derive(Debug)]
pub struct OrchestratorBuilder {
    settings: Arc<Settings>,
    ledger: Option<Arc<dyn SequenceLedger>>,
    protocols: HashMap<String, Arc<dyn GatewayProtocol>>,
    progress: Arc<Progress>,
    rejected: RejectedBatches,
    seed: Option<u64>,
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
            seed: None,
        }
    }

    /// Seeds the jitter of poll delays (for reproducible runs); unseeded by default.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// What to do with transactions of gateway-rejected batches (default: report them as
    /// `not_processed`, upload nothing; `Resubmit` is `--resubmit-rejected`).
    #[must_use]
    pub fn rejected_batches(mut self, rejected: RejectedBatches) -> Self {
        self.rejected = rejected;
        self
    }

    /// Uses this ledger instead of opening the sled ledger at `settings.ledger.path` (a
    /// shared PostgreSQL ledger, `ledger_postgres::PgLedger`; or a sled ledger opened by the
    /// caller, `sequence_ledger::SledLedger`).
    #[must_use]
    pub fn ledger(mut self, ledger: Arc<dyn SequenceLedger>) -> Self {
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

    /// Opens the sled ledger at `settings.ledger.path` if no ledger was given.
    ///
    /// # Errors
    /// [`Error::LedgerOpen`] when the ledger cannot be opened (e.g. in use by another
    /// process); [`Error::Io`] when its folder cannot be created; [`Error::Setting`] when the
    /// settings name a shared ledger (`[ledger] url`) and none was given (the engine does not
    /// connect to databases itself).
    pub fn build(self) -> Result<Orchestrator> {
        let ledger = match self.ledger {
            Some(l) => l,
            None if self.settings.ledger_url().is_some() => {
                return Err(Error::setting(
                    "ledger.url",
                    "the shared ledger is opened by the program (ledger_postgres::PgLedger) and given to OrchestratorBuilder::ledger",
                ));
            }
            None => {
                let path = &self.settings.ledger.path;
                if let Some(parent) = path.parent() {
                    kvp_format::owner_only::create_dir_all(parent)
                        .map_err(|e| Error::io(parent, e))?;
                }
                let sled = Ledger::open(path).map_err(|source| Error::LedgerOpen {
                    path: path.clone(),
                    source,
                })?;
                Arc::new(SledLedger::new(Arc::new(sled)))
            }
        };
        Ok(Orchestrator {
            connector: Connector::new(self.settings.clone(), self.protocols),
            settings: self.settings,
            ledger,
            owner: LeaseOwner::this_process(),
            progress: self.progress,
            rejected: self.rejected,
            clock: Clock::new(),
            account_locks: crate::account_locks::AccountLocks::default(),
            seed: self.seed.unwrap_or_else(|| fastrand::u64(..)),
        })
    }
}
