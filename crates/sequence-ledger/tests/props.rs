//! Property test: random sequences of operations on several accounts — reservations (some
//! racing for used numbers, some re-using references), every kind of transition, results,
//! floors and reopens — agree with a small in-memory model and keep the ledger's invariants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use kvp_format::SequenceNumber;
use proptest::prelude::*;
use sequence_ledger::{
    AccountId, BatchState, ConflictKind, Durability, Error, Ledger, LedgerOptions, NewBatch,
    NewBinding, Outcome, Reserve, StoredResult, Transition, Verdict,
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
    /// Apply transition kind `kind` to the `pick`-th batch of the account.
    Step {
        account: usize,
        pick: usize,
        kind: u8,
    },
    /// Store results for `lines` lines of the `pick`-th batch.
    Results {
        account: usize,
        pick: usize,
        lines: u64,
    },
    /// Raise or lower the floor around the current high water.
    Floor { account: usize, delta: i8 },
    /// Close and reopen the ledger.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3u32, prop::collection::vec(0..12u8, 1..4), 0..2u8)
            .prop_map(|(account, offset, refs, variant)| Op::Reserve { account, offset, refs, variant }),
        6 => (0..3usize, 0..4usize, prop_oneof![2 => 0..2u8, 3 => 0..8u8]).prop_map(|(account, pick, kind)| Op::Step { account, pick, kind }),
        2 => (0..3usize, 0..4usize, 0..3u64).prop_map(|(account, pick, lines)| Op::Results { account, pick, lines }),
        1 => (0..3usize, -2..3i8).prop_map(|(account, delta)| Op::Floor { account, delta }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Default, Clone)]
struct ModelAccount {
    high: u32,
    floor: u32,
    triggered: u32,
    /// seq -> (state, line count, verdict proves nothing processed)
    batches: BTreeMap<u32, (BatchState, u64, bool)>,
    /// ref -> (seq, digest variant)
    bindings: BTreeMap<String, (u32, u8)>,
}

impl ModelAccount {
    fn releases(&self, seq: u32) -> bool {
        self.batches
            .get(&seq)
            .is_some_and(|(s, _, nothing)| *s == BatchState::Abandoned || *nothing)
    }

    fn trigger_allowed(&self, seq: u32) -> bool {
        self.triggered < seq
            && self.batches.iter().all(|(n, (s, _, _))| {
                *n == seq
                    || !(matches!(s, BatchState::Triggered | BatchState::Stuck)
                        || (*n < seq
                            && matches!(s, BatchState::Reserved | BatchState::RequestUploaded)))
            })
    }
}

fn transition(kind: u8) -> Transition {
    match kind {
        0 => Transition::RequestUploaded,
        1 => Transition::Triggered,
        2 => Transition::Completed(Verdict::new(Outcome::Success, "Success")),
        3 => Transition::Completed(Verdict {
            processed_count: Some(0),
            ..Verdict::new(Outcome::GatewayError, "Error")
        }),
        4 => Transition::Stuck,
        5 => Transition::Cleaned,
        6 => Transition::Abandoned {
            reason: "prop".into(),
        },
        _ => Transition::Completed(Verdict {
            processed_count: Some(1),
            ..Verdict::new(Outcome::GatewayError, "Error")
        }),
    }
}

fn digest(r: &str, variant: u8) -> [u8; 32] {
    sequence_ledger::content_digest([("xRef", r), ("v", if variant == 0 { "0" } else { "1" })])
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
                refs.dedup();
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
                    sequence: SequenceNumber::new(n).unwrap(),
                    request_len: 1,
                    external_reference: None,
                    lines,
                };
                let got = ledger.reserve(a, new).unwrap();
                let bound: Vec<(&String, ConflictKind)> = refs
                    .iter()
                    .filter_map(|r| {
                        let (s, v) = *m.bindings.get(r)?;
                        (!m.releases(s)).then_some((
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
                            next: SequenceNumber::new(last + 1).unwrap()
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
                    m.batches
                        .insert(n, (BatchState::Reserved, refs.len() as u64, false));
                    for r in refs {
                        m.bindings.insert(r, (n, variant));
                    }
                }
            }
            Op::Step {
                account,
                pick,
                kind,
            } => {
                let (a, m) = (&accounts[account], &mut model[account]);
                let Some((&n, &(state, lines, _))) = m.batches.iter().nth(pick) else {
                    continue;
                };
                let t = transition(kind);
                let target = t.target();
                let nothing =
                    matches!(&t, Transition::Completed(v) if v.proves_nothing_processed());
                let legal = state.can_become(target);
                let ordered = target != BatchState::Triggered || m.trigger_allowed(n);
                match ledger.transition(a, SequenceNumber::new(n).unwrap(), t) {
                    Ok(rec) => {
                        assert!(legal && ordered, "{state} -> {target} accepted");
                        assert_eq!(rec.state, target);
                        m.batches.insert(n, (target, lines, nothing));
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
                let Some((&n, &(state, count, nothing))) = m.batches.iter().nth(pick) else {
                    continue;
                };
                let results = (0..lines)
                    .map(|index| StoredResult {
                        index,
                        fields: vec![("xResult".into(), "A".into())],
                    })
                    .collect();
                match ledger.store_results(a, SequenceNumber::new(n).unwrap(), results) {
                    Ok(rec) => {
                        assert!(matches!(state, BatchState::Completed(_)) && lines <= count);
                        assert_eq!(rec.state, BatchState::Collected);
                        m.batches.insert(n, (BatchState::Collected, count, nothing));
                    }
                    Err(Error::IllegalTransition { .. }) => {
                        assert!(!matches!(state, BatchState::Completed(_)))
                    }
                    Err(Error::BadResult { .. }) => assert!(lines > count),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Floor { account, delta } => {
                let (a, m) = (&accounts[account], &mut model[account]);
                let floor = (i64::from(m.high.max(m.floor)) + i64::from(delta)).max(1) as u32;
                ledger
                    .set_floor(a, SequenceNumber::new(floor).unwrap())
                    .unwrap();
                m.floor = floor;
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
        let stored: BTreeMap<u32, BatchState> = ledger
            .batches(a)
            .unwrap()
            .into_iter()
            .map(|b| (b.sequence.get(), b.state))
            .collect();
        let expected: BTreeMap<u32, BatchState> =
            m.batches.iter().map(|(n, (s, _, _))| (*n, *s)).collect();
        assert_eq!(stored, expected, "{a}");
        let next = ledger.next_sequence(a).unwrap().get();
        assert_eq!(next, m.high.max(m.floor) + 1, "{a}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_invariants(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
