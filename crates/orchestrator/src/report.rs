//! What a run did: per account, the outcomes counted, the approved amounts, the batches by
//! state, and which batches are still pending or Stuck.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kvp_format::SequenceNumber;
use sequence_ledger::BatchState;
use serde::Serialize;

use crate::outcome::AccountSummary;

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

/// The result of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Per account.
    pub accounts: BTreeMap<String, AccountReport>,
    /// Transactions covered.
    pub transactions: u64,
    /// The output written, if any.
    pub output: Option<PathBuf>,
}

impl RunReport {
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
