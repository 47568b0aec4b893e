//! A batch's per-line results as the ledger keeps them: one blob per batch, written once when
//! the batch is collected, read back in line order without an allocation per field.
//!
//! Layout (tree `batch_results`, one value per collected batch that has results):
//!
//! ```text
//! u8      layout tag (1)
//! varint  k, then k × (varint length + UTF-8): the field names, each once, in first-seen order
//! varint  m: the number of lines with a result
//! m ×     varint index (strictly increasing), varint field count,
//!         field count × (varint name number < k, varint length + UTF-8 value)
//! ```
//!
//! A Sola RESPONSE line repeats the same dozen names on every line: numbering them once per
//! batch leaves about two bytes per field beside its value.

use std::collections::HashMap;
use std::fmt;

use crate::codec::{Cursor, corrupt, put_varint};
use crate::error::Result;
use crate::StoredResult;

const TAG: u8 = 1;

/// Encodes results whose indexes are unique (checked by the caller), in index order.
pub(crate) fn encode(results: &[StoredResult]) -> Vec<u8> {
    let mut order: Vec<&StoredResult> = results.iter().collect();
    if !order.is_sorted_by_key(|r| r.index) {
        order.sort_unstable_by_key(|r| r.index);
    }
    let values: usize = results
        .iter()
        .flat_map(|r| r.fields.iter().map(|(_, v)| v.len() + 3))
        .sum();
    let mut names: Vec<&str> = Vec::new();
    let mut numbers: HashMap<&str, u64> = HashMap::new();
    // The same names tend to come in the same order on every line: try the previous line's
    // name at this position before the map.
    let mut previous: Vec<u64> = Vec::new();
    let mut data = Vec::with_capacity(values + 4 * results.len());
    for r in order {
        put_varint(&mut data, r.index);
        put_varint(&mut data, r.fields.len() as u64);
        for (position, (k, v)) in r.fields.iter().enumerate() {
            let guess = previous
                .get(position)
                .copied()
                .filter(|n| names.get(*n as usize) == Some(&k.as_str()));
            let number = match guess {
                Some(n) => n,
                None => *numbers.entry(k.as_str()).or_insert_with(|| {
                    names.push(k.as_str());
                    names.len() as u64 - 1
                }),
            };
            match previous.get_mut(position) {
                Some(p) => *p = number,
                None => previous.push(number),
            }
            put_varint(&mut data, number);
            put_varint(&mut data, v.len() as u64);
            data.extend_from_slice(v.as_bytes());
        }
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

/// The stored results of one batch, as [`crate::Ledger::batch_results`] returns them: checked
/// once when read (layout, UTF-8), then read in index order or by index without allocating.
/// Empty for a batch that has none (not collected yet, nothing in its answer, or
/// [pruned](crate::BatchRecord::results_pruned_at)).
#[derive(Clone, Default)]
pub struct BatchResults {
    blob: sled::IVec,
    /// Start and length of each field name.
    names: Vec<(u32, u32)>,
    /// Whether each name is `xResult` (any case): the line has an outcome of its own.
    outcome_names: Vec<bool>,
    /// Each line's index and the offset of its field count.
    lines: Vec<(u64, u32)>,
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
    at: u32,
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
    pub(crate) fn decode(blob: sled::IVec, what: impl Fn() -> String) -> Result<BatchResults> {
        let bad = |detail: &str| corrupt(what(), format!("batch results: {detail}"));
        let mut c = Cursor::new(&blob);
        if c.byte() != Some(TAG) {
            return Err(bad("bad header"));
        }
        let k = c.len().ok_or_else(|| bad("truncated"))?;
        let mut names = Vec::with_capacity(k.min(1024));
        let mut outcome_names = Vec::with_capacity(k.min(1024));
        for _ in 0..k {
            let len = c.len().ok_or_else(|| bad("truncated"))?;
            let start = u32::try_from(c.position()).map_err(|_| bad("too large"))?;
            let bytes = c.take(len).ok_or_else(|| bad("truncated"))?;
            let name = std::str::from_utf8(bytes).map_err(|_| bad("a name is not UTF-8"))?;
            names.push((start, u32::try_from(len).map_err(|_| bad("too large"))?));
            outcome_names.push(name.eq_ignore_ascii_case(kvp_format::keys::RESULT));
        }
        let m = c.len().ok_or_else(|| bad("truncated"))?;
        let mut lines = Vec::with_capacity(m.min(1 << 20));
        let mut last = None;
        for _ in 0..m {
            let index = c.varint().ok_or_else(|| bad("truncated"))?;
            if last.is_some_and(|l| l >= index) {
                return Err(bad("indexes out of order"));
            }
            last = Some(index);
            let at = u32::try_from(c.position()).map_err(|_| bad("too large"))?;
            lines.push((index, at));
            let count = c.len().ok_or_else(|| bad("truncated"))?;
            for _ in 0..count {
                let name = c.len().ok_or_else(|| bad("truncated"))?;
                if name >= k {
                    return Err(bad("unknown field name"));
                }
                c.str().ok_or_else(|| bad("a value is truncated or not UTF-8"))?;
            }
        }
        if !c.is_done() {
            return Err(bad("trailing bytes"));
        }
        Ok(BatchResults {
            blob,
            names,
            outcome_names,
            lines,
        })
    }

    /// The number of lines with a result.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when no line has a result.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Every line's result, by index.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = LineResult<'_>> + '_ {
        self.lines.iter().map(move |&(index, at)| LineResult {
            results: self,
            index,
            at,
        })
    }

    /// The result of line `index`, if it has one (a binary search).
    pub fn get(&self, index: u64) -> Option<LineResult<'_>> {
        let i = self.lines.binary_search_by_key(&index, |l| l.0).ok()?;
        let &(index, at) = self.lines.get(i)?;
        Some(LineResult {
            results: self,
            index,
            at,
        })
    }

    /// The indexes of the lines whose result is an outcome ([`StoredResult::is_outcome`]).
    pub(crate) fn indexes_with_outcome(&self) -> Vec<u64> {
        self.iter()
            .filter(|l| l.is_outcome())
            .map(|l| l.index())
            .collect()
    }

    fn name(&self, number: usize) -> &str {
        self.names
            .get(number)
            .and_then(|&(start, len)| {
                let bytes = Cursor::at(&self.blob, start as usize).take(len as usize)?;
                std::str::from_utf8(bytes).ok()
            })
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
        let mut cursor = Cursor::at(&self.results.blob, self.at as usize);
        let left = cursor.len().unwrap_or(0);
        Fields {
            results: self.results,
            cursor,
            left,
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
        let mut c = Cursor::at(&self.results.blob, self.at as usize);
        let count = c.len().unwrap_or(0);
        for _ in 0..count {
            let Some(name) = c.len() else { return false };
            if self.results.outcome_names.get(name).copied().unwrap_or(false) {
                return true;
            }
            let Some(len) = c.len() else { return false };
            if c.take(len).is_none() {
                return false;
            }
        }
        false
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
    cursor: Cursor<'a>,
    left: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name = self.cursor.len()?;
        // Checked by `decode`: in range, UTF-8.
        let value = self.cursor.str()?;
        Some((self.results.name(name), value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

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
        BatchResults::decode(sled::IVec::from(blob), || "x".into())
    }

    #[test]
    fn results_round_trip_in_index_order() {
        let input = vec![
            result(4, &[("xResult", "D"), ("xError", "Declined"), ("xRefNum", "9")]),
            result(0, &[("xResult", "A"), ("xError", ""), ("xToken", "t0")]),
            result(2, &[]),
            result(3, &[("xError", "validation: bad amount")]),
            result(1, &[("xToken", "t1"), ("xResult", "A"), ("xNote", "caf\u{e9} & =%")]),
            result(u64::from(u32::MAX) + 7, &[("XRESULT", "E"), ("xResult", "A")]),
        ];
        let read = decode(encode(&input)).unwrap();
        let mut expected = input.clone();
        expected.sort_by_key(|r| r.index);
        let got: Vec<StoredResult> = read.iter().map(|l| l.to_stored()).collect();
        assert_eq!(got, expected);
        assert_eq!(read.len(), 6);
        for r in &expected {
            let line = read.get(r.index).unwrap();
            assert_eq!(line.to_stored(), *r);
            assert_eq!(line.is_outcome(), StoredResult::is_outcome(&r.fields), "{r:?}");
        }
        assert!(read.get(5).is_none());
        assert_eq!(read.get(4).unwrap().get("xerror"), Some("Declined"));
        assert_eq!(read.get(4).unwrap().get("xToken"), None);
        assert_eq!(read.indexes_with_outcome(), [0, 1, 4, u64::from(u32::MAX) + 7]);
        let empty = decode(encode(&[])).unwrap();
        assert!(empty.is_empty() && empty.iter().next().is_none());
        assert!(BatchResults::default().get(0).is_none());
    }

    #[test]
    fn names_are_stored_once() {
        let input: Vec<StoredResult> = (0..100)
            .map(|i| result(i, &[("xMaskedCardNumber", "4xxxxxxxxxxx1111"), ("xResult", "A")]))
            .collect();
        let blob = encode(&input);
        let text = String::from_utf8_lossy(&blob);
        assert_eq!(text.matches("xMaskedCardNumber").count(), 1);
        // index, count, 2 × (name, length) + the values.
        assert!(blob.len() < 100 * (2 + 4 + 16 + 1) + 40, "{} bytes", blob.len());
    }

    #[test]
    fn damaged_blobs_are_corrupt() {
        let good = encode(&[result(0, &[("xResult", "A")]), result(1, &[("xResult", "D")])]);
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
            ("unknown name", vec![1, 0, 1, 0, 1, 0, 0]),
            ("indexes out of order", vec![1, 0, 2, 2, 0, 1, 0]),
            ("repeated index", vec![1, 0, 2, 1, 0, 1, 0]),
        ];
        for (name, blob) in cases {
            assert!(matches!(decode(blob), Err(crate::Error::Corrupt { .. })), "{name}");
        }
    }
}
