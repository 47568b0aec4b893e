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
//! n ×     the lines' references, in line order, front-coded: varint bytes shared with the
//!         previous line's reference, varint length of the rest, the rest (absent: 0, 0)
//! ```
//!
//! References usually share a long prefix (`order-000123`, `order-000124`): front coding
//! keeps two or three bytes of each. A reference with 13 digits or more in a row is stored whole.
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
    let mut previous = "";
    for line in lines {
        let r = line.map_or("", |(r, _)| r);
        let mut shared = if long_digit_run(r) {
            0
        } else {
            r.bytes()
                .zip(previous.bytes())
                .take_while(|(a, b)| a == b)
                .count()
        };
        while !r.is_char_boundary(shared) {
            shared -= 1;
        }
        let rest = r.get(shared..).unwrap_or_default();
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, rest.len() as u64);
        out.extend_from_slice(rest.as_bytes());
        previous = r;
    }
    out
}

/// Whether `s` holds 13 or more digits in a row (card-like): such a reference is stored whole,
/// never split by front coding, so that a search of the files for a card number finds it (the
/// caller refuses card numbers as references; the files are the last place to check).
fn long_digit_run(s: &str) -> bool {
    let mut run = 0;
    s.bytes().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run >= 13
    })
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
/// [`crate::Ledger::batch_refs`] returns them: decoded and checked once when read (the
/// references into one string), then iterated without allocating.
#[derive(Clone)]
pub struct BatchRefs {
    blob: bytes::Bytes,
    header: Header,
    /// Every line's reference, one after the other.
    text: String,
    /// End of each line's reference in `text` (its start is the previous line's end).
    ends: Vec<u32>,
}

impl std::fmt::Debug for BatchRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRefs")
            .field("lines", &self.header.n)
            .field("bytes", &self.blob.len())
            .finish()
    }
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
    pub(crate) fn decode(blob: bytes::Bytes, what: impl Fn() -> String) -> Result<BatchRefs> {
        let bad = |detail: &str| corrupt(what(), format!("batch references: {detail}"));
        let header = header(&blob).ok_or_else(|| bad("bad header"))?;
        let mut bytes: Vec<u8> = Vec::with_capacity(blob.len().saturating_sub(header.refs) * 4);
        let mut ends = Vec::with_capacity(header.n);
        let mut c = Cursor::at(&blob, header.refs);
        let mut previous = 0..0;
        for _ in 0..header.n {
            let shared = c.len().ok_or_else(|| bad("truncated"))?;
            let len = c.len().ok_or_else(|| bad("truncated"))?;
            let rest = c.take(len).ok_or_else(|| bad("truncated"))?;
            if shared > previous.len() {
                return Err(bad("shares more than the previous reference"));
            }
            let start = bytes.len();
            bytes.extend_from_within(previous.start..previous.start + shared);
            bytes.extend_from_slice(rest);
            previous = start..bytes.len();
            ends.push(u32::try_from(bytes.len()).map_err(|_| bad("too large"))?);
        }
        if !c.is_done() {
            return Err(bad("trailing bytes"));
        }
        // Valid as a whole and cut at character boundaries: every reference is valid.
        let text = String::from_utf8(bytes).map_err(|_| bad("a reference is not UTF-8"))?;
        if !ends.iter().all(|e| text.is_char_boundary(*e as usize)) {
            return Err(bad("a reference is not UTF-8"));
        }
        Ok(BatchRefs {
            blob,
            header,
            text,
            ends,
        })
    }

    /// The stored lines blob itself, as the ledger keeps it (to copy it to another backend
    /// unchanged; `sequence_ledger::backend` decodes it).
    pub fn as_bytes(&self) -> &[u8] {
        &self.blob
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
            let start = i
                .checked_sub(1)
                .map_or(Some(0), |p| self.ends.get(p).copied())?;
            self.text.get(start as usize..*self.ends.get(i)? as usize)
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

    fn ivec(v: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from(v)
    }

    #[test]
    fn lines_round_trip_with_and_without_absent_references() {
        let d = |b: u8| [b; 32];
        let (d1, d2, d3) = (d(1), d(2), d(3));
        #[rustfmt::skip]
        type Lines<'a> = Vec<Option<(&'a str, &'a [u8; 32])>>;
        let cases: Vec<Lines<'_>> = vec![
            vec![Some(("order-1", &d1))],
            vec![Some(("a", &d1)), Some(("", &d2)), Some(("caf\u{e9}", &d3))],
            vec![Some(("a", &d1)), None, Some(("c", &d3))],
            (0..300)
                .map(|i| if i % 7 == 0 { None } else { Some(("x", &d2)) })
                .collect(),
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
    fn references_are_front_coded() {
        let d = [0u8; 32];
        let refs: Vec<String> = (0..1000).map(|i| format!("order-{i:09}")).collect();
        let blob = encode(refs.len(), refs.iter().map(|r| Some((r.as_str(), &d))));
        // 32 bytes of digest and about three of reference per line.
        assert!(blob.len() < 1000 * (32 + 4) + 32, "{} bytes", blob.len());
        let back = BatchRefs::decode(ivec(blob), String::new).unwrap();
        let got: Vec<&str> = back.iter().map(|l| l.client_ref.unwrap()).collect();
        assert_eq!(got, refs);
        // Multi-byte characters are never split between a shared prefix and the rest.
        let (a, b) = ("caf\u{e9}-1", "caf\u{e8}-2");
        let blob = encode(2, [Some((a, &d)), Some((b, &d))]);
        let back = BatchRefs::decode(ivec(blob), String::new).unwrap();
        assert_eq!(back.get(1).unwrap().client_ref, Some(b));
    }

    #[test]
    fn card_like_references_are_stored_whole() {
        let d = [0u8; 32];
        let (a, b) = ("ref-4111111111111111", "ref-4111111111111112");
        let blob = encode(2, [Some((a, &d)), Some((b, &d))]);
        for r in [a, b] {
            assert!(blob.windows(r.len()).any(|w| w == r.as_bytes()), "{r}");
        }
        let back = BatchRefs::decode(ivec(blob), String::new).unwrap();
        assert_eq!(back.get(1).unwrap().client_ref, Some(b));
        assert!(!long_digit_run("order-000000000123") && long_digit_run("x1234567890123"));
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
            ("shares too much", { let mut b = encode(1, [Some(("ab", &d))]); let at = b.len() - 4; b[at] = 1; b }),
        ];
        for (name, blob) in cases {
            let r = BatchRefs::decode(ivec(blob), || "x".into());
            assert!(
                matches!(r, Err(crate::Error::Corrupt { .. })),
                "{name}: {r:?}"
            );
        }
    }
}
