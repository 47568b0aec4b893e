//! `LineView`: a borrowed, lazily decoding view of one line — the zero-copy counterpart of
//! [`Record`] (like rust-csv's `ByteRecord` beside `StringRecord`).

use std::borrow::Cow;
use std::fmt;

use crate::Record;
use crate::codec::{decode_lossy, percent_decode_into};
use crate::error::{Error, Position, Result, Utf8Part};
use crate::redact::{mask_key, mask_value};
use crate::scan::{Piece, scan_line};

/// Reusable storage for [`LineView`]s: the piece index and a scratch buffer. Keep one per
/// reader or validator; viewing a line then allocates nothing.
///
/// `Debug` shows sizes only: the scratch buffer holds decoded line bytes.
#[derive(Default)]
pub struct ViewBuf {
    pieces: Vec<Piece>,
    scratch: Vec<u8>,
}

impl fmt::Debug for ViewBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewBuf")
            .field("pieces", &self.pieces.len())
            .field("scratch_len", &self.scratch.len())
            .finish()
    }
}

impl ViewBuf {
    /// Empty storage.
    pub fn new() -> Self {
        ViewBuf::default()
    }

    /// Indexes one line (without its line ending) and checks that every key and value
    /// decodes to UTF-8, decoding only what can fail (escapes of bytes >= 0x80, or raw
    /// non-UTF-8 bytes). Keys and values are then decoded on access.
    ///
    /// # Errors
    /// [`Error::InvalidUtf8`] naming the key, as [`crate::decode_line`].
    pub fn view<'a>(&'a mut self, line: &'a [u8]) -> Result<LineView<'a>> {
        self.pieces.clear();
        let mut high = false;
        scan_line(line, &mut self.pieces, |p, pieces| {
            high |= p.key_high | p.value_high;
            pieces.push(p);
            Ok(())
        })?;
        let text = std::str::from_utf8(line).ok();
        // A valid line whose escapes all decode to ASCII decodes to valid text: nothing to
        // check piece by piece (the common case).
        let pieces: &[Piece] = if text.is_some() && !high {
            &[]
        } else {
            &self.pieces
        };
        for p in pieces {
            let key_ok = component_ok(
                line,
                text,
                p.start,
                p.key_end,
                p.key_escaped,
                p.key_high,
                &mut self.scratch,
            );
            if let Err(source) = key_ok {
                return Err(Error::InvalidUtf8 {
                    pos: Position::key(decode_lossy(&line[p.start..p.key_end]).into_owned()),
                    what: Utf8Part::Key,
                    source,
                });
            }
            let value_ok = component_ok(
                line,
                text,
                p.value_start,
                p.end,
                p.value_escaped,
                p.value_high,
                &mut self.scratch,
            );
            if let Err(source) = value_ok {
                return Err(Error::InvalidUtf8 {
                    pos: Position::key(decode_lossy(&line[p.start..p.key_end]).into_owned()),
                    what: Utf8Part::Value,
                    source,
                });
            }
        }
        Ok(LineView {
            line,
            text,
            pieces: &self.pieces,
        })
    }
}

/// Whether one component decodes to UTF-8, doing the least work that proves it.
fn component_ok(
    line: &[u8],
    text: Option<&str>,
    start: usize,
    end: usize,
    escaped: bool,
    high: bool,
    scratch: &mut Vec<u8>,
) -> Result<(), std::str::Utf8Error> {
    // A valid line stays valid when ASCII escapes are replaced by ASCII bytes.
    if text.is_some() && !high {
        return Ok(());
    }
    if !escaped {
        return std::str::from_utf8(&line[start..end]).map(|_| ());
    }
    scratch.clear();
    percent_decode_into(&line[start..end], scratch);
    std::str::from_utf8(scratch).map(|_| ())
}

/// One line, indexed but not decoded: keys and values are decoded when asked for, borrowed
/// when they need no decoding. Every component is known to decode to UTF-8.
///
/// `Debug` shows the line's length and its decoded pairs masked like [`Record`]'s, never the
/// raw line: `LineView { bytes: 52, pairs: {"xIndex": "0", "xCardNum": "411111******1111"} }`.
#[derive(Clone, Copy)]
pub struct LineView<'a> {
    line: &'a [u8],
    text: Option<&'a str>,
    pieces: &'a [Piece],
}

impl fmt::Debug for LineView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct MaskedPairs<'v, 'a>(&'v LineView<'a>);
        impl fmt::Debug for MaskedPairs<'_, '_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut m = f.debug_map();
                for (k, v) in self.0.iter() {
                    m.entry(&mask_key(&k), &mask_value(&k, &v));
                }
                m.finish()
            }
        }
        f.debug_struct("LineView")
            .field("bytes", &self.line.len())
            .field("pairs", &MaskedPairs(self))
            .finish()
    }
}

impl<'a> LineView<'a> {
    fn component(&self, start: usize, end: usize, escaped: bool) -> Cow<'a, str> {
        let raw = &self.line[start..end];
        match (escaped, self.text) {
            (false, Some(text)) => Cow::Borrowed(&text[start..end]),
            // Checked by `ViewBuf::view`: these conversions cannot lose anything.
            (false, None) => String::from_utf8_lossy(raw),
            (true, _) => {
                let mut out = Vec::with_capacity(raw.len());
                percent_decode_into(raw, &mut out);
                Cow::Owned(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether the line has no pairs.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The `i`-th key, decoded.
    pub fn key(&self, i: usize) -> Option<Cow<'a, str>> {
        let p = self.pieces.get(i)?;
        Some(self.component(p.start, p.key_end, p.key_escaped))
    }

    /// The `i`-th value, decoded.
    pub fn value(&self, i: usize) -> Option<Cow<'a, str>> {
        let p = self.pieces.get(i)?;
        Some(self.component(p.value_start, p.end, p.value_escaped))
    }

    /// The decoded pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + '_ {
        self.pieces.iter().map(|p| {
            (
                self.component(p.start, p.key_end, p.key_escaped),
                self.component(p.value_start, p.end, p.value_escaped),
            )
        })
    }

    /// Whether the `i`-th key equals `key` (without decoding when the key has no escapes).
    fn key_is(&self, p: &Piece, key: &str) -> bool {
        if p.key_escaped {
            self.component(p.start, p.key_end, true) == key
        } else {
            &self.line[p.start..p.key_end] == key.as_bytes()
        }
    }

    /// The value of the first pair with this key.
    pub fn get(&self, key: &str) -> Option<Cow<'a, str>> {
        let p = self.pieces.iter().find(|p| self.key_is(p, key))?;
        Some(self.component(p.value_start, p.end, p.value_escaped))
    }

    /// Whether some pair has this key.
    pub fn contains_key(&self, key: &str) -> bool {
        self.pieces.iter().any(|p| self.key_is(p, key))
    }

    /// The first key that occurs more than once, if any.
    pub fn repeated_key(&self) -> Option<Cow<'a, str>> {
        if self.pieces.iter().any(|p| p.key_escaped) || self.pieces.len() > 64 {
            // Rare: compare decoded keys.
            let keys: Vec<Cow<'a, str>> = (0..self.len()).filter_map(|i| self.key(i)).collect();
            let mut seen = std::collections::HashSet::with_capacity(keys.len());
            return keys.into_iter().find(|k| !seen.insert(k.clone()));
        }
        let mut seen = crate::record::FingerprintSet::default();
        for (i, p) in self.pieces.iter().enumerate() {
            let key = &self.line[p.start..p.key_end];
            if seen.insert(key)
                && self.pieces[..i]
                    .iter()
                    .any(|q| &self.line[q.start..q.key_end] == key)
            {
                return self.key(i);
            }
        }
        None
    }

    /// Decodes the whole line into `rec` (cleared first).
    pub fn to_record(&self, rec: &mut Record) {
        rec.clear();
        for (k, v) in self.iter() {
            rec.push_str(&k, &v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_line;

    #[test]
    fn view_matches_decode_line() {
        let lines: &[&[u8]] = &[
            b"",
            b"a=1&&b=%20x&c&=v&d=e=f",
            b"xName=Jo+Smith&k%20ey=%C3%A9&p=100%",
            b"a=\xc3\xa9&b=%41",
        ];
        let mut buf = ViewBuf::new();
        for line in lines {
            let view = buf.view(line).unwrap();
            let got: Vec<_> = view.iter().collect();
            assert_eq!(got, decode_line(line).unwrap(), "{line:?}");
        }
    }

    #[test]
    fn lookups_and_repeats() {
        let mut buf = ViewBuf::new();
        let view = buf.view(b"xIndex=4&x%49ndex2=5&xName=Jo%20Smith").unwrap();
        assert_eq!(view.get("xIndex").as_deref(), Some("4"));
        assert_eq!(view.get("xIndex2").as_deref(), Some("5"));
        assert_eq!(view.get("xName").as_deref(), Some("Jo Smith"));
        assert!(matches!(view.get("xIndex"), Some(Cow::Borrowed(_))));
        assert!(!view.contains_key("xKey"));
        assert_eq!(view.repeated_key(), None);
        #[rustfmt::skip]
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"a=1&b=2&a=3", Some("a")),
            (b"a=1&%61=2", Some("a")),
            (b"xCustom01=1&xCustom10=2&xCustom11=3", None),
            (b"k=1&k", Some("k")),
        ];
        for (line, want) in cases {
            let view = buf.view(line).unwrap();
            assert_eq!(view.repeated_key().as_deref(), *want, "{line:?}");
        }
    }

    #[test]
    fn utf8_errors_table() {
        #[rustfmt::skip]
        let cases: &[(&[u8], &str, Utf8Part)] = &[
            (b"a=1&xName=%FF", "xName", Utf8Part::Value),
            (b"a=1&xName=\xff", "xName", Utf8Part::Value),
            (b"a=\xc3\xa9&x%FF=1", "x\u{FFFD}", Utf8Part::Key),
            (b"xAmount=%C3", "xAmount", Utf8Part::Value),
            (b"xAmount=%C3%A9%e9", "xAmount", Utf8Part::Value),
        ];
        let mut buf = ViewBuf::new();
        for (line, key, part) in cases {
            match buf.view(line) {
                Err(Error::InvalidUtf8 { pos, what, .. }) => {
                    assert_eq!(pos.key.as_deref(), Some(*key), "{line:?}");
                    assert_eq!(what, *part, "{line:?}");
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }
}
