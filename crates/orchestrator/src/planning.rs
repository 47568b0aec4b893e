//! Planning an account's transactions against the ledger: where each ref is bound already
//! (it stays in that batch, at that line), and how the rest is cut into new batches.

use sequence_ledger::{AccountId, Ledger};

use crate::error::{Error, Result};
use crate::job::Job;
use crate::plan::{AccountPlan, Bound, RejectedBatches, content_digest};

/// Plans account `name`'s `positions` of `job` with at most `max` lines per new batch.
/// Blocking (ledger reads): run it off the async threads.
///
/// # Errors
/// [`Error::Conflict`] for a ref bound to other content or two transactions on one line of a
/// batch (naming the input line, the ref masked); ledger and spill read errors.
pub(crate) fn plan_with_ledger(
    ledger: &Ledger,
    job: &Job,
    account: &AccountId,
    name: &str,
    positions: &[u32],
    max: usize,
    rejected: RejectedBatches,
) -> Result<AccountPlan> {
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
                failure = Some(Error::Conflict {
                    account: name.to_owned(),
                    line: job.line_of(pos as usize),
                    message: format!(
                        "ref {:?} was submitted before ({existing}) with different content; refusing to send it again",
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
        return Err(e);
    }
    plan.map_err(|c| Error::Conflict {
        account: name.to_owned(),
        line: job.line_of(c.position as usize),
        message: c.message,
    })
}
