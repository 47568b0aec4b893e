//! Property test: random sequences of operations on several accounts — reservations (some
//! racing for used numbers, some re-using references), every kind of transition (durable or
//! deferred), results, the verdict and the results in one write, prunes, floors and reopens —
//! agree with a small in-memory model (numbers, states, which batch and line holds each
//! reference, which lines a finished batch gives back) and keep the ledger's invariants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use kvp_format::SequenceNumber;
use proptest::prelude::*;
use sequence_ledger::{
    AccountId, BatchOutcome, BatchState, Commit, ConflictKind, Durability, Error, Ledger,
    LedgerOptions, NewBatch, NewBinding, PerLineAnswer, Release, Reserve, StoredResult, Transition,
    Verdict,
};

#[derive(Debug, Clone)]
enum Op {
    /// Reserve `next + offset - 1` (offset 0 = an already-used number) with these references.
    Reserve {
        account: usize,
        offset: u32,
        refs: Vec<u8>,
        variant: u8,
    },
    /// Apply transition kind `kind` to the `pick`-th batch of the account, deferred or not.
    Step {
        account: usize,
        pick: usize,
        kind: u8,
        deferred: bool,
    },
    /// Store results for the first `lines` lines of the `pick`-th batch.
    Results {
        account: usize,
        pick: usize,
        lines: u64,
    },
    /// Record verdict kind `kind` and results for the first `lines` lines in one write.
    CompleteAndStore {
        account: usize,
        pick: usize,
        kind: u8,
        lines: u64,
    },
    /// Ask where a reference is, under both release rules: the `r`-th reference the model
    /// has bound for the account (wrapping), or `r{r}` while it has none.
    Check { account: usize, r: u8, variant: u8 },
    /// Drop the results of every batch cleaned so far.
    Prune,
    /// Raise or lower the floor around the current high water.
    Floor { account: usize, delta: i8 },
    /// Take the account's lowest unfinished batch one step further along the happy path
    /// (`hint` picks among the ways a verdict and results can come), so that long chains of
    /// legal steps are common: random steps alone rarely get past the trigger order.
    Advance {
        account: usize,
        hint: u8,
        deferred: bool,
    },
    /// Make deferred steps durable.
    Sync,
    /// Close and reopen the ledger.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, prop_oneof![1 => 0..2u32, 2 => Just(2u32)], prop::collection::vec(0..8u8, 1..4), 0..2u8)
            .prop_map(|(account, offset, refs, variant)| Op::Reserve { account, offset, refs, variant }),
        6 => (0..3usize, 0..4usize, prop_oneof![2 => 0..2u8, 3 => 0..8u8], any::<bool>())
            .prop_map(|(account, pick, kind, deferred)| Op::Step { account, pick, kind, deferred }),
        2 => (0..3usize, 0..4usize, 0..3u64).prop_map(|(account, pick, lines)| Op::Results { account, pick, lines }),
        3 => (0..3usize, 0..4usize, prop_oneof![1 => Just(2u8), 2 => Just(3u8), 1 => Just(7u8)], 0..3u64)
            .prop_map(|(account, pick, kind, lines)| Op::CompleteAndStore { account, pick, kind, lines }),
        3 => (0..3usize, 0..8u8, 0..2u8).prop_map(|(account, r, variant)| Op::Check { account, r, variant }),
        1 => Just(Op::Prune),
        1 => (0..3usize, -2..3i8).prop_map(|(account, delta)| Op::Floor { account, delta }),
        5 => (0..3usize, 0..4u8, any::<bool>()).prop_map(|(account, hint, deferred)| Op::Advance { account, hint, deferred }),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone)]
struct ModelBatch {
    state: BatchState,
    lines: u64,
    /// The verdict says nothing was processed (`xProcessedCount=0`).
    nothing: bool,
    /// Lines with a stored result that is an outcome.
    outcomes: BTreeSet<u64>,
    pruned: bool,
}

#[derive(Debug, Default, Clone)]
struct ModelAccount {
    high: u32,
    floor: u32,
    triggered: u32,
    batches: BTreeMap<u32, ModelBatch>,
    /// ref -> (seq, line, digest variant)
    bindings: BTreeMap<String, (u32, u64, u8)>,
}

impl ModelAccount {
    /// `BatchRecord::releases_line_under`, on the model.
    fn releases(&self, seq: u32, line: u64, release: Release) -> bool {
        self.batches.get(&seq).is_some_and(|b| {
            b.state == BatchState::Abandoned
                || (release == Release::AbandonedOrRejected
                    && b.nothing
                    && matches!(b.state, BatchState::Collected | BatchState::Cleaned)
                    && !b.outcomes.contains(&line))
        })
    }

    fn trigger_allowed(&self, seq: u32) -> bool {
        self.triggered < seq
            && self.batches.iter().all(|(n, b)| {
                *n == seq
                    || !(matches!(b.state, BatchState::Triggered | BatchState::Stuck)
                        || (*n < seq
                            && matches!(
                                b.state,
                                BatchState::Reserved | BatchState::RequestUploaded
                            )))
            })
    }
}

fn verdict(kind: u8) -> Verdict {
    match kind {
        3 => Verdict {
            processed_count: Some(0),
            ..Verdict::new(BatchOutcome::GatewayError, "Error")
        },
        7 => Verdict {
            processed_count: Some(1),
            ..Verdict::new(BatchOutcome::GatewayError, "Error")
        },
        _ => Verdict::new(BatchOutcome::Success, "Success"),
    }
}

fn transition(kind: u8) -> Transition {
    match kind {
        0 => Transition::RequestUploaded,
        1 => Transition::Triggered,
        2 | 3 | 7 => Transition::Completed(verdict(kind)),
        4 => Transition::Stuck,
        5 => Transition::Cleaned,
        _ => Transition::Abandoned {
            reason: "prop".into(),
        },
    }
}

fn digest(r: &str, variant: u8) -> [u8; 32] {
    sequence_ledger::content_digest([("xRef", r), ("v", if variant == 0 { "0" } else { "1" })])
}

fn results(lines: u64) -> Vec<StoredResult> {
    (0..lines)
        .map(|index| StoredResult {
            index,
            fields: kvp_format::Record::from(vec![("xResult".into(), "A".into())]),
        })
        .collect()
}

fn seq(n: u32) -> SequenceNumber {
    SequenceNumber::new(n).unwrap()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let open =
        || Ledger::open_with(&path, LedgerOptions::with_durability(Durability::FlushOnly)).unwrap();
    let mut ledger = open();
    let accounts: Vec<AccountId> = ["a", "b", "c"]
        .iter()
        .map(|s| AccountId::new(*s).unwrap())
        .collect();
    let mut model = vec![ModelAccount::default(); 3];
    let mut high = common::HighWater::new();
    for op in ops {
        let op = match op {
            Op::Advance {
                account,
                hint,
                deferred,
            } => {
                let m = &model[account];
                let Some((pick, b)) = m
                    .batches
                    .values()
                    .enumerate()
                    .find(|(_, b)| !b.state.is_final())
                else {
                    continue;
                };
                let step = |kind| Op::Step {
                    account,
                    pick,
                    kind,
                    deferred,
                };
                match (b.state, hint) {
                    (BatchState::Reserved, _) => step(0),
                    (BatchState::RequestUploaded, _) => step(1),
                    (BatchState::Triggered | BatchState::Stuck, 0) => step(2),
                    (BatchState::Triggered | BatchState::Stuck, 1) => step(3),
                    (BatchState::Triggered | BatchState::Stuck, h) => Op::CompleteAndStore {
                        account,
                        pick,
                        kind: if h == 2 { 3 } else { 2 },
                        lines: b.lines.min(1 + u64::from(h == 3)),
                    },
                    (BatchState::Completed(_), h) => Op::Results {
                        account,
                        pick,
                        lines: b.lines.min(u64::from(h)),
                    },
                    _ => step(5),
                }
            }
            other => other,
        };
        match op {
            Op::Reserve {
                account,
                offset,
                refs,
                variant,
            } => {
                let (a, m) = (&accounts[account], &mut model[account]);
                let last = m.high.max(m.floor);
                let Some(n) = (last + offset).checked_sub(1).filter(|n| *n > 0) else {
                    continue;
                };
                let mut refs: Vec<String> = refs.iter().map(|r| format!("r{r}")).collect();
                refs.sort();
                refs.dedup();
                let lines = (0u64..)
                    .zip(&refs)
                    .map(|(index, r)| NewBinding {
                        client_ref: r.clone(),
                        index,
                        content_digest: digest(r, variant),
                    })
                    .collect();
                let new = NewBatch {
                    sequence: seq(n),
                    request_len: 1,
                    external_reference: None,
                    lines,
                };
                let got = ledger.reserve(a, new).unwrap();
                let bound: Vec<(&String, ConflictKind)> = refs
                    .iter()
                    .filter_map(|r| {
                        let (s, line, v) = *m.bindings.get(r)?;
                        (!m.releases(s, line, Release::AbandonedOrRejected)).then_some((
                            r,
                            if v == variant {
                                ConflictKind::AlreadyBound
                            } else {
                                ConflictKind::ContentDiffers
                            },
                        ))
                    })
                    .collect();
                if n <= last {
                    assert_eq!(
                        got,
                        Reserve::LostRace {
                            next: seq(last + 1)
                        }
                    );
                } else if !bound.is_empty() {
                    let Reserve::Conflict { conflicts } = got else {
                        panic!("{got:?}")
                    };
                    let kinds: Vec<_> = conflicts.iter().map(|c| (&c.client_ref, c.kind)).collect();
                    assert_eq!(kinds, bound);
                } else {
                    let Reserve::Reserved(rec) = got else {
                        panic!("{got:?}")
                    };
                    assert_eq!(rec.sequence.get(), n);
                    m.high = n;
                    let batch = ModelBatch {
                        state: BatchState::Reserved,
                        lines: refs.len() as u64,
                        nothing: false,
                        outcomes: BTreeSet::new(),
                        pruned: false,
                    };
                    m.batches.insert(n, batch);
                    for (line, r) in (0u64..).zip(refs) {
                        m.bindings.insert(r, (n, line, variant));
                    }
                }
            }
            Op::Step {
                account,
                pick,
                kind,
                deferred,
            } => {
                let (a, m) = (&accounts[account], &mut model[account]);
                let Some((&n, b)) = m.batches.iter().nth(pick) else {
                    continue;
                };
                let state = b.state;
                let t = transition(kind);
                let target = t.target();
                let legal = state.can_become(target);
                let ordered = target != BatchState::Triggered || m.trigger_allowed(n);
                let commit = if deferred {
                    Commit::Deferred
                } else {
                    Commit::Durable
                };
                match ledger.transition_with(a, seq(n), t, commit) {
                    Ok(rec) => {
                        assert!(legal && ordered, "{state} -> {target} accepted");
                        assert_eq!(rec.state, target);
                        let b = m.batches.get_mut(&n).unwrap();
                        b.state = target;
                        if let BatchState::Completed(_) = target {
                            b.nothing = kind == 3;
                        }
                        if target == BatchState::Triggered {
                            m.triggered = n;
                        }
                    }
                    Err(Error::IllegalTransition { .. }) => {
                        assert!(!legal, "{state} -> {target} refused")
                    }
                    Err(Error::OutOfOrder { .. }) => {
                        assert!(legal && !ordered, "{state} -> {target} out of order?")
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Results {
                account,
                pick,
                lines,
            } => {
                let (a, m) = (&accounts[account], &mut model[account]);
                let Some((&n, b)) = m.batches.iter().nth(pick) else {
                    continue;
                };
                let (state, count) = (b.state, b.lines);
                match ledger.store_results(a, seq(n), results(lines)) {
                    Ok(rec) => {
                        assert!(matches!(state, BatchState::Completed(_)) && lines <= count);
                        assert_eq!(rec.state, BatchState::Collected);
                        let b = m.batches.get_mut(&n).unwrap();
                        b.state = BatchState::Collected;
                        b.outcomes = (0..lines).collect();
                    }
                    Err(Error::IllegalTransition { .. }) => {
                        assert!(!matches!(state, BatchState::Completed(_)))
                    }
                    Err(Error::BadResult { .. }) => assert!(lines > count),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::CompleteAndStore {
                account,
                pick,
                kind,
                lines,
            } => {
                let (a, m) = (&accounts[account], &mut model[account]);
                let Some((&n, b)) = m.batches.iter().nth(pick) else {
                    continue;
                };
                let (state, count) = (b.state, b.lines);
                let t = transition(kind);
                let legal = state.can_become(t.target());
                let answer = if lines == 0 && kind == 3 {
                    PerLineAnswer::Absent
                } else {
                    PerLineAnswer::Read
                };
                match ledger.complete_and_store(a, seq(n), t, results(lines), answer) {
                    Ok(rec) => {
                        assert!(legal && lines <= count, "{state}: accepted");
                        assert_eq!(rec.state, BatchState::Collected);
                        let b = m.batches.get_mut(&n).unwrap();
                        b.state = BatchState::Collected;
                        b.nothing = kind == 3;
                        b.outcomes = (0..lines).collect();
                    }
                    Err(Error::IllegalTransition { .. }) => assert!(!legal, "{state}: refused"),
                    Err(Error::BadResult { .. }) => assert!(legal && lines > count),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Check {
                account,
                r,
                variant,
            } => {
                let (a, m) = (&accounts[account], &model[account]);
                let r = match m.bindings.len() {
                    0 => format!("r{r}"),
                    n => m.bindings.keys().nth(usize::from(r) % n).unwrap().clone(),
                };
                let d = digest(&r, variant);
                for release in [Release::AbandonedOnly, Release::AbandonedOrRejected] {
                    let got = ledger.check_reference_with(a, &r, &d, release);
                    match m.bindings.get(&r) {
                        Some(&(s, line, _)) if m.releases(s, line, release) => {
                            assert!(matches!(got, Ok(None)), "{r} {release:?}: {got:?}")
                        }
                        None => assert!(matches!(got, Ok(None)), "{r}: {got:?}"),
                        Some(&(s, line, v)) if v == variant => {
                            let b = got.unwrap().unwrap();
                            assert_eq!((b.sequence.get(), b.index), (s, line));
                        }
                        Some(&(s, line, _)) => match got {
                            Err(Error::ContentConflict { existing, .. }) => {
                                assert_eq!((existing.sequence.get(), existing.index), (s, line))
                            }
                            other => panic!("{r}: {other:?}"),
                        },
                    }
                }
            }
            Op::Prune => {
                let pruned = ledger
                    .prune(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
                    .unwrap();
                let mut expected = 0;
                for m in &mut model {
                    for b in m.batches.values_mut() {
                        let rejected = b.nothing;
                        if b.state == BatchState::Cleaned && !b.pruned && !rejected {
                            // Only batches that had results are counted.
                            if !b.outcomes.is_empty() {
                                expected += 1;
                            }
                            b.pruned = true;
                        }
                    }
                }
                assert_eq!(pruned.batches, expected);
            }
            Op::Floor { account, delta } => {
                let (a, m) = (&accounts[account], &mut model[account]);
                let floor = (i64::from(m.high.max(m.floor)) + i64::from(delta)).max(1) as u32;
                ledger.set_floor(a, seq(floor)).unwrap();
                m.floor = floor;
            }
            Op::Advance { .. } => unreachable!("translated above"),
            Op::Sync => {
                ledger.sync().unwrap();
                assert!(!ledger.has_deferred_writes());
            }
            Op::Reopen => {
                drop(ledger);
                ledger = open();
            }
        }
        let now = common::check_invariants(&ledger);
        common::assert_not_backwards(&high, &now);
        high = now;
    }
    for (a, m) in accounts.iter().zip(&model) {
        let stored: BTreeMap<u32, (BatchState, bool)> = ledger
            .batches(a)
            .unwrap()
            .into_iter()
            .map(|b| (b.sequence.get(), (b.state, b.results_pruned_at.is_some())))
            .collect();
        let expected: BTreeMap<u32, (BatchState, bool)> = m
            .batches
            .iter()
            .map(|(n, b)| (*n, (b.state, b.pruned && !b.outcomes.is_empty())))
            .collect();
        assert_eq!(stored, expected, "{a}");
        let next = ledger.next_sequence(a).unwrap().get();
        assert_eq!(next, m.high.max(m.floor) + 1, "{a}");
        let bindings: BTreeMap<String, (u32, u64)> = ledger
            .bindings_of(a)
            .unwrap()
            .into_iter()
            .map(|(r, b)| (r, (b.sequence.get(), b.index)))
            .collect();
        let expected: BTreeMap<String, (u32, u64)> = m
            .bindings
            .iter()
            .map(|(r, (s, line, _))| (r.clone(), (*s, *line)))
            .collect();
        assert_eq!(bindings, expected, "{a}");
        for (n, b) in &m.batches {
            let with_outcome: BTreeSet<u64> = ledger
                .batch_results(a, seq(*n))
                .unwrap()
                .iter()
                .map(|l| l.index())
                .collect();
            let kept = if b.pruned && !b.nothing {
                BTreeSet::new()
            } else {
                b.outcomes.clone()
            };
            assert_eq!(with_outcome, kept, "{a} {n}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_invariants(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

/// The rule the random sequences reach least often, spelled out: a rejected batch keeps the
/// lines the gateway answered and gives back the others.
#[test]
fn a_rejected_batch_keeps_only_its_answered_lines() {
    let account = 0;
    run(vec![
        Op::Reserve {
            account,
            offset: 2,
            refs: vec![0, 1],
            variant: 0,
        },
        Op::Step {
            account,
            pick: 0,
            kind: 0,
            deferred: false,
        },
        Op::Step {
            account,
            pick: 0,
            kind: 1,
            deferred: true,
        },
        Op::CompleteAndStore {
            account,
            pick: 0,
            kind: 3,
            lines: 1,
        },
        Op::Check {
            account,
            r: 0,
            variant: 0,
        },
        Op::Check {
            account,
            r: 1,
            variant: 1,
        },
        Op::Reserve {
            account,
            offset: 2,
            refs: vec![0, 1],
            variant: 0,
        },
        Op::Reopen,
        Op::Check {
            account,
            r: 0,
            variant: 0,
        },
        Op::Check {
            account,
            r: 1,
            variant: 0,
        },
    ]);
}
