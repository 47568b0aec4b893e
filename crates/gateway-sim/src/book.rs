//! The transaction book of one account: what the gateway approved earlier, so that capture,
//! refund and void can refer to it, and the duplicate window.
//!
//! It is never saved on its own: it is rebuilt from the journal with [`Book::apply`], the same
//! function live processing uses after deciding each line, so replay and live state agree.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::command::Command;
use crate::journal::JournalEntry;

/// The duplicate window of the real-time API: 10 minutes.
pub(crate) const DUPLICATE_WINDOW_MS: u64 = 10 * 60 * 1000;

/// An approved transaction. Compact on purpose: a load run holds millions of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Txn {
    pub command: Command,
    /// Interned merchant id: references only work within one merchant.
    merchant: u32,
    /// Authorized / applied amount in cents (0 for `cc:save`).
    pub amount: u64,
    /// Captured cents (sale: the amount; authonly: after capture).
    pub captured: u64,
    /// Refunded cents (sum of refunds not voided).
    pub refunded: u64,
    pub voided: bool,
    /// For capture and refund: the transaction they apply to.
    pub parent: Option<u64>,
}

/// What the book needs of one processed line: the journal entry's facts, borrowed or parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BookEntry<'a> {
    pub approved: bool,
    /// `None` for a command the simulator does not know (never approved).
    pub command: Option<Command>,
    /// The line's `xRefNum`, numeric.
    pub ref_num: Option<u64>,
    /// The `xRefNum` the line referred to, if it is a number.
    pub target: Option<u64>,
    pub amount_cents: Option<u64>,
    /// The merchant's opaque id (empty when none).
    pub merchant: &'a str,
    pub fingerprint: Option<u128>,
    pub at_unix_ms: u64,
}

impl<'a> BookEntry<'a> {
    /// The facts of a journal entry (as replayed on start).
    pub(crate) fn of(e: &'a JournalEntry) -> BookEntry<'a> {
        BookEntry {
            approved: e.is_approved(),
            command: Command::parse(&e.command),
            ref_num: ref_key(&e.ref_num),
            target: e.target_ref_num.as_deref().and_then(ref_key),
            amount_cents: e.amount_cents,
            merchant: e.merchant.as_deref().unwrap_or_default(),
            fingerprint: e.fingerprint.as_deref().and_then(fingerprint_key),
            at_unix_ms: e.at_unix_ms,
        }
    }
}

/// A hasher for the book's integer keys (reference numbers, fingerprints): one multiply and
/// fold per word instead of SipHash. The keys come from this simulator (sequential numbers)
/// or a salted SHA-256, so there is nothing to defend against.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl IntHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        let m = u128::from(self.0 ^ word) * u128::from(0x9E37_79B9_7F4A_7C15_u64);
        // The high and low halves of the product, folded: every input bit reaches both ends.
        self.0 = (m >> 64) as u64 ^ m as u64;
    }
}

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Approved transactions by numeric `xRefNum`, in vectors sorted by it. The simulator hands
/// numbers out in increasing order (and the journal replays them in that order), so recording
/// one is an append — no hashing, no rehash of a table of millions — and a lookup is a binary
/// search. A number below the last one (only a hand-written journal has that) is inserted in
/// its place, and a number seen again replaces the earlier transaction, as a map would.
#[derive(Debug, Default)]
struct Txns {
    keys: Vec<u64>,
    txns: Vec<Txn>,
}

impl Txns {
    fn position(&self, key: u64) -> Result<usize, usize> {
        match self.keys.last() {
            Some(&last) if last < key => Err(self.keys.len()),
            _ => self.keys.binary_search(&key),
        }
    }

    fn get(&self, key: &u64) -> Option<&Txn> {
        self.position(*key).ok().and_then(|i| self.txns.get(i))
    }

    fn get_mut(&mut self, key: &u64) -> Option<&mut Txn> {
        self.position(*key).ok().and_then(|i| self.txns.get_mut(i))
    }

    fn insert(&mut self, key: u64, txn: Txn) {
        match self.position(key) {
            Ok(i) => {
                if let Some(slot) = self.txns.get_mut(i) {
                    *slot = txn;
                }
            }
            Err(i) => {
                self.keys.insert(i, key);
                self.txns.insert(i, txn);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// One account's approved transactions and duplicate window, keyed by the numeric `xRefNum`
/// and the 128-bit fingerprint (the journal's hex strings, parsed).
#[derive(Debug, Default)]
pub(crate) struct Book {
    txns: Txns,
    recent: IntMap<u128, u64>,
    /// Size of `recent` after the last [`Book::prune`] that scanned it.
    recent_after_prune: usize,
    merchants: HashMap<String, u32>,
}

/// `xRefNum` as the book keys it; every number this simulator hands out parses.
pub(crate) fn ref_key(ref_num: &str) -> Option<u64> {
    ref_num.parse().ok()
}

fn fingerprint_key(fp: &str) -> Option<u128> {
    u128::from_str_radix(fp, 16).ok()
}

impl Book {
    /// The approved transaction `ref_num` of `merchant`, if any.
    pub(crate) fn get(&self, ref_num: &str, merchant: &str) -> Option<&Txn> {
        let m = *self.merchants.get(merchant)?;
        self.txns
            .get(&ref_key(ref_num)?)
            .filter(|t| t.merchant == m)
    }

    /// What a refund of `ref_num` applies to: a capture's authorization, else the transaction.
    pub(crate) fn refund_root(&self, ref_num: &str, merchant: &str) -> Option<&Txn> {
        let t = self.get(ref_num, merchant)?;
        match (t.command, t.parent) {
            (Command::Capture, Some(p)) => self.txns.get(&p),
            _ => Some(t),
        }
    }

    /// True when `fingerprint` was approved within the 10 minutes before `now_ms`.
    pub(crate) fn is_duplicate(&self, fingerprint: u128, now_ms: u64) -> bool {
        self.recent
            .get(&fingerprint)
            .is_some_and(|&at| now_ms.saturating_sub(at) < DUPLICATE_WINDOW_MS)
    }

    /// Forgets duplicate fingerprints older than the window. Only memory: [`Book::is_duplicate`]
    /// checks the age itself. Called once per batch, it scans the window only when it has
    /// doubled since the last scan, so a busy account does not pay for the whole window on
    /// every batch.
    pub(crate) fn prune(&mut self, now_ms: u64) {
        if self.recent.len() < 2 * self.recent_after_prune.max(1024) {
            return;
        }
        self.prune_now(now_ms);
    }

    /// [`Book::prune`] without the doubling rule.
    pub(crate) fn prune_now(&mut self, now_ms: u64) {
        self.recent
            .retain(|_, at| now_ms.saturating_sub(*at) < DUPLICATE_WINDOW_MS);
        self.recent_after_prune = self.recent.len();
    }

    /// Records the effect of a journaled line (replay on start).
    pub(crate) fn apply(&mut self, e: &JournalEntry) {
        self.record(&BookEntry::of(e));
    }

    /// Records the effect of a processed line. Declines and errors change nothing.
    pub(crate) fn record(&mut self, e: &BookEntry<'_>) {
        if !e.approved {
            return;
        }
        let (Some(command), Some(key)) = (e.command, e.ref_num) else {
            return;
        };
        let amount = e.amount_cents.unwrap_or(0);
        let merchant = match self.merchants.get(e.merchant) {
            Some(&m) => m,
            None => {
                let next_id = u32::try_from(self.merchants.len()).unwrap_or(u32::MAX);
                self.merchants.insert(e.merchant.to_owned(), next_id);
                next_id
            }
        };
        if let Some(fp) = e.fingerprint {
            let at = self.recent.entry(fp).or_insert(e.at_unix_ms);
            *at = (*at).max(e.at_unix_ms);
        }
        let target = e.target;
        let mut parent = None;
        match command {
            Command::Sale
            | Command::CheckSale
            | Command::AuthOnly
            | Command::Credit
            | Command::Save => {}
            Command::Capture => {
                if let Some(t) = target.and_then(|r| self.txns.get_mut(&r)) {
                    t.captured = amount;
                    parent = target;
                }
            }
            Command::Refund => {
                let root = target.map(|r| match self.txns.get(&r) {
                    Some(t) if t.command == Command::Capture => t.parent.unwrap_or(r),
                    _ => r,
                });
                if let Some(t) = root.and_then(|r| self.txns.get_mut(&r)) {
                    t.refunded += amount;
                }
                parent = root;
            }
            Command::Void => {
                let undo = target.and_then(|r| self.txns.get_mut(&r)).map(|t| {
                    t.voided = true;
                    (t.command, t.parent, t.amount)
                });
                if let Some((kind, Some(p), amt)) = undo
                    && let Some(pt) = self.txns.get_mut(&p)
                {
                    match kind {
                        Command::Capture => pt.captured = pt.captured.saturating_sub(amt),
                        Command::Refund => pt.refunded = pt.refunded.saturating_sub(amt),
                        _ => {}
                    }
                }
            }
        }
        let captured = match command {
            Command::Sale | Command::CheckSale | Command::Capture => amount,
            _ => 0,
        };
        self.txns.insert(
            key,
            Txn {
                command,
                merchant,
                amount,
                captured,
                refunded: 0,
                voided: false,
                parent,
            },
        );
    }

    /// Number of approved transactions held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.txns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(cmd: &str, result: &str, rn: &str, target: Option<&str>, cents: u64) -> JournalEntry {
        JournalEntry {
            account: "a".into(),
            sequence: 1,
            index: 0,
            invoice: None,
            command: cmd.into(),
            result: result.into(),
            error_code: "00000".into(),
            ref_num: rn.into(),
            target_ref_num: target.map(Into::into),
            amount_cents: Some(cents),
            token: None,
            masked: None,
            merchant: Some("m".into()),
            fingerprint: Some(format!("{:032x}", rn.parse::<u128>().unwrap() + 0xabc)),
            at_unix_ms: 1_000,
        }
    }

    #[test]
    fn capture_refund_void_update_the_original() {
        let mut b = Book::default();
        b.apply(&e("cc:authonly", "A", "1", None, 1_000));
        b.apply(&e("cc:capture", "A", "2", Some("1"), 800));
        let get = |b: &Book, r: &str| b.get(r, "m").cloned().unwrap();
        assert_eq!(get(&b, "1").captured, 800);
        b.apply(&e("cc:refund", "A", "3", Some("2"), 300)); // via the capture
        assert_eq!(get(&b, "1").refunded, 300);
        assert_eq!(b.refund_root("2", "m").unwrap().amount, 1_000);
        assert!(b.get("1", "other").is_none());
        b.apply(&e("cc:void", "A", "4", Some("3"), 0));
        assert_eq!(get(&b, "1").refunded, 0);
        assert!(get(&b, "3").voided);
        b.apply(&e("cc:void", "A", "5", Some("2"), 0));
        assert_eq!(get(&b, "1").captured, 0);
        b.apply(&e("cc:sale", "D", "6", None, 500));
        assert!(b.get("6", "m").is_none());
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn numbers_out_of_order_or_repeated_behave_as_in_a_map() {
        let mut b = Book::default();
        for rn in ["10", "30", "20", "5", "30"] {
            b.apply(&e("cc:authonly", "A", rn, None, rn.parse().unwrap()));
        }
        assert_eq!(b.txns.keys, [5, 10, 20, 30]);
        for rn in ["5", "10", "20", "30"] {
            assert_eq!(b.get(rn, "m").unwrap().amount, rn.parse::<u64>().unwrap());
        }
        assert!(b.get("31", "m").is_none() && b.get("1", "m").is_none());
        b.apply(&e("cc:capture", "A", "40", Some("20"), 7));
        assert_eq!(b.get("20", "m").unwrap().captured, 7);
        assert_eq!(b.refund_root("40", "m").unwrap().amount, 20);
    }

    #[test]
    fn duplicate_window_is_ten_minutes() {
        let mut b = Book::default();
        b.apply(&e("cc:sale", "A", "1", None, 100));
        let fp = 1 + 0xabc;
        assert!(!b.is_duplicate(7, 1_000));
        let cases: &[(u64, bool)] = &[
            (1_000, true),
            (1_000 + DUPLICATE_WINDOW_MS - 1, true),
            (1_000 + DUPLICATE_WINDOW_MS, false),
            (500, true), // clock went back: still inside
        ];
        for &(now, want) in cases {
            assert_eq!(b.is_duplicate(fp, now), want, "{now}");
        }
        b.prune_now(1_000 + DUPLICATE_WINDOW_MS);
        assert!(!b.is_duplicate(fp, 1_000));
    }

    #[test]
    fn prune_scans_only_when_the_window_doubled() {
        let mut b = Book::default();
        let approve = |b: &mut Book, i: u64, at: u64| {
            let mut entry = e("cc:sale", "A", &i.to_string(), None, 100);
            entry.at_unix_ms = at;
            b.apply(&entry);
        };
        for i in 1..=1_500 {
            approve(&mut b, i, 0);
        }
        // 1,500 < 2 × 1,024: nothing scanned yet, even though all have expired.
        b.prune(DUPLICATE_WINDOW_MS);
        assert_eq!(b.recent.len(), 1_500);
        for i in 1_501..=2_100 {
            approve(&mut b, i, DUPLICATE_WINDOW_MS);
        }
        b.prune(DUPLICATE_WINDOW_MS);
        assert_eq!(b.recent.len(), 600);
        assert_eq!(b.recent_after_prune, 600);
        // Expired or not, the answer does not depend on pruning.
        assert!(!b.is_duplicate(1 + 0xabc, DUPLICATE_WINDOW_MS));
        assert!(b.is_duplicate(2_100 + 0xabc, DUPLICATE_WINDOW_MS));
    }

    #[test]
    fn int_hasher_spreads_sequential_keys() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IntHasher>::default();
        let mut top = std::collections::HashSet::new();
        let mut low = std::collections::HashSet::new();
        for k in 3_000_000_001u64..3_000_001_025 {
            let h = build.hash_one(k);
            top.insert(h >> 57);
            low.insert(h & 1023);
        }
        // hashbrown uses the top 7 bits as tags and the low bits as the bucket.
        assert_eq!(top.len(), 128);
        assert!(low.len() > 600, "{}", low.len());
    }
}
