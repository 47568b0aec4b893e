//! The per-account worker: finishes the batches the ledger already holds, then creates,
//! uploads and triggers new ones, strictly one batch in flight.
//!
//! Order per batch (the safety argument, see docs/ARCHITECTURE.md): reserve (durable) →
//! REQUEST (atomic, verified) → mark → PROCESS → mark → poll → results stored (durable) →
//! delete RESPONSE/COMPLETE → mark Cleaned. `resume.rs` finishes batches the ledger holds,
//! `new_batch.rs` creates, uploads and triggers, `answer.rs` polls and collects.

mod answer;
mod new_batch;
mod resume;

use std::sync::{Arc, Mutex};

use gateway_protocol::GatewayProtocol;
use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, BatchState};
use tracing::Instrument;

use crate::account_ledger::AccountLedger;
use crate::clock::Clock;
use crate::driver::WaitMode;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::plan::AccountPlan;
use crate::progress::{Progress, StorageErrorKind};
use crate::settings::PollSettings;
use crate::shutdown::Shutdown;

/// Named crash points of the driver, in the order a batch reaches them
/// (`PAYBATCH_CRASH_AT=orchestrator.after_process`; see `sequence_ledger::crash_point`).
pub const CRASH_POINTS: &[&str] = &[
    "orchestrator.after_reserve",
    "orchestrator.after_request",
    "orchestrator.after_uploaded",
    "orchestrator.after_process",
    "orchestrator.polling",
    "orchestrator.after_results",
    "orchestrator.before_cleanup",
];

/// How one account's run ended. Which batch each transaction is in is not kept here: the
/// merge reads it from the ledger, which is the only record that survives every failure.
#[derive(Debug, Default)]
pub(crate) struct AccountRun {
    /// Why the account stopped early.
    pub failure: Option<Error>,
}

impl AccountRun {
    pub(crate) fn failed(error: Error) -> Self {
        Self {
            failure: Some(error),
        }
    }
}

/// Whether an account stopped because a step at its storage or gateway failed (not a
/// protocol rule, a setting or the ledger), and how that failure was classified.
fn storage_failure(e: &Error) -> Option<StorageErrorKind> {
    let (Error::Gateway(g) | Error::PollFailed { source: g, .. }) = e else {
        return None;
    };
    match g {
        gateway_protocol::Error::Storage { .. } | gateway_protocol::Error::Gateway { .. } => {
            Some(if g.is_transient() {
                StorageErrorKind::Transient
            } else {
                StorageErrorKind::Permanent
            })
        }
        _ => None,
    }
}

/// What a worker is given.
pub(crate) struct Worker {
    pub account: AccountId,
    pub ledger: AccountLedger,
    /// Whether the ledger is shared by several processes: batches another process left
    /// unfinished are then taken over (docs/ARCHITECTURE.md, takeover rules).
    pub shared_ledger: bool,
    pub protocol: Arc<dyn GatewayProtocol>,
    pub job: Arc<Job>,
    pub poll: PollSettings,
    pub mode: WaitMode,
    pub new_batches: bool,
    pub shutdown: Shutdown,
    pub progress: Arc<Progress>,
    pub clock: Clock,
    /// Spreads the accounts' polls so they do not come in lock-step.
    pub jitter: Mutex<fastrand::Rng>,
}

impl Worker {
    pub(crate) async fn run(self, plan: AccountPlan) -> AccountRun {
        let span = tracing::info_span!("account", account = %self.account);
        match self.run_plan(plan).instrument(span).await {
            Ok(()) => AccountRun::default(),
            Err(e) => {
                if let Some(kind) = storage_failure(&e) {
                    self.progress.storage_error(self.account.as_str(), kind);
                }
                AccountRun::failed(e)
            }
        }
    }

    async fn run_plan(&self, plan: AccountPlan) -> Result<()> {
        // Batches of this input the ledger already holds, oldest first. Without waiting
        // (UntilTriggered), the account's very last batch is left triggered for `collect`.
        let existing = plan.existing.len();
        let own: Vec<SequenceNumber> = plan.existing.keys().copied().collect();
        let no_fresh = plan.fresh.is_empty() || !self.new_batches;
        for (n, (sequence, positions)) in plan.existing.into_iter().enumerate() {
            let last = n + 1 == existing && no_fresh;
            let wait = !(last && self.mode == WaitMode::UntilTriggered);
            // A Stuck batch is unanswered: finishing a later one would put PROCESS_{n+1}
            // before COMPLETE_n (PROTOCOL.md §2 item 5). The later ones stay bound to their
            // numbers and are reported `unknown`.
            if self.finish_existing(sequence, &positions, wait).await? == BatchState::Stuck {
                return Err(self.stuck(sequence));
            }
        }
        // Batches of other inputs still in flight block new ones (one in flight per account).
        self.finish_others(&own).await?;
        if !self.new_batches {
            return Ok(());
        }
        let count = plan.fresh.len();
        for (n, positions) in plan.fresh.into_iter().enumerate() {
            let is_last = n + 1 == count;
            let sequence = self.submit_new(&positions, is_last).await?;
            // A Stuck batch blocks the rest of the account until an operator resolves it.
            if !is_last && self.ledger.batch(sequence).await?.state == BatchState::Stuck {
                return Err(self.stuck(sequence));
            }
        }
        Ok(())
    }

    fn stuck(&self, sequence: SequenceNumber) -> Error {
        Error::Stuck {
            account: self.account.to_string(),
            sequence,
        }
    }

    /// `d` ± up to 20 %, so many accounts do not poll in lock-step.
    fn jitter(&self, d: std::time::Duration) -> std::time::Duration {
        let factor = self
            .jitter
            .lock()
            .map_or(1.0, |mut rng| 0.8 + rng.f64() * 0.4);
        d.mul_f64(factor)
    }
}
