//! The ledger's rules without its storage: what a reservation must hold, which steps are
//! legal, what a collected batch records, which batches a prune drops. Pure functions, used by
//! the sled [`crate::Ledger`] and by every other backend of [`crate::SequenceLedger`] (through
//! [`crate::backend`]), so that the rules are the same whatever stores the data.

use std::collections::HashSet;

use kvp_format::SequenceNumber;

use crate::error::{Error, Result};
use crate::{
    AccountId, AccountInfo, BatchRecord, BatchState, NewBatch, PerLineAnswer, Stamp, StoredResult,
    Transition,
};

/// Checks a new batch (lines, indexes, references) and builds its record and the blob of its
/// lines (references and content digests, `refs.rs`), as [`crate::Ledger::reserve`] stores
/// them. `now_ms` stamps the `Reserved` state.
///
/// # Errors
/// [`Error::EmptyBatch`], [`Error::BatchTooLarge`], [`Error::IndexMismatch`],
/// [`Error::DuplicateReference`].
pub fn reserved_record(
    account: &AccountId,
    new: &NewBatch,
    now_ms: u64,
) -> Result<(BatchRecord, Vec<u8>)> {
    let seq = new.sequence;
    if new.lines.is_empty() {
        return Err(Error::EmptyBatch {
            account: account.clone(),
            sequence: seq,
        });
    }
    // The in-memory index numbers lines with 32 bits.
    if u32::try_from(new.lines.len()).is_err() {
        return Err(Error::BatchTooLarge {
            account: account.clone(),
            sequence: seq,
            lines: new.lines.len() as u64,
        });
    }
    let mut seen = HashSet::with_capacity(new.lines.len());
    for (position, line) in (0u64..).zip(&new.lines) {
        if line.index != position {
            return Err(Error::IndexMismatch {
                account: account.clone(),
                sequence: seq,
                position,
                index: line.index,
            });
        }
        if !seen.insert(line.client_ref.as_str()) {
            return Err(Error::DuplicateReference {
                account: account.clone(),
                sequence: seq,
                client_ref: line.client_ref.clone(),
            });
        }
    }
    drop(seen);
    let record = BatchRecord {
        account: account.clone(),
        sequence: seq,
        state: BatchState::Reserved,
        content_sha256: crate::batch_digest(new.lines.iter().map(|l| &l.content_digest)),
        request_len: new.request_len,
        line_count: new.lines.len() as u64,
        transitions: vec![Stamp {
            state: BatchState::Reserved,
            at_unix_ms: now_ms,
        }],
        verdict: None,
        complete_fields: None,
        note: None,
        external_reference: new.external_reference.clone(),
        per_line_answer: None,
        gateway_batch_id: None,
        results_pruned_at: None,
    };
    let lines = crate::refs::encode(
        new.lines.len(),
        new.lines
            .iter()
            .map(|l| Some((l.client_ref.as_str(), &l.content_digest))),
    );
    Ok((record, lines))
}

/// Applies a step to a batch's record (the state, its stamp, and what the step carries: a
/// verdict, COMPLETE's fields, a gateway batch id, an operator's reason; `note` overrides the
/// note). Does not check the trigger order: see [`check_trigger_order`].
///
/// # Errors
/// [`Error::IllegalTransition`] when the state machine does not allow the step (nothing
/// changed).
pub fn apply_transition(
    record: &mut BatchRecord,
    to: Transition,
    note: Option<String>,
    now_ms: u64,
) -> Result<()> {
    let target = to.target();
    if !record.state.can_become(target) {
        return Err(Error::IllegalTransition {
            account: record.account.clone(),
            sequence: record.sequence,
            from: record.state,
            to: target,
        });
    }
    record.state = target;
    record.transitions.push(Stamp {
        state: target,
        at_unix_ms: now_ms,
    });
    match to {
        Transition::Completed(verdict) => record.verdict = Some(verdict),
        Transition::CompletedWith(verdict, fields) => {
            record.verdict = Some(verdict);
            // The fields are public, so a hand-built value may carry an echoed key.
            record.complete_fields = Some(fields.without_sensitive());
        }
        Transition::Abandoned { reason } | Transition::MarkedUnknown { reason } => {
            record.note = Some(without_card_numbers(reason));
        }
        Transition::RequestUploadedAs { gateway_batch_id } => {
            record.gateway_batch_id = Some(gateway_batch_id);
        }
        _ => {}
    }
    if let Some(note) = note {
        record.note = Some(without_card_numbers(note));
    }
    Ok(())
}

/// An operator's free text as the ledger keeps it: a card number typed into it is masked (the
/// note is shown by `ledger show`, `status` and the service).
fn without_card_numbers(text: String) -> String {
    match kvp_format::mask_card_numbers(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(masked) => masked,
    }
}

/// PROTOCOL.md §2 items 5 and 6 (see [`BatchState`]): whether batch `seq` may be triggered,
/// given the account's numbers, its batches that are not final (`open`: number and state),
/// and the state of the highest batch ever triggered (`triggered_state`, when that batch is
/// known).
///
/// # Errors
/// [`Error::OutOfOrder`] naming the batch in the way.
pub fn check_trigger_order(
    account: &AccountId,
    seq: SequenceNumber,
    info: &AccountInfo,
    open: &[(SequenceNumber, BatchState)],
    triggered_state: Option<BatchState>,
) -> Result<()> {
    let blocked = |blocking, blocking_state| Error::OutOfOrder {
        account: account.clone(),
        sequence: seq,
        blocking,
        blocking_state,
    };
    if let Some(t) = info.triggered
        && t >= seq
    {
        return Err(blocked(t, triggered_state.unwrap_or(BatchState::Triggered)));
    }
    for &(other, state) in open {
        let in_flight = matches!(state, BatchState::Triggered | BatchState::Stuck);
        let stranded =
            other < seq && matches!(state, BatchState::Reserved | BatchState::RequestUploaded);
        if other != seq && (in_flight || stranded) {
            return Err(blocked(other, state));
        }
    }
    Ok(())
}

/// What collecting a batch records: `completed` (a `Completed`/`CompletedWith` step, for a
/// batch still `Triggered` or `Stuck`) or nothing (the batch is `Completed` already), then
/// the results (checked: inside the batch, each line once, no sensitive key) and `Collected`.
///
/// # Errors
/// [`Error::IllegalTransition`]; [`Error::BadResult`]; [`Error::SensitiveField`] (the value
/// is never echoed).
pub fn collect_record(
    record: &mut BatchRecord,
    completed: Option<Transition>,
    results: &[StoredResult],
    answer: PerLineAnswer,
    now_ms: u64,
) -> Result<()> {
    let (account, seq) = (record.account.clone(), record.sequence);
    let illegal = |from, to| Error::IllegalTransition {
        account: account.clone(),
        sequence: seq,
        from,
        to,
    };
    if let Some(step) = completed {
        let target = step.target();
        if !matches!(target, BatchState::Completed(_)) || !record.state.can_become(target) {
            return Err(illegal(record.state, target));
        }
        apply_transition(record, step, None, now_ms)?;
    } else if !matches!(record.state, BatchState::Completed(_)) {
        return Err(illegal(record.state, BatchState::Collected));
    }
    check_results(&account, seq, record.line_count, results)?;
    record.state = BatchState::Collected;
    record.per_line_answer = Some(answer);
    record.transitions.push(Stamp {
        state: BatchState::Collected,
        at_unix_ms: now_ms,
    });
    Ok(())
}

/// The checks of [`crate::Ledger::store_results`], result by result in the caller's order:
/// index inside the batch, not given twice, no sensitive key. Names repeat line after line, so
/// a name equal to the previous line's at the same place (already checked) is not checked again.
fn check_results(
    account: &AccountId,
    seq: SequenceNumber,
    line_count: u64,
    results: &[StoredResult],
) -> Result<()> {
    // A bitmap of the lines given (8 MB at most), a set past it.
    let words = usize::try_from(line_count.div_ceil(64)).map_or(1 << 20, |w| w.min(1 << 20));
    let mut seen = vec![0u64; words];
    let mut seen_sparse = std::collections::HashSet::new();
    let mut previous: Vec<&str> = Vec::new();
    for r in results {
        let bad = |reason| Error::BadResult {
            account: account.clone(),
            sequence: seq,
            index: r.index,
            reason,
        };
        if r.index >= line_count {
            return Err(bad("beyond the batch's lines"));
        }
        let (word, bit) = ((r.index / 64) as usize, 1u64 << (r.index % 64));
        let fresh = match seen.get_mut(word) {
            Some(w) => {
                let fresh = *w & bit == 0;
                *w |= bit;
                fresh
            }
            None => seen_sparse.insert(r.index),
        };
        if !fresh {
            return Err(bad("given twice"));
        }
        for (position, (k, _)) in r.fields.iter().enumerate() {
            if previous.get(position) == Some(&k) {
                continue;
            }
            if kvp_format::is_sensitive(k) {
                return Err(Error::SensitiveField {
                    account: account.clone(),
                    sequence: seq,
                    index: r.index,
                    key: k.to_owned(),
                });
            }
            match previous.get_mut(position) {
                Some(p) => *p = k,
                None => previous.push(k),
            }
        }
    }
    Ok(())
}

/// What [`crate::Ledger::prune`] does with a batch that has stored results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PruneAction {
    /// Not old enough, or not `Cleaned`: nothing.
    Keep,
    /// Old enough, but rejected by the gateway: its results say which lines may be sent again.
    KeepRejected,
    /// Drop its results and stamp [`BatchRecord::results_pruned_at`].
    Drop,
}

/// Which [`PruneAction`] a batch takes for a prune of results collected before `cutoff_ms`
/// (Unix milliseconds): only `Cleaned` batches cleaned before it, and never a rejected one.
pub fn prune_action(record: &BatchRecord, cutoff_ms: u64) -> PruneAction {
    let cleaned_at = record
        .transitions
        .iter()
        .rev()
        .find(|s| s.state == BatchState::Cleaned)
        .map(|s| s.at_unix_ms);
    if record.state != BatchState::Cleaned || cleaned_at.is_none_or(|t| t >= cutoff_ms) {
        PruneAction::Keep
    } else if record.is_rejected() {
        PruneAction::KeepRejected
    } else {
        PruneAction::Drop
    }
}
