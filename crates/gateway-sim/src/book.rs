//! The transaction book of one account: what the gateway approved earlier, so that capture,
//! refund and void can refer to it, and the duplicate window.
//!
//! It is never saved on its own: it is rebuilt from the journal with [`Book::apply`], the same
//! function live processing uses after deciding each line, so replay and live state agree.

use std::collections::HashMap;

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

/// One account's approved transactions and duplicate window, keyed by the numeric `xRefNum`
/// and the 128-bit fingerprint (the journal's hex strings, parsed).
#[derive(Debug, Default)]
pub(crate) struct Book {
    txns: HashMap<u64, Txn>,
    recent: HashMap<u128, u64>,
    merchants: HashMap<String, u32>,
}

/// `xRefNum` as the book keys it; every number this simulator hands out parses.
fn ref_key(ref_num: &str) -> Option<u64> {
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
    pub(crate) fn is_duplicate(&self, fingerprint: &str, now_ms: u64) -> bool {
        fingerprint_key(fingerprint)
            .and_then(|k| self.recent.get(&k))
            .is_some_and(|&at| now_ms.saturating_sub(at) < DUPLICATE_WINDOW_MS)
    }

    /// Forgets duplicate fingerprints older than the window.
    pub(crate) fn prune(&mut self, now_ms: u64) {
        self.recent
            .retain(|_, at| now_ms.saturating_sub(*at) < DUPLICATE_WINDOW_MS);
    }

    /// Records the effect of a processed line. Declines and errors change nothing.
    pub(crate) fn apply(&mut self, e: &JournalEntry) {
        if !e.is_approved() {
            return;
        }
        let (Some(command), Some(key)) = (Command::parse(&e.command), ref_key(&e.ref_num)) else {
            return;
        };
        let amount = e.amount_cents.unwrap_or(0);
        let next_id = u32::try_from(self.merchants.len()).unwrap_or(u32::MAX);
        let merchant = *self
            .merchants
            .entry(e.merchant.clone().unwrap_or_default())
            .or_insert(next_id);
        if let Some(fp) = e.fingerprint.as_deref().and_then(fingerprint_key) {
            let at = self.recent.entry(fp).or_insert(e.at_unix_ms);
            *at = (*at).max(e.at_unix_ms);
        }
        let target = e.target_ref_num.as_deref().and_then(ref_key);
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
    fn duplicate_window_is_ten_minutes() {
        let mut b = Book::default();
        b.apply(&e("cc:sale", "A", "1", None, 100));
        let fp = format!("{:032x}", 1 + 0xabc);
        assert!(!b.is_duplicate("not-hex", 1_000));
        let cases: &[(u64, bool)] = &[
            (1_000, true),
            (1_000 + DUPLICATE_WINDOW_MS - 1, true),
            (1_000 + DUPLICATE_WINDOW_MS, false),
            (500, true), // clock went back: still inside
        ];
        for &(now, want) in cases {
            assert_eq!(b.is_duplicate(&fp, now), want, "{now}");
        }
        b.prune(1_000 + DUPLICATE_WINDOW_MS);
        assert!(!b.is_duplicate(&fp, 1_000));
    }
}
