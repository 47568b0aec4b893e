//! Pure planning: which transactions go into which batch.
//!
//! Per account, input order is kept. Transactions already bound to a batch in the ledger
//! (recognised by account and ref) stay in that batch at their index; the rest are split into
//! new batches of at most `max_batch_lines`, numbered later by the ledger. A new batch also
//! closes before a transaction whose [`ChunkItem::key`] it already holds (APS: one
//! `merchant_reference` per file, so a purchase and its capture go in different batches) and
//! before its estimated file size would pass [`ChunkLimits::max_bytes`] (APS: 50 MB).

use std::collections::{BTreeMap, HashSet};

use gateway_protocol::{ChunkItem, ChunkLimits};
use kvp_format::SequenceNumber;

/// Where a transaction already is, per the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The batch it is bound to.
    pub sequence: SequenceNumber,
    /// Its `xIndex` there.
    pub index: u64,
}

/// An account's work: batches to finish (already numbered) and new batches to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPlan {
    /// Batches the ledger already holds, by number: input positions in `xIndex` order.
    pub existing: BTreeMap<SequenceNumber, Vec<u32>>,
    /// New batches: input positions, `xIndex` = position in the inner list.
    pub fresh: Vec<Vec<u32>>,
}

#[cfg(test)]
impl AccountPlan {
    /// How many transactions the plan covers.
    pub fn len(&self) -> usize {
        self.existing.values().map(Vec::len).sum::<usize>()
            + self.fresh.iter().map(Vec::len).sum::<usize>()
    }
}

/// What a run does with transactions of a batch the gateway rejected (COMPLETE with an error
/// and nothing processed). Such a batch is final; sending its transactions again is an
/// operator's decision. Batches an operator abandoned (`paybatch resolve --abandon`) are
/// always re-submitted: that was the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RejectedBatches {
    /// Merge them from the ledger as `not_processed` with the gateway's `xError`; upload
    /// nothing (a plain re-run after success).
    #[default]
    Report,
    /// Put them into new batches under new numbers (`paybatch submit --resubmit-rejected`).
    Resubmit,
}

impl RejectedBatches {
    /// The ledger's view of which batches free their references.
    pub fn release(self) -> sequence_ledger::Release {
        match self {
            RejectedBatches::Report => sequence_ledger::Release::AbandonedOnly,
            RejectedBatches::Resubmit => sequence_ledger::Release::AbandonedOrRejected,
        }
    }
}

/// A bound transaction whose `xIndex` does not fit its batch (the input changed since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConflict {
    /// The input position.
    pub position: u32,
    /// What is wrong.
    pub message: String,
}

#[cfg(test)]
/// Plans one account: `positions` in input order, `bound(pos)` the ledger's binding of each.
/// New batches are split by line count only; [`plan_account_with`] also keeps keys unique
/// per batch and bounds the file size.
///
/// # Errors
/// A [`PlanConflict`] when two transactions claim the same index of a batch.
pub fn plan_account(
    positions: &[u32],
    max_batch_lines: usize,
    bound: impl FnMut(u32) -> Option<Bound>,
) -> Result<AccountPlan, PlanConflict> {
    plan_account_with(
        positions,
        ChunkLimits::lines(max_batch_lines),
        |_| ChunkItem::default(),
        bound,
    )
}

/// Plans one account like [`plan_account`], closing a new batch before a transaction whose
/// `item(pos).key` it already holds, or whose size would take it over `limits.max_bytes`.
/// Input order is kept across and within batches.
///
/// # Errors
/// A [`PlanConflict`] when two transactions claim the same index of a batch.
pub fn plan_account_with(
    positions: &[u32],
    limits: ChunkLimits,
    mut item: impl FnMut(u32) -> ChunkItem,
    mut bound: impl FnMut(u32) -> Option<Bound>,
) -> Result<AccountPlan, PlanConflict> {
    let max = limits.max_lines.max(1);
    let mut existing: BTreeMap<SequenceNumber, Vec<(u64, u32)>> = BTreeMap::new();
    let mut fresh_positions = Vec::new();
    for &pos in positions {
        match bound(pos) {
            Some(b) => existing.entry(b.sequence).or_default().push((b.index, pos)),
            None => fresh_positions.push(pos),
        }
    }
    let mut plan = AccountPlan::default();
    for (sequence, mut lines) in existing {
        lines.sort_unstable();
        // Lines may be missing: a batch the gateway rejected releases only the lines it
        // provably did not process, and a finished batch needs no payload. A batch that must
        // be uploaded again checks that the input holds all of its lines before it is
        // (`Worker::check_same_transactions`). Two transactions on one line cannot both be it.
        if let Some(pair) = lines.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(PlanConflict {
                position: pair[1].1,
                message: format!(
                    "batch {sequence} line {}: two transactions of the input are bound to it",
                    pair[0].0
                ),
            });
        }
        plan.existing
            .insert(sequence, lines.into_iter().map(|(_, p)| p).collect());
    }
    let mut chunk: Vec<u32> = Vec::new();
    let mut keys: HashSet<u64> = HashSet::new();
    let mut bytes = limits.overhead;
    for pos in fresh_positions {
        let it = item(pos);
        let repeated = it.key.is_some_and(|k| keys.contains(&k));
        let size = if it.size == 0 {
            0
        } else {
            it.size.saturating_add(limits.per_line)
        };
        let too_big = limits
            .max_bytes
            .is_some_and(|m| bytes.saturating_add(size) > m);
        if !chunk.is_empty() && (chunk.len() >= max || repeated || too_big) {
            plan.fresh.push(std::mem::take(&mut chunk));
            keys.clear();
            bytes = limits.overhead;
        }
        chunk.push(pos);
        keys.extend(it.key);
        bytes = bytes.saturating_add(size);
    }
    if !chunk.is_empty() {
        plan.fresh.push(chunk);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SequenceNumber {
        SequenceNumber::new(n).unwrap()
    }

    #[test]
    fn splits_in_input_order() {
        for (positions, max, fresh) in [
            (
                vec![0, 2, 5, 7, 9],
                2,
                vec![vec![0, 2], vec![5, 7], vec![9]],
            ),
            (vec![1, 3], 5, vec![vec![1, 3]]),
            (vec![], 5, vec![]),
            (vec![4, 5, 6], 1, vec![vec![4], vec![5], vec![6]]),
        ] {
            let plan = plan_account(&positions, max, |_| None).unwrap();
            assert_eq!(plan.fresh, fresh, "{positions:?} max {max}");
            assert!(plan.existing.is_empty());
        }
    }

    #[test]
    fn a_repeated_key_starts_a_new_batch_in_input_order() {
        // Positions 0 and 1: purchase and capture of order A; 3: capture of order B.
        let key = |p: u32| ChunkItem {
            key: Some(match p {
                0 | 1 | 4 => 10,
                _ => 20 + u64::from(p),
            }),
            size: 0,
        };
        for (positions, max, fresh) in [
            (vec![0, 1], 10, vec![vec![0], vec![1]]),
            (vec![0, 2, 1, 3], 10, vec![vec![0, 2], vec![1, 3]]),
            (vec![0, 1, 4], 10, vec![vec![0], vec![1], vec![4]]),
            (vec![0, 2, 3, 1], 2, vec![vec![0, 2], vec![3, 1]]),
            (vec![2, 3, 5], 10, vec![vec![2, 3, 5]]),
        ] {
            let plan =
                plan_account_with(&positions, ChunkLimits::lines(max), key, |_| None).unwrap();
            assert_eq!(plan.fresh, fresh, "{positions:?} max {max}");
        }
        // Without keys the same input stays in one batch.
        let plan = plan_account(&[0, 1], 10, |_| None).unwrap();
        assert_eq!(plan.fresh, vec![vec![0, 1]]);
    }

    #[test]
    fn a_batch_closes_before_its_file_passes_the_byte_limit() {
        let sized = |p: u32| ChunkItem {
            key: None,
            size: u64::from(p),
        };
        let limits = |max_bytes| ChunkLimits {
            max_lines: 100,
            max_bytes: Some(max_bytes),
            overhead: 10,
            per_line: 0,
        };
        for (positions, max_bytes, fresh) in [
            (vec![5, 5, 5], 20, vec![vec![5, 5], vec![5]]),
            (vec![5, 5, 5], 25, vec![vec![5, 5, 5]]),
            (vec![30, 1, 2], 20, vec![vec![30], vec![1, 2]]),
            (vec![4, 6, 9], 19, vec![vec![4], vec![6], vec![9]]),
        ] {
            let plan = plan_account_with(&positions, limits(max_bytes), sized, |_| None).unwrap();
            assert_eq!(plan.fresh, fresh, "{positions:?} limit {max_bytes}");
        }
    }

    #[test]
    fn bound_transactions_stay_in_their_batch() {
        let bound = |p: u32| match p {
            3 => Some(Bound {
                sequence: seq(7),
                index: 1,
            }),
            1 => Some(Bound {
                sequence: seq(7),
                index: 0,
            }),
            8 => Some(Bound {
                sequence: seq(9),
                index: 0,
            }),
            _ => None,
        };
        let plan = plan_account(&[1, 2, 3, 5, 8], 10, bound).unwrap();
        assert_eq!(plan.existing.get(&seq(7)), Some(&vec![1, 3]));
        assert_eq!(plan.existing.get(&seq(9)), Some(&vec![8]));
        assert_eq!(plan.fresh, vec![vec![2, 5]]);
        assert_eq!(plan.len(), 5);
    }

    #[test]
    fn gaps_in_a_bound_batch_are_kept_and_a_shared_line_is_a_conflict() {
        // Lines 0 and 2 of batch 7 (line 1 was released by a rejection).
        let bound = |p: u32| {
            Some(Bound {
                sequence: seq(7),
                index: u64::from(p) * 2,
            })
        };
        let plan = plan_account(&[1, 0], 10, bound).unwrap();
        assert_eq!(plan.existing.get(&seq(7)), Some(&vec![0, 1]));
        let same = |_| {
            Some(Bound {
                sequence: seq(7),
                index: 3,
            })
        };
        let err = plan_account(&[4, 5], 10, same).unwrap_err();
        assert_eq!(err.position, 5);
    }

    #[test]
    fn digest_covers_the_masked_fields() {
        fn f(card: &str) -> Vec<(&str, &str)> {
            vec![("xCommand", "cc:sale"), ("xCardNum", card)]
        }
        let content_digest =
            |fields: &[(&str, &str)]| sequence_ledger::content_digest(fields.iter().copied());
        assert_ne!(
            content_digest(&f("4111111111111111")),
            content_digest(&f("5111111111111111"))
        );
        assert_ne!(content_digest(&f("4111111111111111")), content_digest(&[]));
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every position lands in exactly one batch, batches respect the size limit, input
        /// order is kept inside each, and bound transactions keep their batch and index.
        #[test]
        fn plan_partitions_the_input(n in 0usize..300, max in 1usize..40, bound_upto in 0usize..300) {
            let positions: Vec<u32> = (0..n as u32).map(|p| p * 3).collect();
            let bound_count = bound_upto.min(n);
            let seq = SequenceNumber::new(5).unwrap();
            let plan = plan_account(&positions, max, |p| {
                let i = (p / 3) as usize;
                (i < bound_count).then_some(Bound { sequence: seq, index: i as u64 })
            }).unwrap();
            let mut seen: Vec<u32> = plan.existing.values().flatten().copied().collect();
            seen.extend(plan.fresh.iter().flatten());
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            prop_assert_eq!(&sorted, &positions);
            prop_assert!(plan.fresh.iter().all(|b| !b.is_empty() && b.len() <= max));
            prop_assert!(plan.fresh.iter().flatten().zip(plan.fresh.iter().flatten().skip(1)).all(|(a, b)| a < b));
            if bound_count > 0 {
                prop_assert_eq!(plan.existing.get(&seq).map(Vec::len), Some(bound_count));
            }
        }
    }
}
