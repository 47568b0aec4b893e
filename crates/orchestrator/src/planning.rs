//! Planning an account's transactions against the ledger: where each ref is bound already
//! (it stays in that batch, at that line), and how the rest is cut into new batches.

use gateway_protocol::ChunkItem;
use sequence_ledger::AccountView;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::plan::{AccountPlan, Bound, RejectedBatches};

/// Plans account `name`'s `positions` of `job` (all of its positions, in input order) with at
/// most `max` lines per new batch, in one sequential pass over its spilled records. Blocking
/// (ledger reads): run it off the async threads.
///
/// # Errors
/// [`Error::Conflict`] for a ref bound to other content or two transactions on one line of a
/// batch (naming the input line, the ref masked); ledger and spill read errors.
pub(crate) fn plan_with_ledger(
    ledger: &dyn AccountView,
    job: &Job,
    name: &str,
    positions: &[u32],
    max: usize,
    rejected: RejectedBatches,
) -> Result<AccountPlan> {
    let index = job
        .account_index(name)
        .ok_or_else(|| Error::setting("accounts", format!("no account {name:?} in the job")))?;
    // Per position, in input order: its binding and what its chunker said of it.
    let mut seen: Vec<(u32, Option<Bound>, ChunkItem, u64)> = Vec::with_capacity(positions.len());
    let mut records = job.records(index);
    while let Some(tx) = records.next()? {
        let bound = match ledger.check_reference_with(tx.reference, &tx.digest, rejected.release())
        {
            Ok(b) => b.map(|b| Bound {
                sequence: b.sequence,
                index: b.index,
            }),
            Err(sequence_ledger::Error::ContentConflict { existing, .. }) => {
                return Err(Error::Conflict {
                    account: name.to_owned(),
                    line: tx.line,
                    message: format!(
                        "ref {:?} was submitted before ({existing}) with different content; refusing to send it again",
                        kvp_format::mask_digit_runs(tx.reference)
                    ),
                });
            }
            Err(source) => {
                return Err(Error::Ledger {
                    account: name.to_owned(),
                    source,
                });
            }
        };
        seen.push((tx.pos, bound, tx.item, tx.line));
    }
    if seen.len() != positions.len() || seen.iter().zip(positions).any(|(s, p)| s.0 != *p) {
        return Err(Error::setting(
            "input",
            format!("the spilled records of account {name} do not match its positions"),
        ));
    }
    let at = |pos: u32| seen.binary_search_by_key(&pos, |s| s.0).ok();
    // The protocol's own chunk rules (APS: no merchant_reference twice in one file, the file
    // size limit) on top of the line limit.
    crate::plan::plan_account_with(
        positions,
        job.chunk_limits(index, max),
        |pos| {
            at(pos)
                .and_then(|i| seen.get(i))
                .map_or_else(ChunkItem::default, |s| s.2)
        },
        |pos| at(pos).and_then(|i| seen.get(i)).and_then(|s| s.1),
    )
    .map_err(|c| Error::Conflict {
        account: name.to_owned(),
        line: at(c.position).and_then(|i| seen.get(i)).map_or(0, |s| s.3),
        message: c.message,
    })
}
