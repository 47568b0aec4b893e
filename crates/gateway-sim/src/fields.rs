//! The request fields the transaction rules read, and three ways to hold a line's values:
//! [`LineFields`] (borrowed from the REQUEST bytes, collected in [`RequestFields`] while the
//! file is checked; what the batch loop uses), a decoded [`kvp_format::Record`], and a slice
//! of pairs (unit tests).

use std::borrow::Cow;
use std::ops::Range;

/// Every request key a rule looks at. Keys not listed here are never read (and never
/// decoded on the fast path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// `xKey`: the merchant key.
    Merchant,
    Version,
    SoftwareName,
    SoftwareVersion,
    Command,
    CardNum,
    Exp,
    Token,
    Magstripe,
    Amount,
    Invoice,
    AllowDuplicate,
    RefNum,
    Zip,
    Street,
    Cvv,
    Routing,
    Account,
}

/// Number of [`Key`] variants.
const KEYS: usize = 18;

impl Key {
    /// The key as it appears in a REQUEST line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Merchant => "xKey",
            Key::Version => "xVersion",
            Key::SoftwareName => "xSoftwareName",
            Key::SoftwareVersion => "xSoftwareVersion",
            Key::Command => "xCommand",
            Key::CardNum => "xCardNum",
            Key::Exp => "xExp",
            Key::Token => "xToken",
            Key::Magstripe => "xMagstripe",
            Key::Amount => "xAmount",
            Key::Invoice => "xInvoice",
            Key::AllowDuplicate => "xAllowDuplicate",
            Key::RefNum => "xRefNum",
            Key::Zip => "xZip",
            Key::Street => "xStreet",
            Key::Cvv => "xCVV",
            Key::Routing => "xRouting",
            Key::Account => "xAccount",
        }
    }

    /// The key named `name` (exact, case-sensitive), if a rule reads it.
    #[cfg(test)]
    fn from_name(name: &str) -> Option<Key> {
        Some(match name {
            "xKey" => Key::Merchant,
            "xVersion" => Key::Version,
            "xSoftwareName" => Key::SoftwareName,
            "xSoftwareVersion" => Key::SoftwareVersion,
            "xCommand" => Key::Command,
            "xCardNum" => Key::CardNum,
            "xExp" => Key::Exp,
            "xToken" => Key::Token,
            "xMagstripe" => Key::Magstripe,
            "xAmount" => Key::Amount,
            "xInvoice" => Key::Invoice,
            "xAllowDuplicate" => Key::AllowDuplicate,
            "xRefNum" => Key::RefNum,
            "xZip" => Key::Zip,
            "xStreet" => Key::Street,
            "xCVV" => Key::Cvv,
            "xRouting" => Key::Routing,
            "xAccount" => Key::Account,
            _ => return None,
        })
    }
}

/// Read access to a request line's fields. Empty values count as absent, as in the API.
pub(crate) trait Fields {
    /// The first value of `key`, if present.
    fn raw(&self, key: Key) -> Option<&str>;

    /// The value of `key` when present and not empty.
    fn field(&self, key: Key) -> Option<&str> {
        self.raw(key).filter(|v| !v.is_empty())
    }
}

impl Fields for kvp_format::Record {
    fn raw(&self, key: Key) -> Option<&str> {
        self.get(key.name())
    }
}

impl Fields for [(&str, &str)] {
    fn raw(&self, key: Key) -> Option<&str> {
        let name = key.name();
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// Where a value is: in the REQUEST file or in the arena of decoded values, as a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Absent,
    File(usize, usize),
    Arena(usize, usize),
}

/// The values of the [`Key`]s of every line of a REQUEST, collected while the lines are
/// checked (`validate::quick_check` views each line once): a value that needed no decoding
/// is kept as its place in the file, the others are decoded once into `arena`. Processing a
/// line then needs no second pass over it. Each line's keys are distinct (a line with a
/// repeated key is refused before this is used).
#[derive(Debug, Default)]
pub(crate) struct RequestFields {
    /// Per line, its entries in `entries`.
    lines: Vec<Range<usize>>,
    entries: Vec<(Key, Slot)>,
    arena: String,
    /// Reused to decode a value before its UTF-8 check.
    scratch: Vec<u8>,
}

impl RequestFields {
    /// Room for about `lines` lines.
    pub(crate) fn with_capacity(lines: usize) -> RequestFields {
        RequestFields {
            lines: Vec::with_capacity(lines),
            entries: Vec::with_capacity(lines * 12),
            arena: String::new(),
            scratch: Vec::new(),
        }
    }

    /// Number of lines.
    pub(crate) fn len(&self) -> usize {
        self.lines.len()
    }

    /// Collects the values of one line — `line` is its range in `text`, the whole REQUEST,
    /// without the line ending — and ends it. Returns the line's `xIndex` and
    /// `xSequenceNumber` (decoded), which every REQUEST line must carry.
    ///
    /// The line must have passed `kvp_format::ViewBuf::view` (so every component decodes to
    /// UTF-8) and have no repeated key; a value that does not decode to UTF-8 all the same is
    /// left out.
    pub(crate) fn collect_line<'t>(&mut self, text: &'t str, line: Range<usize>) -> LineHead<'t> {
        let mut head = LineHead::default();
        let raw = text.as_bytes().get(line.clone()).unwrap_or_default();
        // Pieces end at `&`, keys at the first `=` of their piece.
        let mut start = 0;
        let mut key_end = None;
        for i in Separators::new(raw).chain(std::iter::once(raw.len())) {
            if raw.get(i) == Some(&b'=') {
                key_end.get_or_insert(i);
                continue;
            }
            if i > start {
                let key_end = key_end.unwrap_or(i);
                let value_start = (key_end + 1).min(i);
                self.piece(
                    text,
                    line.start + start..line.start + key_end,
                    line.start + value_start..line.start + i,
                    &mut head,
                );
            }
            start = i + 1;
            key_end = None;
        }
        self.end_line();
        head
    }

    /// Files one `key=value` piece (ranges in `text`).
    fn piece<'t>(
        &mut self,
        text: &'t str,
        key: Range<usize>,
        value: Range<usize>,
        head: &mut LineHead<'t>,
    ) {
        let bytes = text.as_bytes();
        let raw_key = bytes.get(key).unwrap_or_default();
        let which = match Which::of(raw_key) {
            Some(w) => w,
            // Rare: a key written with escapes.
            None if escaped(raw_key) => {
                let mut decoded = Vec::with_capacity(raw_key.len());
                kvp_format::percent_decode_into(raw_key, &mut decoded);
                match Which::of(&decoded) {
                    Some(w) => w,
                    None => return,
                }
            }
            None => return,
        };
        let raw_value = bytes.get(value.clone()).unwrap_or_default();
        let decoded = |raw: &[u8]| {
            let mut out = Vec::with_capacity(raw.len());
            kvp_format::percent_decode_into(raw, &mut out);
            String::from_utf8(out).ok()
        };
        match which {
            Which::Index | Which::Sequence => {
                let v = if escaped(raw_value) {
                    decoded(raw_value).map(Cow::Owned)
                } else {
                    text.get(value).map(Cow::Borrowed)
                };
                match which {
                    Which::Index => head.index = v,
                    _ => head.sequence = v,
                }
            }
            Which::Field(key) => {
                let slot = if escaped(raw_value) {
                    self.scratch.clear();
                    kvp_format::percent_decode_into(raw_value, &mut self.scratch);
                    let Ok(v) = std::str::from_utf8(&self.scratch) else {
                        return;
                    };
                    let start = self.arena.len();
                    self.arena.push_str(v);
                    Slot::Arena(start, self.arena.len())
                } else {
                    Slot::File(value.start, value.end)
                };
                self.entries.push((key, slot));
            }
        }
    }

    /// Ends the line being collected (its entries are those pushed since the last call).
    fn end_line(&mut self) {
        let start = self.lines.last().map_or(0, |r| r.end);
        self.lines.push(start..self.entries.len());
    }

    /// The fields of line `i` (0-based); `text` is the whole REQUEST as text.
    pub(crate) fn line<'a>(&'a self, i: usize, text: &'a str) -> LineFields<'a> {
        let mut slots = [Slot::Absent; KEYS];
        if let Some(entries) = self.lines.get(i).and_then(|r| self.entries.get(r.clone())) {
            for &(key, slot) in entries {
                slots[key as usize] = slot;
            }
        }
        LineFields {
            text,
            arena: &self.arena,
            slots,
        }
    }
}

/// A REQUEST line's `xIndex` and `xSequenceNumber`, as found by
/// [`RequestFields::collect_line`].
#[derive(Debug, Default)]
pub(crate) struct LineHead<'t> {
    pub index: Option<Cow<'t, str>>,
    pub sequence: Option<Cow<'t, str>>,
}

/// What a piece's key is to [`RequestFields::collect_line`].
enum Which {
    Index,
    Sequence,
    Field(Key),
}

impl Which {
    fn of(name: &[u8]) -> Option<Which> {
        match name {
            b"xIndex" => Some(Which::Index),
            b"xSequenceNumber" => Some(Which::Sequence),
            _ => Key::from_bytes(name).map(Which::Field),
        }
    }
}

/// Whether a raw component has something to decode (`%` or `+`).
fn escaped(raw: &[u8]) -> bool {
    raw.iter().any(|&b| b == b'%' || b == b'+')
}

/// The positions of the `&` and `=` bytes of a line, in order. Eight bytes at a time: each
/// word is turned into a mask with a high bit in every byte that is a separator (the exact
/// "byte is zero" test on `word ^ separator`), then the set bits are visited; a line costs
/// about two instructions per byte and a few per separator, without a branch per byte.
struct Separators<'a> {
    line: &'a [u8],
    /// Where the next word starts.
    next: usize,
    /// Where the word of `mask` starts.
    base: usize,
    mask: u64,
}

impl<'a> Separators<'a> {
    fn new(line: &'a [u8]) -> Separators<'a> {
        Separators {
            line,
            next: 0,
            base: 0,
            mask: 0,
        }
    }

    /// A high bit in each byte of `word` that is `&` or `=`.
    fn mask_of(word: u64) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
        let zero = |v: u64| !(((v & LOW7).wrapping_add(LOW7)) | v | LOW7);
        zero(word ^ (ONES * u64::from(b'&'))) | zero(word ^ (ONES * u64::from(b'=')))
    }
}

impl Iterator for Separators<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            let rest = self.line.get(self.next..).unwrap_or_default();
            if rest.is_empty() {
                return None;
            }
            let (word, n) = match rest.first_chunk::<8>() {
                Some(w) => (*w, 8),
                None => {
                    // The last word is padded with zero bytes, which are not separators.
                    let mut w = [0u8; 8];
                    w[..rest.len()].copy_from_slice(rest);
                    (w, rest.len())
                }
            };
            self.base = self.next;
            self.next += n;
            self.mask = Separators::mask_of(u64::from_le_bytes(word));
        }
        let i = self.base + self.mask.trailing_zeros() as usize / 8;
        self.mask &= self.mask - 1;
        Some(i)
    }
}

/// One line's values of the [`Key`]s (see [`RequestFields`]).
#[derive(Debug)]
pub(crate) struct LineFields<'a> {
    text: &'a str,
    arena: &'a str,
    slots: [Slot; KEYS],
}

impl LineFields<'_> {
    /// A line without any of the keys.
    pub(crate) fn empty() -> LineFields<'static> {
        LineFields {
            text: "",
            arena: "",
            slots: [Slot::Absent; KEYS],
        }
    }
}

impl Key {
    /// [`Key::from_name`] on bytes.
    fn from_bytes(name: &[u8]) -> Option<Key> {
        Some(match name {
            b"xKey" => Key::Merchant,
            b"xVersion" => Key::Version,
            b"xSoftwareName" => Key::SoftwareName,
            b"xSoftwareVersion" => Key::SoftwareVersion,
            b"xCommand" => Key::Command,
            b"xCardNum" => Key::CardNum,
            b"xExp" => Key::Exp,
            b"xToken" => Key::Token,
            b"xMagstripe" => Key::Magstripe,
            b"xAmount" => Key::Amount,
            b"xInvoice" => Key::Invoice,
            b"xAllowDuplicate" => Key::AllowDuplicate,
            b"xRefNum" => Key::RefNum,
            b"xZip" => Key::Zip,
            b"xStreet" => Key::Street,
            b"xCVV" => Key::Cvv,
            b"xRouting" => Key::Routing,
            b"xAccount" => Key::Account,
            _ => return None,
        })
    }
}

impl Fields for LineFields<'_> {
    fn raw(&self, key: Key) -> Option<&str> {
        match self.slots[key as usize] {
            Slot::Absent => None,
            Slot::File(s, e) => self.text.get(s..e),
            Slot::Arena(s, e) => self.arena.get(s..e),
        }
    }
}

/// Every key, in slot order (tests).
#[cfg(test)]
pub(crate) const ALL_KEYS: [Key; KEYS] = [
    Key::Merchant,
    Key::Version,
    Key::SoftwareName,
    Key::SoftwareVersion,
    Key::Command,
    Key::CardNum,
    Key::Exp,
    Key::Token,
    Key::Magstripe,
    Key::Amount,
    Key::Invoice,
    Key::AllowDuplicate,
    Key::RefNum,
    Key::Zip,
    Key::Street,
    Key::Cvv,
    Key::Routing,
    Key::Account,
];

#[cfg(test)]
mod tests {
    use super::*;
    use kvp_format::ViewBuf;

    const ALL: [Key; KEYS] = ALL_KEYS;

    #[test]
    fn names_round_trip_and_slots_are_distinct() {
        for (i, k) in ALL.iter().enumerate() {
            assert_eq!(Key::from_name(k.name()), Some(*k));
            assert_eq!(Key::from_bytes(k.name().as_bytes()), Some(*k));
            assert_eq!(*k as usize, i);
        }
        assert_eq!(Key::from_name("xkey"), None);
        assert_eq!(Key::from_name("xName"), None);
    }

    #[test]
    fn separators_in_and_across_words() {
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 64, 300] {
            let line: Vec<u8> = (0..len)
                .map(|i| match i % 7 {
                    0 => b'&',
                    3 => b'=',
                    5 => 0x80 | b'&',
                    6 => b'%',
                    _ => b'a',
                })
                .collect();
            let want: Vec<usize> = (0..len)
                .filter(|&i| matches!(line[i], b'&' | b'='))
                .collect();
            assert_eq!(Separators::new(&line).collect::<Vec<_>>(), want, "{len}");
        }
        // Every byte value, at every position of a word.
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut line = [b'a'; 8];
                line[at] = b;
                let got: Vec<usize> = Separators::new(&line).collect();
                let want = if matches!(b, b'&' | b'=') {
                    vec![at]
                } else {
                    vec![]
                };
                assert_eq!(got, want, "byte {b} at {at}");
            }
        }
    }

    #[test]
    fn request_fields_agree_with_the_decoded_record() {
        #[rustfmt::skip]
        let lines: &[&[u8]] = &[
            b"xIndex=0&xKey=k&xName=Jo+Smith&xInvoice=A%20B&x%43VV=123&xZip=&xAmount=1.00",
            b"xCommand=cc%3Asale&&xCardNum=4111111111111111&xExp=1230&xToken&=v&xStreet=%C3%A9+%F0%9F%92%B3",
            b"xInvoice=100%&xRefNum=%zz&xRouting=%4&xAccount=a=b=c&x+y=1&xKey=%2B%26%3D",
            b"xAllowDuplicate=True&xMagstripe=%25B4111%5E&xSoftwareName=\xC3\xA9&xVersion=5.0.0",
            b"",
            b"&&&",
            b"x%49ndex=7&xSequence%4Eumber=%31&xKey",
            b"xIndex=0&xSequenceNumber=1&xKey=merchant-key&xVersion=5.0.0&xSoftwareName=bench&xSoftwareVersion=1&xCommand=cc%3Asale&xCardNum=4111111111111111&xExp=1299&xAmount=1.00&xName=Jo%20Bench&xInvoice=B1-0-0&xAllowDuplicate=True&xCustom01=order%201%20a%2Bb%3Dc%26d%25=&xZip",
        ];
        // One file, the lines one after the other, collected the way `quick_check` does.
        let file: Vec<u8> = lines.join(&b"\n"[..]);
        let text = std::str::from_utf8(&file).unwrap();
        let mut fields = RequestFields::default();
        let mut buf = ViewBuf::new();
        let mut at = 0;
        let mut records = Vec::new();
        for line in lines {
            let view = buf.view(&file[at..at + line.len()]).unwrap();
            let head = fields.collect_line(text, at..at + line.len());
            let mut rec = kvp_format::Record::new();
            view.to_record(&mut rec);
            assert_eq!(head.index.as_deref(), rec.get("xIndex"), "{line:?}");
            assert_eq!(head.sequence.as_deref(), rec.get("xSequenceNumber"));
            records.push(rec);
            at += line.len() + 1;
        }
        assert_eq!(fields.len(), lines.len());
        let text = std::str::from_utf8(&file).unwrap();
        for (n, rec) in records.iter().enumerate() {
            let line = fields.line(n, text);
            let pairs: Vec<(&str, &str)> = rec.iter().collect();
            for k in ALL {
                assert_eq!(line.raw(k), rec.raw(k), "{k:?} in line {n}");
                assert_eq!(line.raw(k), pairs.as_slice().raw(k), "{k:?}");
                assert_eq!(line.field(k), rec.field(k), "{k:?}");
            }
        }
        let first = fields.line(0, text);
        assert_eq!(first.raw(Key::Invoice), Some("A B"));
        assert_eq!(first.raw(Key::Zip), Some(""));
        assert_eq!(first.field(Key::Zip), None);
        assert!(matches!(
            first.slots[Key::Merchant as usize],
            Slot::File(..)
        ));
        assert!(matches!(
            first.slots[Key::Invoice as usize],
            Slot::Arena(..)
        ));
        assert!(fields.line(99, text).raw(Key::Merchant).is_none());
        assert!(LineFields::empty().raw(Key::Command).is_none());
    }
}
