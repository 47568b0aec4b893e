//! Shared by the crash and property tests: the invariants every ledger must keep, whatever
//! happened to the process that wrote it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};

use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, BatchState, Ledger};

/// Per account, the high-water mark: tests compare it across restarts (it never goes back).
pub type HighWater = BTreeMap<AccountId, Option<SequenceNumber>>;

/// Checks every structural invariant and returns each account's high-water mark.
///
/// - every batch number is at most the account's high-water mark, and the next number is above
///   every batch and the floor;
/// - every batch's transition stamps form a legal path from `Reserved` ending in its state;
/// - the in-flight list is exactly the batches that are not final;
/// - every binding points at an existing batch and a line inside it;
/// - results exist only for collected batches, for lines inside them; a batch whose results
///   were pruned is `Cleaned` and has none.
pub fn check_invariants(ledger: &Ledger) -> HighWater {
    let mut high = HighWater::new();
    let mut not_final = HashSet::new();
    for account in ledger.accounts().unwrap() {
        let info = ledger.account_info(&account).unwrap();
        let batches = ledger.batches(&account).unwrap();
        let mut previous = None;
        for b in &batches {
            assert_eq!(b.account, account);
            assert!(Some(b.sequence) > previous, "batches out of order");
            previous = Some(b.sequence);
            assert!(
                Some(b.sequence) <= info.high_water,
                "{account}: batch {} above high water {:?}",
                b.sequence,
                info.high_water
            );
            assert!(b.line_count > 0, "{account}/{}: empty batch", b.sequence);
            let stamps: Vec<BatchState> = b.transitions.iter().map(|s| s.state).collect();
            assert_eq!(
                stamps.first(),
                Some(&BatchState::Reserved),
                "{account}/{}: {stamps:?}",
                b.sequence
            );
            assert_eq!(
                stamps.last(),
                Some(&b.state),
                "{account}/{}: {stamps:?}",
                b.sequence
            );
            for w in stamps.windows(2) {
                assert!(
                    w[0].can_become(w[1]),
                    "{account}/{}: illegal path {stamps:?}",
                    b.sequence
                );
            }
            if !b.state.is_final() {
                not_final.insert((account.clone(), b.sequence));
            }
            let results = ledger.results(&account, b.sequence).unwrap();
            if !results.is_empty() {
                assert!(
                    matches!(b.state, BatchState::Collected | BatchState::Cleaned),
                    "{account}/{}: results in state {}",
                    b.sequence,
                    b.state
                );
            }
            if b.results_pruned_at.is_some() {
                assert_eq!(
                    b.state,
                    BatchState::Cleaned,
                    "{account}/{}: pruned",
                    b.sequence
                );
                assert!(results.is_empty(), "{account}/{}: pruned", b.sequence);
            }
            for r in results {
                assert!(r.index < b.line_count);
                assert!(r.fields.iter().all(|(k, _)| !kvp_format::is_sensitive(k)));
            }
        }
        match ledger.next_sequence(&account) {
            Ok(next) => {
                assert!(Some(next) > info.high_water && Some(next) > info.floor);
            }
            Err(sequence_ledger::Error::Exhausted { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        for (client_ref, binding) in ledger.bindings_of(&account).unwrap() {
            let batch = batches
                .iter()
                .find(|b| b.sequence == binding.sequence)
                .unwrap_or_else(|| {
                    panic!(
                        "{account}: {client_ref:?} bound to missing batch {}",
                        binding.sequence
                    )
                });
            assert!(
                binding.index < batch.line_count,
                "{account}: {client_ref:?} bound past the batch's lines"
            );
        }
        high.insert(account, info.high_water);
    }
    let flying: HashSet<_> = ledger
        .in_flight()
        .unwrap()
        .into_iter()
        .map(|(a, b)| (a, b.sequence))
        .collect();
    assert_eq!(
        flying, not_final,
        "in-flight index disagrees with the batches"
    );
    high
}

/// High-water marks never go backwards between two observations of the same ledger.
pub fn assert_not_backwards(before: &HighWater, after: &HighWater) {
    for (account, hw) in before {
        let now = after.get(account).copied().flatten();
        assert!(
            now >= *hw,
            "{account}: high water went from {hw:?} to {now:?}"
        );
    }
}
