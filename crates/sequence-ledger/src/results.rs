//! A batch's per-line results as the ledger keeps them: one blob per batch, written once when
//! the batch is collected, read back in line order without an allocation per field.
//!
//! Layout (tree `batch_results`, one value per collected batch that has results):
//!
//! ```text
//! u8      layout tag (1)
//! varint  k, then k × (varint length + UTF-8): the field names, each once, in first-seen order
//! varint  m: the number of lines with a result, then per line, by increasing index:
//!   varint  index − (previous line's index + 1)   (the first line: its index)
//!   varint  field count × 2 + 1 when the names are the previous line's, in the same order
//!   per field: [varint name number, unless the names are the previous line's]
//!              varint length × 4 + kind, then the value:
//!                kind 0: `length` bytes of UTF-8
//!                kind 1: the last value stored for this name (length 0)
//!                kind 2: lowercase hex of 2 × `length` characters (not all digits), as
//!                        `length` bytes
//!                kind 3: a decimal string of `length` digits (2..=12), as a varint
//! ```
//!
//! A Sola RESPONSE repeats the same dozen names on every line, and many values (`xStatus`,
//! `xErrorCode`, `xBatch`, `xCardType`) from line to line; tokens are hex and reference
//! numbers digits. An approved card sale takes about 60 bytes here against 200 as text. Runs of
//! 13 digits or more stay text: a card-like number is never hidden from a search of the files
//! (the tests grep them for card numbers).

use std::collections::HashMap;
use std::fmt;

use crate::StoredResult;
use crate::codec::{Cursor, corrupt, put_varint};
use crate::error::Result;

const TAG: u8 = 1;
const RAW: u64 = 0;
const SAME: u64 = 1;
const HEX: u64 = 2;
const DIGITS: u64 = 3;
/// The longest digit string stored as a number: shorter than any card number.
const MAX_PACKED_DIGITS: usize = 12;
/// Marks a [`Span`] start in the decoded text rather than in the blob.
const IN_TEXT: u32 = 1 << 31;

/// Lowercase hex of even length, with at least one letter: a string of digits only is a
/// number (packed only when short, see [`MAX_PACKED_DIGITS`]).
fn is_lower_hex(v: &str) -> bool {
    v.len() >= 8
        && v.len().is_multiple_of(2)
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && v.bytes().any(|b| b.is_ascii_alphabetic())
}

fn hex_value(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b - b'0'
    } else {
        b - b'a' + 10
    }
}

/// Encodes results whose indexes are unique (checked by the caller), in index order.
pub(crate) fn encode(results: &[StoredResult]) -> Vec<u8> {
    let mut order: Vec<&StoredResult> = results.iter().collect();
    if !order.is_sorted_by_key(|r| r.index) {
        order.sort_unstable_by_key(|r| r.index);
    }
    let values: usize = results
        .iter()
        .flat_map(|r| r.fields.iter().map(|(_, v)| v.len() + 2))
        .sum();
    let mut names: Vec<&str> = Vec::new();
    let mut numbers: HashMap<&str, usize> = HashMap::new();
    let mut last_value: Vec<Option<&str>> = Vec::new();
    let mut previous: Option<&StoredResult> = None;
    let mut line_names: Vec<usize> = Vec::new();
    let mut next_index = 0u64;
    let mut data = Vec::with_capacity(values / 2 + 4 * results.len());
    for r in order {
        put_varint(&mut data, r.index - next_index);
        next_index = r.index + 1;
        let same_names = previous.is_some_and(|p| {
            p.fields.len() == r.fields.len()
                && p.fields.iter().zip(&r.fields).all(|(a, b)| a.0 == b.0)
        });
        put_varint(
            &mut data,
            (r.fields.len() as u64) << 1 | u64::from(same_names),
        );
        if !same_names {
            line_names.clear();
            for (k, _) in &r.fields {
                let n = *numbers.entry(k).or_insert_with(|| {
                    names.push(k);
                    last_value.push(None);
                    names.len() - 1
                });
                line_names.push(n);
            }
        }
        for ((_, v), &n) in r.fields.iter().zip(&line_names) {
            if !same_names {
                put_varint(&mut data, n as u64);
            }
            let last = last_value.get_mut(n);
            if last.as_ref().is_some_and(|l| **l == Some(v)) {
                put_varint(&mut data, SAME);
                continue;
            }
            if let Some(l) = last {
                *l = Some(v);
            }
            let digits =
                (2..=MAX_PACKED_DIGITS).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit());
            if digits {
                put_varint(&mut data, (v.len() as u64) << 2 | DIGITS);
                put_varint(&mut data, v.parse::<u64>().unwrap_or(0));
            } else if is_lower_hex(v) {
                put_varint(&mut data, (v.len() as u64 / 2) << 2 | HEX);
                for pair in v.as_bytes().chunks_exact(2) {
                    data.push(hex_value(pair[0]) << 4 | hex_value(pair[1]));
                }
            } else {
                put_varint(&mut data, (v.len() as u64) << 2 | RAW);
                data.extend_from_slice(v.as_bytes());
            }
        }
        previous = Some(r);
    }
    let names_len: usize = names.iter().map(|n| n.len() + 2).sum();
    let mut out = Vec::with_capacity(16 + names_len + data.len());
    out.push(TAG);
    put_varint(&mut out, names.len() as u64);
    for n in &names {
        put_varint(&mut out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
    }
    put_varint(&mut out, results.len() as u64);
    out.extend_from_slice(&data);
    out
}

/// Where one name or value is: in the blob, or (with [`IN_TEXT`]) in the decoded text.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// One field of one line: its name's number and its value.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: u32,
    value: Span,
}

/// The stored results of one batch, as [`crate::Ledger::batch_results`] returns them: decoded
/// and checked once when read (layout, UTF-8; packed values into one string), then read in
/// index order or by index without allocating. Empty for a batch that has none (not
/// collected yet, nothing in its answer, or [pruned](crate::BatchRecord::results_pruned_at)).
#[derive(Clone, Default)]
pub struct BatchResults {
    blob: bytes::Bytes,
    /// Values stored packed (hex, digits), as text.
    text: String,
    names: Vec<Span>,
    /// Whether each name is `xResult` (any case): the line has an outcome of its own.
    outcome_names: Vec<bool>,
    /// Each line's index, first field and field count.
    lines: Vec<(u64, u32, u32)>,
    fields: Vec<Field>,
}

impl fmt::Debug for BatchResults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchResults")
            .field("lines", &self.lines.len())
            .field("bytes", &self.blob.len())
            .finish()
    }
}

/// One line of a [`BatchResults`]: its index and its fields, borrowed from the stored blob.
#[derive(Clone, Copy)]
pub struct LineResult<'a> {
    results: &'a BatchResults,
    index: u64,
    fields: &'a [Field],
}

impl fmt::Debug for LineResult<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineResult")
            .field("index", &self.index)
            .field("fields", &self.fields().collect::<Vec<_>>())
            .finish()
    }
}

impl BatchResults {
    /// Checks a stored blob and indexes its lines.
    pub(crate) fn decode(blob: bytes::Bytes, what: impl Fn() -> String) -> Result<BatchResults> {
        let bad = |detail: &str| corrupt(what(), format!("batch results: {detail}"));
        let span = |start: usize, len: usize| -> Result<Span> {
            let start = u32::try_from(start)
                .ok()
                .filter(|s| s & IN_TEXT == 0)
                .ok_or_else(|| bad("too large"))?;
            let len = u32::try_from(len).map_err(|_| bad("too large"))?;
            Ok(Span { start, len })
        };
        let mut c = Cursor::new(&blob);
        if c.byte() != Some(TAG) {
            return Err(bad("bad header"));
        }
        let k = c.len().ok_or_else(|| bad("truncated"))?;
        let mut names = Vec::with_capacity(k.min(1024));
        let mut outcome_names = Vec::with_capacity(k.min(1024));
        for _ in 0..k {
            let name = c
                .str()
                .ok_or_else(|| bad("a name is truncated or not UTF-8"))?;
            names.push(span(c.position() - name.len(), name.len())?);
            outcome_names.push(name.eq_ignore_ascii_case(kvp_format::keys::RESULT));
        }
        let m = c.len().ok_or_else(|| bad("truncated"))?;
        let mut text = String::new();
        let mut lines = Vec::with_capacity(m.min(1 << 20));
        let mut fields: Vec<Field> = Vec::with_capacity(m.min(1 << 20) * 8);
        let mut last_value: Vec<Option<Span>> = vec![None; k];
        let mut previous: Option<(usize, usize)> = None;
        let mut next_index = 0u64;
        for _ in 0..m {
            let delta = c.varint().ok_or_else(|| bad("truncated"))?;
            let index = next_index
                .checked_add(delta)
                .ok_or_else(|| bad("index too large"))?;
            next_index = index.checked_add(1).ok_or_else(|| bad("index too large"))?;
            let shape = c.varint().ok_or_else(|| bad("truncated"))?;
            let count = usize::try_from(shape >> 1).map_err(|_| bad("too many fields"))?;
            let same_names = shape & 1 == 1;
            let first = fields.len();
            if same_names && previous.is_none_or(|(_, n)| n != count) {
                return Err(bad("names of a previous line that does not match"));
            }
            for f in 0..count {
                let name = if same_names {
                    let (prev_first, _) = previous.unwrap_or((0, 0));
                    fields
                        .get(prev_first + f)
                        .map(|p| p.name)
                        .unwrap_or(u32::MAX)
                } else {
                    u32::try_from(c.len().ok_or_else(|| bad("truncated"))?)
                        .map_err(|_| bad("unknown field name"))?
                };
                let slot = last_value
                    .get_mut(name as usize)
                    .ok_or_else(|| bad("unknown field name"))?;
                let tag = c.varint().ok_or_else(|| bad("truncated"))?;
                let len = usize::try_from(tag >> 2).map_err(|_| bad("too large"))?;
                let value = match tag & 3 {
                    RAW => {
                        let v = c.take(len).ok_or_else(|| bad("truncated"))?;
                        std::str::from_utf8(v).map_err(|_| bad("a value is not UTF-8"))?;
                        span(c.position() - len, len)?
                    }
                    SAME => {
                        if len != 0 {
                            return Err(bad("a repeated value with a length"));
                        }
                        (*slot).ok_or_else(|| bad("a repeated value never given"))?
                    }
                    HEX => {
                        let start = text.len();
                        for b in c.take(len).ok_or_else(|| bad("truncated"))? {
                            text.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
                            text.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
                        }
                        let mut s = span(start, 2 * len)?;
                        s.start |= IN_TEXT;
                        s
                    }
                    _ => {
                        let v = c.varint().ok_or_else(|| bad("truncated"))?;
                        let start = text.len();
                        use std::fmt::Write as _;
                        let _ = write!(text, "{v:0len$}");
                        if !(2..=MAX_PACKED_DIGITS).contains(&len) || text.len() - start != len {
                            return Err(bad("a number does not fit its digits"));
                        }
                        let mut s = span(start, len)?;
                        s.start |= IN_TEXT;
                        s
                    }
                };
                *slot = Some(value);
                fields.push(Field { name, value });
            }
            lines.push((
                index,
                u32::try_from(first).map_err(|_| bad("too large"))?,
                u32::try_from(count).map_err(|_| bad("too large"))?,
            ));
            previous = Some((first, count));
        }
        if !c.is_done() {
            return Err(bad("trailing bytes"));
        }
        if u32::try_from(text.len()).map_or(true, |l| l & IN_TEXT != 0) {
            return Err(bad("too large"));
        }
        Ok(BatchResults {
            blob,
            text,
            names,
            outcome_names,
            lines,
            fields,
        })
    }

    /// The stored results blob itself, as the ledger keeps it (to copy it to another backend
    /// unchanged; `sequence_ledger::backend` decodes it).
    pub fn as_bytes(&self) -> &[u8] {
        &self.blob
    }

    /// The number of lines with a result.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when no line has a result.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn line(&self, &(index, first, count): &(u64, u32, u32)) -> LineResult<'_> {
        let fields = self
            .fields
            .get(first as usize..first as usize + count as usize)
            .unwrap_or_default();
        LineResult {
            results: self,
            index,
            fields,
        }
    }

    /// Every line's result, by index.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = LineResult<'_>> + '_ {
        self.lines.iter().map(move |l| self.line(l))
    }

    /// The result of line `index`, if it has one (a binary search).
    pub fn get(&self, index: u64) -> Option<LineResult<'_>> {
        let i = self.lines.binary_search_by_key(&index, |l| l.0).ok()?;
        Some(self.line(self.lines.get(i)?))
    }

    /// The indexes of the lines whose result is an outcome ([`StoredResult::is_outcome`]).
    pub fn indexes_with_outcome(&self) -> Vec<u64> {
        self.iter()
            .filter(|l| l.is_outcome())
            .map(|l| l.index())
            .collect()
    }

    /// The text of a span (checked by `decode`).
    fn str(&self, span: Span) -> &str {
        if span.start & IN_TEXT != 0 {
            let start = (span.start & !IN_TEXT) as usize;
            self.text.get(start..start + span.len as usize)
        } else {
            Cursor::at(&self.blob, span.start as usize)
                .take(span.len as usize)
                .and_then(|b| std::str::from_utf8(b).ok())
        }
        .unwrap_or_default()
    }
}

impl<'a> LineResult<'a> {
    /// The line's `xIndex`.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The fields in the gateway's order, borrowed from the stored blob.
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            results: self.results,
            fields: self.fields.iter(),
        }
    }

    /// The first field named `key` (ASCII case-insensitive, as the protocol's keys are read).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.fields()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// Whether the result is the gateway's outcome for the line ([`StoredResult::is_outcome`]:
    /// it carries `xResult`).
    pub fn is_outcome(&self) -> bool {
        self.fields.iter().any(|f| {
            self.results
                .outcome_names
                .get(f.name as usize)
                .copied()
                .unwrap_or(false)
        })
    }

    /// An owned copy.
    pub fn to_stored(&self) -> StoredResult {
        StoredResult {
            index: self.index,
            fields: self
                .fields()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

/// The fields of a [`LineResult`], as `(name, value)`.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    results: &'a BatchResults,
    fields: std::slice::Iter<'a, Field>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let f = self.fields.next()?;
        let name = self
            .results
            .names
            .get(f.name as usize)
            .map_or("", |s| self.results.str(*s));
        Some((name, self.results.str(f.value)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.fields.size_hint()
    }
}

impl ExactSizeIterator for Fields<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(index: u64, fields: &[(&str, &str)]) -> StoredResult {
        StoredResult {
            index,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn decode(blob: Vec<u8>) -> Result<BatchResults> {
        BatchResults::decode(bytes::Bytes::from(blob), || "x".into())
    }

    #[test]
    fn results_round_trip_in_index_order() {
        let input = vec![
            result(
                4,
                &[("xResult", "D"), ("xError", "Declined"), ("xRefNum", "9")],
            ),
            result(0, &[("xResult", "A"), ("xError", ""), ("xToken", "t0")]),
            result(2, &[]),
            result(3, &[("xError", "validation: bad amount")]),
            result(
                1,
                &[
                    ("xToken", "t1"),
                    ("xResult", "A"),
                    ("xNote", "caf\u{e9} & =%"),
                ],
            ),
            result(
                u64::from(u32::MAX) + 7,
                &[("XRESULT", "E"), ("xResult", "A")],
            ),
            result(
                u64::from(u32::MAX) + 8,
                &[("XRESULT", "E"), ("xResult", "A")],
            ),
        ];
        let read = decode(encode(&input)).unwrap();
        let mut expected = input.clone();
        expected.sort_by_key(|r| r.index);
        let got: Vec<StoredResult> = read.iter().map(|l| l.to_stored()).collect();
        assert_eq!(got, expected);
        assert_eq!(read.len(), 7);
        for r in &expected {
            let line = read.get(r.index).unwrap();
            assert_eq!(line.to_stored(), *r);
            assert_eq!(
                line.is_outcome(),
                StoredResult::is_outcome(&r.fields),
                "{r:?}"
            );
        }
        assert!(read.get(5).is_none());
        assert_eq!(read.get(4).unwrap().get("xerror"), Some("Declined"));
        assert_eq!(read.get(4).unwrap().get("xToken"), None);
        let big = u64::from(u32::MAX);
        assert_eq!(read.indexes_with_outcome(), [0, 1, 4, big + 7, big + 8]);
        let empty = decode(encode(&[])).unwrap();
        assert!(empty.is_empty() && empty.iter().next().is_none());
        assert!(BatchResults::default().get(0).is_none());
    }

    #[test]
    fn names_are_stored_once() {
        let input: Vec<StoredResult> = (0..100)
            .map(|i| {
                result(
                    i,
                    &[("xMaskedCardNumber", "4xxxxxxxxxxx1111"), ("xResult", "A")],
                )
            })
            .collect();
        let blob = encode(&input);
        let text = String::from_utf8_lossy(&blob);
        assert_eq!(text.matches("xMaskedCardNumber").count(), 1);
        // Index, count and a "same as before" per field, after the first line.
        assert!(blob.len() < 100 * 4 + 60, "{} bytes", blob.len());
    }

    #[test]
    fn packed_values_round_trip() {
        #[rustfmt::skip]
        let values = [
            "", "0", "00", "00000", "0123456789", "9999999999999999999", "18446744073709551615",
            "99999999999999999999", "12a", "deadbeef", "DEADBEEF", "deadbee", "0123456789abcdef0123456789abcdef",
            "caf\u{e9}", "4xxxxxxxxxxx1111", " 12", "-12", "1.00",
        ];
        let input: Vec<StoredResult> = (0..values.len() as u64 * 2)
            .map(|i| {
                let v = values[(i / 2) as usize];
                result(i * 3, &[("xA", v), ("xB", v), ("xA", "again"), ("xC", v)])
            })
            .collect();
        let read = decode(encode(&input)).unwrap();
        let got: Vec<StoredResult> = read.iter().map(|l| l.to_stored()).collect();
        assert_eq!(got, input);
    }

    #[test]
    fn card_like_digit_runs_stay_text() {
        let card = "4111111111111111";
        let blob = encode(&[result(
            0,
            &[("xCustom01", card), ("xRefNum", "123456789012")],
        )]);
        assert!(blob.windows(card.len()).any(|w| w == card.as_bytes()));
        assert!(
            !blob.windows(12).any(|w| w == b"123456789012"),
            "short runs are packed"
        );
    }

    #[test]
    fn a_sola_line_takes_about_sixty_bytes() {
        let input: Vec<StoredResult> = (0..1000u64)
            .map(|n| {
                result(
                    n,
                    &[
                        ("xResult", "A"),
                        ("xStatus", "Approved"),
                        ("xError", ""),
                        ("xErrorCode", "00000"),
                        ("xRefNum", &format!("{}", 3_000_000_000 + n)),
                        ("xInvoice", &format!("INV-{n:08}")),
                        ("xBatch", "17"),
                        ("xAuthAmount", &format!("{}.{:02}", 1 + n % 500, n % 100)),
                        (
                            "xToken",
                            &format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15),
                        ),
                        ("xAuthCode", &format!("{:06}", n * 7919 % 1_000_000)),
                        (
                            "xMaskedCardNumber",
                            &format!("4xxxxxxxxxxx{:04}", n % 10_000),
                        ),
                        ("xCardType", "Visa"),
                    ],
                )
            })
            .collect();
        let text: usize = input
            .iter()
            .map(|r| {
                r.fields
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 2)
                    .sum::<usize>()
            })
            .sum();
        let blob = encode(&input);
        assert!(
            blob.len() < 1000 * 75,
            "{} bytes for {text} bytes of text",
            blob.len()
        );
        let read = decode(blob).unwrap();
        assert_eq!(
            read.iter().map(|l| l.to_stored()).collect::<Vec<_>>(),
            input
        );
    }

    #[test]
    fn damaged_blobs_are_corrupt() {
        let good = encode(&[
            result(0, &[("xResult", "A")]),
            result(1, &[("xResult", "D")]),
        ]);
        let mut not_utf8 = good.clone();
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("other tag", { let mut b = good.clone(); b[0] = 2; b }),
            ("truncated", good[..good.len() - 1].to_vec()),
            ("trailing", { let mut b = good.clone(); b.push(0); b }),
            ("value not UTF-8", not_utf8),
            ("unknown name", vec![1, 0, 1, 0, 2, 0, 0]),
            ("previous names without a previous line", vec![1, 1, 1, b'x', 1, 0, 3, 0]),
            ("repeated value never given", vec![1, 1, 1, b'x', 1, 0, 2, 0, 1]),
            ("repeated value with a length", vec![1, 1, 1, b'x', 1, 0, 2, 0, 5]),
            ("number longer than its digits", vec![1, 1, 1, b'x', 1, 0, 2, 0, 11, 100]),
            ("one digit packed", vec![1, 1, 1, b'x', 1, 0, 2, 0, 7, 1]),
            ("thirteen digits packed", vec![1, 1, 1, b'x', 1, 0, 2, 0, 13 << 2 | 3, 1]),
        ];
        for (name, blob) in cases {
            assert!(
                matches!(decode(blob), Err(crate::Error::Corrupt { .. })),
                "{name}"
            );
        }
    }
}
