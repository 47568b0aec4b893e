//! Pure planning: which transactions go into which batch.
//!
//! Per account, input order is kept. Transactions already bound to a batch in the ledger
//! (recognised by account and ref) stay in that batch at their index; the rest are split into
//! new batches of at most `max_batch_lines`, numbered later by the ledger.

use std::collections::BTreeMap;

use kvp_format::SequenceNumber;
use sha2::{Digest, Sha256};

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

impl AccountPlan {
    /// How many transactions the plan covers.
    pub fn len(&self) -> usize {
        self.existing.values().map(Vec::len).sum::<usize>()
            + self.fresh.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether it covers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// Plans one account: `positions` in input order, `bound(pos)` the ledger's binding of each.
///
/// # Errors
/// A [`PlanConflict`] when two transactions claim the same index of a batch.
pub fn plan_account(
    positions: &[u32],
    max_batch_lines: usize,
    mut bound: impl FnMut(u32) -> Option<Bound>,
) -> Result<AccountPlan, PlanConflict> {
    let max = max_batch_lines.max(1);
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
        for (i, (index, pos)) in lines.iter().enumerate() {
            if *index != i as u64 {
                return Err(PlanConflict {
                    position: *pos,
                    message: format!(
                        "batch {sequence} line {index}: the input no longer has every transaction of that batch (or has one twice)"
                    ),
                });
            }
        }
        plan.existing
            .insert(sequence, lines.into_iter().map(|(_, p)| p).collect());
    }
    plan.fresh = fresh_positions.chunks(max).map(<[u32]>::to_vec).collect();
    Ok(plan)
}

/// The ledger's content digest of a transaction: SHA-256 of its canonical KVP with sensitive
/// values masked, so the ledger holds nothing that could be brute-forced into a card number.
pub fn content_digest(fields: &[(String, String)]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(256);
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            buf.push(b'&');
        }
        kvp_format::encode_pair(k, &kvp_format::mask_value(k, v), &mut buf);
    }
    Sha256::digest(&buf).into()
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
    fn a_gap_in_a_bound_batch_is_a_conflict() {
        let bound = |p: u32| {
            Some(Bound {
                sequence: seq(7),
                index: u64::from(p) * 2,
            })
        };
        let err = plan_account(&[0, 1], 10, bound).unwrap_err();
        assert_eq!(err.position, 1);
    }

    #[test]
    fn digest_covers_the_masked_fields() {
        let f = |card: &str| {
            vec![
                ("xCommand".to_owned(), "cc:sale".to_owned()),
                ("xCardNum".to_owned(), card.to_owned()),
            ]
        };
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
