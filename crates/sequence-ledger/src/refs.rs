//! A batch's lines as the ledger keeps them: one blob per batch holding each line's client
//! reference and content digest, written once by [`crate::Ledger::reserve`].
//!
//! Layout (tree `batch_refs`, one value per batch):
//!
//! ```text
//! u8      layout tag (1)
//! varint  n: the batch's line count
//! u8      flags: bit 0 = an "absent" bitmap follows
//! [⌈n/8⌉ bytes: bit i (LSB first) set = line i's reference is not known]
//! n × 32  the lines' content digests, in line order (fixed width: line i's is at a known offset)
//! n ×     varint length + UTF-8 bytes: the lines' references, in line order (absent: length 0)
//! ```
//!
//! A reference is "not known" only in ledgers migrated from format version 1, which kept one
//! binding per reference: a line whose reference a later batch took over (its batch was
//! abandoned or rejected) had lost it there. Such a line is released anyway, so nothing needs it.

use crate::codec::{Cursor, corrupt, put_varint};
use crate::error::Result;

const TAG: u8 = 1;
const HAS_ABSENT: u8 = 1;

/// Encodes the lines of a batch, in line order: `Some((reference, digest))`, or `None` for a
/// line whose reference is not known (migration only).
pub(crate) fn encode<'a, I>(n: usize, lines: I) -> Vec<u8>
where
    I: IntoIterator<Item = Option<(&'a str, &'a [u8; 32])>> + Clone,
{
    let refs_len: usize = lines
        .clone()
        .into_iter()
        .map(|l| l.map_or(1, |(r, _)| r.len() + 2))
        .sum();
    let mut out = Vec::with_capacity(16 + n / 8 + 32 * n + refs_len);
    out.push(TAG);
    put_varint(&mut out, n as u64);
    let mut bitmap = vec![0u8; n.div_ceil(8)];
    let mut any_absent = false;
    for (i, line) in lines.clone().into_iter().enumerate() {
        if line.is_none()
            && let Some(byte) = bitmap.get_mut(i / 8)
        {
            *byte |= 1 << (i % 8);
            any_absent = true;
        }
    }
    if any_absent {
        out.push(HAS_ABSENT);
        out.extend_from_slice(&bitmap);
    } else {
        out.push(0);
    }
    for line in lines.clone() {
        out.extend_from_slice(line.map_or(&[0u8; 32], |(_, d)| d));
    }
    for line in lines {
        let r = line.map_or("", |(r, _)| r);
        put_varint(&mut out, r.len() as u64);
        out.extend_from_slice(r.as_bytes());
    }
    out
}

/// Where the parts of a refs blob start.
#[derive(Debug, Clone, Copy)]
struct Header {
    n: usize,
    bitmap: Option<usize>,
    digests: usize,
    refs: usize,
}

fn header(blob: &[u8]) -> Option<Header> {
    let mut c = Cursor::new(blob);
    if c.byte()? != TAG {
        return None;
    }
    let n = c.len()?;
    let flags = c.byte()?;
    if flags & !HAS_ABSENT != 0 {
        return None;
    }
    let bitmap = if flags & HAS_ABSENT != 0 {
        let at = c.position();
        c.take(n.div_ceil(8))?;
        Some(at)
    } else {
        None
    };
    let digests = c.position();
    c.take(n.checked_mul(32)?)?;
    Some(Header {
        n,
        bitmap,
        digests,
        refs: c.position(),
    })
}

fn absent(blob: &[u8], h: &Header, i: usize) -> bool {
    h.bitmap
        .and_then(|at| blob.get(at + i / 8))
        .is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn digest(blob: &[u8], h: &Header, i: usize) -> Option<[u8; 32]> {
    let at = h.digests.checked_add(i.checked_mul(32)?)?;
    blob.get(at..at + 32)?.try_into().ok()
}

/// The content digest of line `index`, read at its fixed offset without decoding the rest:
/// what [`crate::Ledger::binding`] needs. `None` when the blob is malformed or the line is
/// outside it.
pub(crate) fn digest_at(blob: &[u8], index: u64) -> Option<[u8; 32]> {
    let h = header(blob)?;
    let i = usize::try_from(index).ok().filter(|i| *i < h.n)?;
    digest(blob, &h, i)
}

/// The lines of one batch — references and content digests, in line order — as
/// [`crate::Ledger::batch_refs`] returns them: checked once when read, then iterated without
/// allocating.
#[derive(Debug, Clone)]
pub struct BatchRefs {
    blob: sled::IVec,
    header: Header,
    /// Start and length of each line's reference in `blob`.
    spans: Vec<(u32, u32)>,
}

/// One line of a [`BatchRefs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef<'a> {
    /// The line's `xIndex`.
    pub index: u64,
    /// The caller's reference; `None` only for a line whose reference a ledger of format
    /// version 1 no longer held (a later batch took it over, see the crate README).
    pub client_ref: Option<&'a str>,
    /// [`crate::content_digest`] of the transaction.
    pub content_digest: [u8; 32],
}

impl BatchRefs {
    /// Checks a stored blob (layout, lengths, UTF-8) and indexes its references.
    pub(crate) fn decode(blob: sled::IVec, what: impl Fn() -> String) -> Result<BatchRefs> {
        let bad = |detail: &str| corrupt(what(), format!("batch references: {detail}"));
        let header = header(&blob).ok_or_else(|| bad("bad header"))?;
        let mut spans = Vec::with_capacity(header.n);
        let mut c = Cursor::at(&blob, header.refs);
        for _ in 0..header.n {
            let len = c.len().ok_or_else(|| bad("truncated"))?;
            let start = u32::try_from(c.position()).map_err(|_| bad("too large"))?;
            let bytes = c.take(len).ok_or_else(|| bad("truncated"))?;
            std::str::from_utf8(bytes).map_err(|_| bad("a reference is not UTF-8"))?;
            spans.push((start, u32::try_from(len).map_err(|_| bad("too large"))?));
        }
        if !c.is_done() {
            return Err(bad("trailing bytes"));
        }
        Ok(BatchRefs {
            blob,
            header,
            spans,
        })
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        self.header.n
    }

    /// True for a batch without lines (never stored: a batch has at least one).
    pub fn is_empty(&self) -> bool {
        self.header.n == 0
    }

    /// Line `index`, if the batch has it.
    pub fn get(&self, index: u64) -> Option<LineRef<'_>> {
        let i = usize::try_from(index).ok().filter(|i| *i < self.header.n)?;
        let content_digest = digest(&self.blob, &self.header, i)?;
        let client_ref = if absent(&self.blob, &self.header, i) {
            None
        } else {
            let (start, len) = *self.spans.get(i)?;
            let bytes = Cursor::at(&self.blob, start as usize).take(len as usize)?;
            // Checked by `decode`.
            std::str::from_utf8(bytes).ok()
        };
        Some(LineRef {
            index,
            client_ref,
            content_digest,
        })
    }

    /// Every line, in line order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = LineRef<'_>> + '_ {
        (0..self.header.n).map(|i| {
            let i = i as u64;
            self.get(i).unwrap_or(LineRef {
                index: i,
                client_ref: None,
                content_digest: [0; 32],
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ivec(v: Vec<u8>) -> sled::IVec {
        sled::IVec::from(v)
    }

    #[test]
    fn lines_round_trip_with_and_without_absent_references() {
        let d = |b: u8| [b; 32];
        let (d1, d2, d3) = (d(1), d(2), d(3));
        #[rustfmt::skip]
        let cases: Vec<Vec<Option<(&str, &[u8; 32])>>> = vec![
            vec![Some(("order-1", &d1))],
            vec![Some(("a", &d1)), Some(("", &d2)), Some(("caf\u{e9}", &d3))],
            vec![Some(("a", &d1)), None, Some(("c", &d3))],
            (0..300).map(|i| if i % 7 == 0 { None } else { Some(("x", &d2)) }).collect(),
        ];
        for lines in cases {
            let blob = encode(lines.len(), lines.iter().copied());
            let refs = BatchRefs::decode(ivec(blob.clone()), String::new).unwrap();
            assert_eq!(refs.len(), lines.len());
            for (i, (got, want)) in refs.iter().zip(&lines).enumerate() {
                assert_eq!(got.index, i as u64);
                assert_eq!(got.client_ref, want.map(|(r, _)| r), "line {i}");
                assert_eq!(got.content_digest, want.map_or([0; 32], |(_, d)| *d));
                assert_eq!(digest_at(&blob, i as u64), Some(got.content_digest));
            }
            assert_eq!(refs.get(lines.len() as u64), None);
            assert_eq!(digest_at(&blob, lines.len() as u64), None);
        }
    }

    #[test]
    fn damaged_blobs_are_corrupt() {
        let d = [7u8; 32];
        let good = encode(2, [Some(("ab", &d)), Some(("c", &d))]);
        let mut not_utf8 = good.clone();
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("other tag", { let mut b = good.clone(); b[0] = 9; b }),
            ("unknown flag", { let mut b = good.clone(); b[2] = 4; b }),
            ("truncated", good[..good.len() - 1].to_vec()),
            ("trailing", { let mut b = good.clone(); b.push(0); b }),
            ("not UTF-8", not_utf8),
            ("short digests", vec![1, 3, 0, 0]),
        ];
        for (name, blob) in cases {
            let r = BatchRefs::decode(ivec(blob), || "x".into());
            assert!(matches!(r, Err(crate::Error::Corrupt { .. })), "{name}: {r:?}");
        }
    }
}
