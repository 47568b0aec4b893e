//! The line codec: one line ⇄ ordered `(key, value)` pairs. No I/O.
//!
//! Decoding follows WHATWG `application/x-www-form-urlencoded` parsing: pieces are split on
//! `&` (empty pieces skipped), each piece on its first `=` (no `=` means an empty value), `+`
//! is a space, `%XX` is a byte, a `%` not followed by two hex digits stays literal. The decoded
//! bytes must be UTF-8. Pieces that contain neither `%` nor `+` are returned borrowed.
//!
//! The decoder is hand-written rather than taken from `form_urlencoded` or
//! `serde_urlencoded`: it validates UTF-8 once per line and borrows every clean piece, which
//! is what makes the throughput target reachable (see the crate README for the figures).
//! Encoding uses the `percent-encoding` crate with the unreserved set.

use std::borrow::Cow;
use std::fmt;

use memchr::{memchr, memchr2};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::Record;
use crate::error::{Error, Position, Result, Utf8Part};
use crate::scan::{Piece, next_piece, scan_line};

/// Bytes the canonical writer percent-encodes: everything but `A-Z a-z 0-9 - . _ ~`.
pub const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A decoded pair; borrowed from the line where nothing needed decoding.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Decodes one line (without its line ending) into ordered pairs.
///
/// # Errors
/// [`Error::InvalidUtf8`] naming the key when decoded bytes are not UTF-8 (the key itself is
/// shown lossily when it is the bad part). The position has no file or line: readers add them.
pub fn decode_line(line: &[u8]) -> Result<Vec<Pair<'_>>> {
    let text = std::str::from_utf8(line).ok();
    let mut out = Vec::new();
    scan_line(line, &mut out, |p, out: &mut Vec<Pair<'_>>| {
        let key = component(line, text, p.start, p.key_end, p.key_escaped).map_err(|source| {
            Error::InvalidUtf8 {
                pos: Position::key(decode_lossy(&line[p.start..p.key_end]).into_owned()),
                what: Utf8Part::Key,
                source,
            }
        })?;
        let value = match component(line, text, p.value_start, p.end, p.value_escaped) {
            Ok(v) => v,
            Err(source) => {
                return Err(Error::InvalidUtf8 {
                    pos: Position::key(key.into_owned()),
                    what: Utf8Part::Value,
                    source,
                });
            }
        };
        out.push((key, value));
        Ok(())
    })?;
    Ok(out)
}

/// One decoded component, borrowed when it needs no decoding.
#[inline]
fn component<'a>(
    line: &'a [u8],
    text: Option<&'a str>,
    start: usize,
    end: usize,
    escaped: bool,
) -> Result<Cow<'a, str>, std::str::Utf8Error> {
    let raw = &line[start..end];
    if !escaped {
        return match text {
            Some(text) => Ok(Cow::Borrowed(&text[start..end])),
            None => std::str::from_utf8(raw).map(Cow::Borrowed),
        };
    }
    let mut out = Vec::with_capacity(raw.len());
    percent_decode_into(raw, &mut out);
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|e| e.utf8_error())
}

/// Decodes one line, replacing invalid UTF-8 with U+FFFD instead of failing.
pub fn decode_line_lossy(line: &[u8]) -> Vec<Pair<'_>> {
    split(line)
        .map(|(k, v)| (decode_lossy(k), decode_lossy(v)))
        .collect()
}

/// A lazy iterator over the decoded pairs of one line (see [`decode_line`]).
pub fn pairs(line: &[u8]) -> Pairs<'_> {
    Pairs {
        line,
        text: std::str::from_utf8(line).ok(),
        pos: 0,
    }
}

/// Decodes `line` into `rec` (cleared first), reusing its buffers: no allocation once they
/// have grown to the longest line.
///
/// # Errors
/// As [`decode_line`]; `rec` then holds the pairs before the bad one.
pub fn decode_into(line: &[u8], rec: &mut Record) -> Result<()> {
    rec.clear();
    let text = std::str::from_utf8(line).ok();
    let emit = |piece: Piece, rec: &mut Record| -> Result<()> {
        let key_start = rec.buf_mut().len();
        if let Err(source) = push_component(
            line,
            text,
            piece.start,
            piece.key_end,
            piece.key_escaped,
            rec,
        ) {
            rec.buf_mut().truncate(key_start);
            let shown = decode_lossy(&line[piece.start..piece.key_end]).into_owned();
            return Err(Error::InvalidUtf8 {
                pos: Position::key(shown),
                what: Utf8Part::Key,
                source,
            });
        }
        let key_end = rec.buf_mut().len();
        if let Err(source) = push_component(
            line,
            text,
            piece.value_start,
            piece.end,
            piece.value_escaped,
            rec,
        ) {
            let key = rec.buf_mut()[key_start..key_end].to_owned();
            rec.buf_mut().truncate(key_start);
            return Err(Error::InvalidUtf8 {
                pos: Position::key(key),
                what: Utf8Part::Value,
                source,
            });
        }
        rec.commit_pair(key_end);
        Ok(())
    };
    scan_line(line, rec, emit)
}

/// Appends one decoded component of `line` to the record's buffer.
#[inline]
fn push_component(
    line: &[u8],
    text: Option<&str>,
    start: usize,
    end: usize,
    escaped: bool,
    rec: &mut Record,
) -> Result<(), std::str::Utf8Error> {
    if !escaped {
        let s = match text {
            Some(text) => &text[start..end],
            None => std::str::from_utf8(&line[start..end])?,
        };
        rec.buf_mut().push_str(s);
        return Ok(());
    }
    let mut scratch = std::mem::take(&mut rec.scratch);
    scratch.clear();
    percent_decode_into(&line[start..end], &mut scratch);
    let result = std::str::from_utf8(&scratch).map(|s| rec.buf_mut().push_str(s));
    rec.scratch = scratch;
    result
}

/// Iterator returned by [`pairs`]. `Debug` shows the line's length and the position reached,
/// never the line.
#[derive(Clone)]
pub struct Pairs<'a> {
    line: &'a [u8],
    /// The whole line as text when it is UTF-8 before decoding (the common case): clean
    /// pieces are then sliced from it without another check. Splitting happens on ASCII
    /// bytes, so every slice falls on a character boundary.
    text: Option<&'a str>,
    pos: usize,
}

impl fmt::Debug for Pairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pairs")
            .field("bytes", &self.line.len())
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a> Pairs<'a> {
    fn component(
        &self,
        start: usize,
        end: usize,
        escaped: bool,
    ) -> Result<Cow<'a, str>, std::str::Utf8Error> {
        component(self.line, self.text, start, end, escaped)
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<Pair<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let piece = next_piece(self.line, &mut self.pos)?;
        let key = match self.component(piece.start, piece.key_end, piece.key_escaped) {
            Ok(k) => k,
            Err(source) => {
                self.pos = self.line.len();
                let shown = decode_lossy(&self.line[piece.start..piece.key_end]).into_owned();
                return Some(Err(Error::InvalidUtf8 {
                    pos: Position::key(shown),
                    what: Utf8Part::Key,
                    source,
                }));
            }
        };
        Some(
            match self.component(piece.value_start, piece.end, piece.value_escaped) {
                Ok(v) => Ok((key, v)),
                Err(source) => {
                    self.pos = self.line.len();
                    Err(Error::InvalidUtf8 {
                        pos: Position::key(key.into_owned()),
                        what: Utf8Part::Value,
                        source,
                    })
                }
            },
        )
    }
}

/// Splits a line into raw (undecoded) key and value pieces, skipping empty pieces.
pub fn split(line: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    line.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match memchr(b'=', p) {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &p[p.len()..]),
        })
}

/// Percent-decodes `raw` into `out` (`+` → space, `%XX` → byte, a bad `%` stays literal).
pub fn percent_decode_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let Some(off) = memchr2(b'%', b'+', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            return;
        };
        out.extend_from_slice(&raw[i..i + off]);
        i += off;
        if raw[i] == b'+' {
            out.push(b' ');
            i += 1;
            continue;
        }
        match (raw.get(i + 1).and_then(hex), raw.get(i + 2).and_then(hex)) {
            (Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            _ => {
                out.push(b'%');
                i += 1;
            }
        }
    }
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn decode_lossy(raw: &[u8]) -> Cow<'_, str> {
    if memchr2(b'%', b'+', raw).is_none() {
        return String::from_utf8_lossy(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    percent_decode_into(raw, &mut out);
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Appends the canonical encoding of `s`.
pub fn encode_component(s: &str, out: &mut Vec<u8>) {
    // Most names and values need no escape at all: copy them in one go. Otherwise copy the
    // clean prefix and hand only the rest to the encoder.
    let clean = s.bytes().position(|b| !UNRESERVED[usize::from(b)]);
    let Some(clean) = clean else {
        out.extend_from_slice(s.as_bytes());
        return;
    };
    out.extend_from_slice(&s.as_bytes()[..clean]);
    // `clean` is the index of an ASCII byte or of a character's first byte.
    for chunk in percent_encoding::utf8_percent_encode(&s[clean..], ENCODE_SET) {
        out.extend_from_slice(chunk.as_bytes());
    }
}

/// Whether the canonical encoding keeps byte `b` as it is (`A-Z a-z 0-9 - . _ ~`; every other
/// byte is in [`ENCODE_SET`]). One table load: for encoders of their own in hot loops.
#[inline]
pub fn is_unreserved(b: u8) -> bool {
    UNRESERVED[usize::from(b)]
}

/// The bytes [`ENCODE_SET`] leaves as they are, as a table (one load per byte).
static UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    table
};

/// Appends one canonical `key=value`.
pub fn encode_pair(key: &str, value: &str, out: &mut Vec<u8>) {
    encode_component(key, out);
    out.push(b'=');
    encode_component(value, out);
}

/// Appends canonical `k=v&k=v...` (no line ending).
pub fn encode_pairs<K, V, I>(pairs: I, out: &mut Vec<u8>)
where
    K: AsRef<str>,
    V: AsRef<str>,
    I: IntoIterator<Item = (K, V)>,
{
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        encode_pair(k.as_ref(), v.as_ref(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unescaped_fast_path_agrees_with_the_encoder() {
        let every_ascii: String = (0u8..128).map(char::from).collect();
        for s in [
            "",
            "cc:sale",
            "12.34",
            "A-Z_a~z.09",
            "Zoë & Co+1",
            "clean prefix then ünïcode",
            "ë",
            every_ascii.as_str(),
        ] {
            let mut fast = Vec::new();
            encode_component(s, &mut fast);
            let slow = percent_encoding::utf8_percent_encode(s, ENCODE_SET).to_string();
            assert_eq!(String::from_utf8(fast).unwrap(), slow, "{s:?}");
        }
        for b in 0u8..128 {
            let one = char::from(b).to_string();
            let escaped =
                percent_encoding::utf8_percent_encode(&one, ENCODE_SET).to_string() != one;
            assert_eq!(is_unreserved(b), !escaped, "byte {b}");
        }
    }

    fn dec(line: &str) -> Vec<(String, String)> {
        decode_line(line.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decode_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("a=1", &[("a", "1")]),
            ("a=1&b=2", &[("a", "1"), ("b", "2")]),
            ("a=1&&b=2&", &[("a", "1"), ("b", "2")]),
            ("&&&", &[]),
            ("a", &[("a", "")]),
            ("a=", &[("a", "")]),
            ("=v", &[("", "v")]),
            ("a=b=c", &[("a", "b=c")]),
            ("a=1&a=2", &[("a", "1"), ("a", "2")]),
            ("n=John+Smith", &[("n", "John Smith")]),
            ("n=John%20Smith", &[("n", "John Smith")]),
            ("n=%2B%26%3D", &[("n", "+&=")]),
            ("n=%2b%c3%a9", &[("n", "+é")]),
            ("n=100%", &[("n", "100%")]),
            ("n=%zz", &[("n", "%zz")]),
            ("n=%4", &[("n", "%4")]),
            ("n=%%41", &[("n", "%A")]),
            ("k%20ey=v", &[("k ey", "v")]),
            ("x+y=1", &[("x y", "1")]),
            ("é=ü", &[("é", "ü")]),
            ("a=%F0%9F%92%B3", &[("a", "💳")]),
        ];
        for (line, want) in cases {
            assert_eq!(dec(line), p(want), "{line:?}");
        }
    }

    #[test]
    fn clean_pieces_are_borrowed() {
        let pairs = decode_line(b"xIndex=0&xName=John+Smith").unwrap();
        assert!(matches!(pairs[0].0, Cow::Borrowed(_)));
        assert!(matches!(pairs[0].1, Cow::Borrowed(_)));
        assert!(matches!(pairs[1].1, Cow::Owned(_)));
    }

    #[test]
    fn bad_utf8_names_the_key() {
        #[rustfmt::skip]
        let cases: &[(&[u8], &str, Utf8Part)] = &[
            (b"a=1&xName=%FF", "xName", Utf8Part::Value),
            (b"a=1&xName=\xff", "xName", Utf8Part::Value),
            (b"x%FFy=1", "x\u{FFFD}y", Utf8Part::Key),
            (b"xAmount=%C3", "xAmount", Utf8Part::Value),
        ];
        for (line, key, part) in cases {
            match decode_line(line) {
                Err(Error::InvalidUtf8 { pos, what, .. }) => {
                    assert_eq!(pos.key.as_deref(), Some(*key), "{line:?}");
                    assert_eq!(what, *part, "{line:?}");
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
        let msg = decode_line(b"xName=%FF").unwrap_err().to_string();
        assert_eq!(
            msg,
            "the value of key xName is not valid UTF-8 after percent-decoding"
        );
    }

    #[test]
    fn lossy_replaces() {
        let got = decode_line_lossy(b"xName=J%FFo&k=\xfe");
        assert_eq!(got[0].1, "J\u{FFFD}o");
        assert_eq!(got[1].1, "\u{FFFD}");
    }

    #[test]
    fn encode_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str)] = &[
            ("a", "1", "a=1"),
            ("xName", "John Smith", "xName=John%20Smith"),
            ("k", "AZaz09-._~", "k=AZaz09-._~"),
            ("k", "+&=%/?#*!'()", "k=%2B%26%3D%25%2F%3F%23%2A%21%27%28%29"),
            ("k", "é💳", "k=%C3%A9%F0%9F%92%B3"),
            ("k", "\n\r\0", "k=%0A%0D%00"),
            ("", "", "="),
            ("x y", "", "x%20y="),
        ];
        for (k, v, want) in cases {
            let mut out = Vec::new();
            encode_pair(k, v, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), *want, "{k:?}={v:?}");
        }
    }

    #[test]
    fn decode_into_reuses_record() {
        let mut rec = Record::new();
        decode_into(b"a=1&b=%20", &mut rec).unwrap();
        assert_eq!(rec.iter().collect::<Vec<_>>(), [("a", "1"), ("b", " ")]);
        decode_into(b"c=3", &mut rec).unwrap();
        assert_eq!(rec.iter().collect::<Vec<_>>(), [("c", "3")]);
    }
}
