//! The piece scanner: finds the `&`, `=`, `%` and `+` of a line and turns them into
//! `key[=value]` byte ranges with what each side needs decoded. No decoding, no I/O.

use crate::error::Result;

/// Byte classes for the single-pass scanner.
const PLAIN: u8 = 0;
const AMP: u8 = 1;
const EQ: u8 = 2;
const ESCAPE: u8 = 3;

static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    t[b'&' as usize] = AMP;
    t[b'=' as usize] = EQ;
    t[b'%' as usize] = ESCAPE;
    t[b'+' as usize] = ESCAPE;
    t
};

/// One non-empty `key[=value]` piece of a line, as byte ranges, with what decoding it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) start: usize,
    /// `usize::MAX` while scanning and no `=` was seen yet.
    pub(crate) key_end: usize,
    pub(crate) value_start: usize,
    pub(crate) end: usize,
    /// The key contains `%` or `+`.
    pub(crate) key_escaped: bool,
    /// The value contains `%` or `+`.
    pub(crate) value_escaped: bool,
    /// The key has an escape of a byte >= 0x80.
    pub(crate) key_high: bool,
    /// The value has an escape of a byte >= 0x80.
    pub(crate) value_high: bool,
}

impl Piece {
    fn at(start: usize) -> Self {
        Piece {
            start,
            key_end: usize::MAX,
            value_start: usize::MAX,
            end: usize::MAX,
            key_escaped: false,
            value_escaped: false,
            key_high: false,
            value_high: false,
        }
    }

    fn finish(mut self, end: usize) -> Self {
        self.end = end;
        if self.key_end == usize::MAX {
            self.key_end = end;
            self.value_start = end;
        } else {
            self.value_start = self.key_end + 1;
        }
        self
    }
}

/// Finds the next non-empty piece at or after `*pos` in one pass over its bytes, and moves
/// `*pos` past it (the lazy [`crate::Pairs`] iterator's scanner).
#[inline]
pub(crate) fn next_piece(line: &[u8], pos: &mut usize) -> Option<Piece> {
    let len = line.len();
    while *pos < len {
        let mut p = Piece::at(*pos);
        let mut end = len;
        for (i, &b) in line.iter().enumerate().skip(*pos) {
            match CLASS[usize::from(b)] {
                PLAIN => {}
                AMP => {
                    end = i;
                    break;
                }
                EQ => {
                    if p.key_end == usize::MAX {
                        p.key_end = i;
                    }
                }
                _ => {
                    let high = b == b'%' && decodes_to_non_ascii(line, i);
                    if p.key_end == usize::MAX {
                        p.key_escaped = true;
                        p.key_high |= high;
                    } else {
                        p.value_escaped = true;
                        p.value_high |= high;
                    }
                }
            }
        }
        *pos = end + 1;
        if end > p.start {
            return Some(p.finish(end));
        }
    }
    None
}

/// Turns the positions of special bytes (`&`, `=`, `%`, `+`, in order) into pieces.
#[inline(always)]
fn scan<C, E>(
    line: &[u8],
    events: impl Iterator<Item = usize>,
    ctx: &mut C,
    mut emit: E,
) -> Result<()>
where
    E: FnMut(Piece, &mut C) -> Result<()>,
{
    let mut p = Piece::at(0);
    for i in events {
        match CLASS[usize::from(line[i])] {
            AMP => {
                if i > p.start {
                    emit(p.finish(i), ctx)?;
                }
                p = Piece::at(i + 1);
            }
            EQ => {
                if p.key_end == usize::MAX {
                    p.key_end = i;
                }
            }
            _ => {
                let high = line[i] == b'%' && decodes_to_non_ascii(line, i);
                if p.key_end == usize::MAX {
                    p.key_escaped = true;
                    p.key_high |= high;
                } else {
                    p.value_escaped = true;
                    p.value_high |= high;
                }
            }
        }
    }
    if line.len() > p.start {
        emit(p.finish(line.len()), ctx)?;
    }
    Ok(())
}

/// Finds every non-empty piece of `line`, in order (the hot path of [`crate::decode_into`] and
/// of [`crate::LineView`]).
#[inline]
pub(crate) fn scan_line<C, E>(line: &[u8], ctx: &mut C, emit: E) -> Result<()>
where
    E: FnMut(Piece, &mut C) -> Result<()>,
{
    scan(line, SpecialBytes::new(line), ctx, emit)
}

/// The positions of `&`, `=`, `%` and `+` in a line, found eight bytes at a time (SWAR): a
/// line has a special byte every few bytes, where restarting a SIMD search per match costs
/// more than this simple word loop.
struct SpecialBytes<'a> {
    line: &'a [u8],
    /// Offset of the word `mask` belongs to.
    base: usize,
    /// High bit of each byte of the current word that is special, not yet yielded.
    mask: u64,
}

impl<'a> SpecialBytes<'a> {
    fn new(line: &'a [u8]) -> Self {
        let mut s = SpecialBytes {
            line,
            base: 0,
            mask: 0,
        };
        s.mask = s.word_mask(0);
        s
    }

    #[inline(always)]
    fn word_mask(&self, base: usize) -> u64 {
        match self.line.get(base..base + 8) {
            Some(word) => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(word);
                special_mask(u64::from_le_bytes(bytes))
            }
            None => {
                // The tail: pad with a byte that is not special.
                let mut bytes = [b'a'; 8];
                let tail = self.line.get(base..).unwrap_or_default();
                bytes[..tail.len()].copy_from_slice(tail);
                special_mask(u64::from_le_bytes(bytes))
            }
        }
    }
}

impl Iterator for SpecialBytes<'_> {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.base += 8;
            if self.base >= self.line.len() {
                return None;
            }
            self.mask = self.word_mask(self.base);
        }
        let i = self.base + (self.mask.trailing_zeros() / 8) as usize;
        self.mask &= self.mask - 1;
        Some(i)
    }
}

/// High bit set in each byte of `w` that is `&`, `=`, `%` or `+` (exact, no false hits).
#[inline(always)]
fn special_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    #[inline(always)]
    fn zero_bytes(x: u64) -> u64 {
        !(((x & LOW7) + LOW7) | x | LOW7)
    }
    zero_bytes(w ^ (ONES * u64::from(b'&')))
        | zero_bytes(w ^ (ONES * u64::from(b'=')))
        | zero_bytes(w ^ (ONES * u64::from(b'%')))
        | zero_bytes(w ^ (ONES * u64::from(b'+')))
}

/// Whether the `%` at `i` starts an escape of a byte >= 0x80 (the only kind that can make
/// decoded text invalid UTF-8 when the raw line is valid).
#[inline]
fn decodes_to_non_ascii(line: &[u8], i: usize) -> bool {
    matches!(
        line.get(i + 1),
        Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    ) && line.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bytes_are_found_exactly() {
        let cases: &[&[u8]] = &[
            b"",
            b"a",
            b"a=1&b=2",
            b"&&&&&&&&&&&&&&&&&",
            b"%+=&%+=&x%+=&",
            b"\x00\x80\xff%\x25\x26\x2a\x2b\x2c\x3c\x3d\x3e\xa5\xa6\xab\xbd",
            b"0123456789abcdef=",
        ];
        for line in cases {
            let want: Vec<usize> = line
                .iter()
                .enumerate()
                .filter(|(_, b)| b"&=%+".contains(b))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(
                SpecialBytes::new(line).collect::<Vec<_>>(),
                want,
                "{line:?}"
            );
        }
        for b in 0..=255u8 {
            let line = [b; 11];
            let n = SpecialBytes::new(&line).count();
            assert_eq!(n, if b"&=%+".contains(&b) { 11 } else { 0 }, "byte {b}");
        }
    }
}
