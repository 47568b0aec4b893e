//! `Record`: one decoded line, ordered `(key, value)` pairs with repeated keys kept.

use std::fmt;

use crate::codec;
use crate::redact::{mask_key, mask_value};

/// One decoded KVP line: ordered `(key, value)` pairs, repeated keys kept in order.
///
/// Stored as one string buffer plus offsets (like rust-csv's `StringRecord`), so a reader
/// that refills the same `Record` with [`crate::Reader::read_record`] allocates nothing once
/// the buffers have grown to the longest line.
///
/// `Debug` and `Display` mask the values of [sensitive keys](crate::SENSITIVE_KEYS) and
/// card-like numbers in keys ([`crate::mask_key`]); use
/// [`Record::encode_into`] or [`Record::iter`] to get at the real values.
#[derive(Default)]
pub struct Record {
    buf: String,
    /// `(end of key, end of value)` in `buf`; each key starts where the previous value ends.
    ends: Vec<(usize, usize)>,
    /// Reused by the decoder for percent-decoded bytes before their UTF-8 check.
    pub(crate) scratch: Vec<u8>,
}

impl Clone for Record {
    fn clone(&self) -> Self {
        Record {
            buf: self.buf.clone(),
            ends: self.ends.clone(),
            scratch: Vec::new(),
        }
    }
}

/// Equal when the pairs are equal (buffers and capacity do not matter).
impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.buf == other.buf && self.ends == other.ends
    }
}

impl Eq for Record {}

impl std::hash::Hash for Record {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.buf.hash(state);
        self.ends.hash(state);
    }
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Record::default()
    }

    /// An empty record with room for `pairs` pairs of `bytes` bytes in total.
    pub fn with_capacity(pairs: usize, bytes: usize) -> Self {
        Record {
            buf: String::with_capacity(bytes),
            ends: Vec::with_capacity(pairs),
            scratch: Vec::new(),
        }
    }

    /// Appends a pair (a repeated key is kept, after the earlier one).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.push_str(&key.into(), &value.into());
    }

    /// Appends a pair without taking ownership (no allocation once the buffers have grown).
    #[inline]
    pub fn push_str(&mut self, key: &str, value: &str) {
        self.buf.push_str(key);
        let key_end = self.buf.len();
        self.buf.push_str(value);
        self.ends.push((key_end, self.buf.len()));
    }

    /// The value of the first pair with exactly this key.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Every value of this key, in order.
    pub fn get_all<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.iter().filter(move |(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether some pair has this key.
    pub fn contains_key(&self, key: &str) -> bool {
        self.iter().any(|(k, _)| k == key)
    }

    /// The pairs in order.
    #[inline]
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            record: self,
            next: 0,
            start: 0,
        }
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// The `i`-th pair.
    #[inline]
    pub fn pair(&self, i: usize) -> Option<(&str, &str)> {
        let (key_end, value_end) = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1].1 };
        Some((&self.buf[start..key_end], &self.buf[key_end..value_end]))
    }

    /// Number of pairs.
    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Removes every pair, keeping the buffers.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// The first key that occurs more than once, if any.
    pub fn repeated_key(&self) -> Option<&str> {
        // Called on every line read, so cheap in the common case (no repeat): a 256-bit
        // fingerprint set decides which keys are worth comparing in full; only a fingerprint
        // hit costs string comparisons. Lines with very many keys use a hash set.
        if self.len() > 64 {
            let mut seen = std::collections::HashSet::with_capacity(self.len());
            return self.keys().find(|k| !seen.insert(*k));
        }
        let mut seen = FingerprintSet::default();
        let mut key_start = 0;
        for (i, &(key_end, value_end)) in self.ends.iter().enumerate() {
            let key = &self.buf[key_start..key_end];
            if seen.insert(key.as_bytes()) && self.keys().take(i).any(|k| k == key) {
                return Some(key);
            }
            key_start = value_end;
        }
        None
    }

    /// Appends a pair whose parts are already in place: `buf` grew by the key, then by the
    /// value, and `key_end` is where the key stopped.
    pub(crate) fn commit_pair(&mut self, key_end: usize) {
        self.ends.push((key_end, self.buf.len()));
    }

    /// The text buffer, for the decoder to append to (followed by [`Record::commit_pair`]).
    pub(crate) fn buf_mut(&mut self) -> &mut String {
        &mut self.buf
    }

    /// Appends the canonical KVP encoding (no newline): every byte outside
    /// `A-Z a-z 0-9 - . _ ~` as `%XX` with upper-case hex, space as `%20`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        codec::encode_pairs(self.iter(), out);
    }

    /// The canonical KVP encoding as a string (no newline).
    pub fn to_line(&self) -> String {
        let mut out = Vec::with_capacity(self.buf.len() + self.len() * 2);
        self.encode_into(&mut out);
        // The encoder emits ASCII only.
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A copy whose sensitive values are replaced by their masked forms, and whose keys are
    /// shown as [`crate::mask_key`] shows them (a card number used as a key is masked).
    pub fn masked(&self) -> Record {
        self.iter()
            .map(|(k, v)| (mask_key(k), mask_value(k, v)))
            .collect()
    }
}

/// A number in `0..256` derived from a key's length and its last three bytes (which tell
/// the protocol's keys apart, `xCustom01`..`xCustom20` included), mixed so that different
/// keys rarely share it.
#[inline]
pub(crate) fn fingerprint(b: &[u8]) -> usize {
    let n = b.len();
    let at = |back: usize| u32::from(if n >= back { b[n - back] } else { 0 });
    let x = (n as u32 & 0xff) | at(1) << 8 | at(2) << 16 | at(3) << 24;
    (x.wrapping_mul(0x9E37_79B1) >> 24) as usize
}

/// A set of fingerprints: 256 bits.
#[derive(Default)]
pub(crate) struct FingerprintSet([u64; 4]);

impl FingerprintSet {
    /// Adds `key`'s fingerprint; `true` if it was already there.
    #[inline]
    pub(crate) fn insert(&mut self, key: &[u8]) -> bool {
        let f = fingerprint(key);
        let (word, bit) = (f >> 6, 1u64 << (f & 63));
        let seen = self.0[word] & bit != 0;
        self.0[word] |= bit;
        seen
    }
}

/// Iterator over a record's pairs.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    record: &'a Record,
    next: usize,
    start: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (key_end, value_end) = *self.record.ends.get(self.next)?;
        let buf = &self.record.buf;
        let item = (&buf[self.start..key_end], &buf[key_end..value_end]);
        self.next += 1;
        self.start = value_end;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.record.ends.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Record {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Record {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut r = Record::new();
        r.extend(iter);
        r
    }
}

impl From<Vec<(String, String)>> for Record {
    fn from(pairs: Vec<(String, String)>) -> Self {
        pairs.into_iter().collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for Record {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.push_str(k.as_ref(), v.as_ref());
        }
    }
}

/// `Record { xIndex: "0", xCardNum: "411111******1111", xCVV: "[REDACTED]" }`.
impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.iter() {
            m.entry(&mask_key(k), &mask_value(k, v));
        }
        m.finish()
    }
}

/// For people, not for the wire: `xIndex=0&xName=John Smith&xCVV=[REDACTED]` — decoded
/// text, sensitive values masked. Use [`Record::encode_into`] for the canonical encoding.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{}={}", mask_key(k), mask_value(k, v))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pairs: &[(&str, &str)]) -> Record {
        pairs.iter().copied().collect()
    }

    #[test]
    fn push_get_iter_clear() {
        let mut r = rec(&[("a", "1"), ("b", ""), ("", "x"), ("a", "2")]);
        assert_eq!(r.len(), 4);
        assert_eq!(r.get("a"), Some("1"));
        assert_eq!(r.get("b"), Some(""));
        assert_eq!(r.get(""), Some("x"));
        assert_eq!(r.get("c"), None);
        assert_eq!(r.get_all("a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(r.pair(3), Some(("a", "2")));
        assert_eq!(r.pair(4), None);
        assert_eq!(r.repeated_key(), Some("a"));
        let many: Record = (0..100).map(|i| (format!("k{i}"), "v")).collect();
        assert_eq!(many.repeated_key(), None);
        let mut many = many;
        many.push("k7", "again");
        assert_eq!(many.repeated_key(), Some("k7"));
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", ""), ("", "x"), ("a", "2")]
        );
        r.clear();
        assert!(r.is_empty());
        assert_eq!(r.iter().count(), 0);
        assert_eq!(r.repeated_key(), None);
    }

    #[test]
    fn encode_is_canonical() {
        let r = rec(&[("xName", "John Smith+Co"), ("x", "a&b=c~-._*é")]);
        assert_eq!(
            r.to_line(),
            "xName=John%20Smith%2BCo&x=a%26b%3Dc~-._%2A%C3%A9"
        );
    }

    #[test]
    fn formatting_masks_secrets() {
        let card = "4111111111111111";
        let r = rec(&[
            ("xCardNum", card),
            ("xCVV", "987"),
            ("xKey", "sk_live_secret"),
            ("xMagstripe", "%B4111111111111111^DOE^2512?"),
            ("xAccount", "000123456789"),
            ("xRouting", "021000021"),
            ("xName", "Jo"),
        ]);
        let shown = format!("{r:?} {r:#?} {r} {}", r.masked());
        for secret in [
            card,
            "987",
            "sk_live_secret",
            "4111111111111111^",
            "000123456789",
            "021000021",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("411111******1111"), "{shown}");
        assert!(shown.contains("xName=Jo"), "{shown}");

        // A card number (or track data) that ended up as a key, with or without a value.
        let r = rec(&[
            ("xIndex", "0"),
            (card, ""),
            ("x5500000000000004", "987"),
            ("xCustom01", "a"),
        ]);
        let shown = format!("{r:?} {r:#?} {r} {}", r.masked());
        for secret in [card, "5500000000000004", "987"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("411111******1111"), "{shown}");
        assert!(shown.contains("x550000******0004=[REDACTED]"), "{shown}");
        assert!(shown.contains("xCustom01=a"), "{shown}");
    }
}
