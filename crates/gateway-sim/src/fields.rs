//! The request fields the transaction rules read, and three ways to hold a line's values:
//! [`LineFields`] (borrowed from the REQUEST bytes, what the batch loop uses), a decoded
//! [`kvp_format::Record`], and a slice of pairs (unit tests).

/// Every request key a rule looks at. Keys not listed here are never read (and never
/// decoded on the fast path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Key,
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
            Key::Key => "xKey",
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
            "xKey" => Key::Key,
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

/// The values of one line's [`Key`]s, found in one pass over its raw pieces: a value that
/// needs no decoding is a slice of the line, the others are percent-decoded into an arena
/// that is handed from line to line (so a line allocates nothing once it has grown). Other
/// keys are skipped without decoding their values. Each slot holds the first occurrence of
/// its key (REQUEST lines with a repeated key are refused before any line is processed).
///
/// The line must be one that `kvp_format::ViewBuf::view` accepted: every component decodes
/// to UTF-8, so the raw line is UTF-8 too.
pub(crate) struct LineFields<'a> {
    line: &'a str,
    /// Decoded values, each checked to be UTF-8 when decoded.
    arena: Vec<u8>,
    slots: [Slot; KEYS],
}

/// Where a value is: in the line or in the arena, as a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Absent,
    Line(usize, usize),
    Arena(usize, usize),
}

impl<'a> LineFields<'a> {
    /// A line without any of the keys.
    pub(crate) fn empty() -> LineFields<'a> {
        LineFields {
            line: "",
            arena: Vec::new(),
            slots: [Slot::Absent; KEYS],
        }
    }

    /// Collects the keys the rules read from `line` (without its line ending), decoding into
    /// `arena` (cleared first). A line that is not UTF-8 (not one the view accepted) has no
    /// fields.
    pub(crate) fn from_line(line: &'a [u8], mut arena: Vec<u8>) -> LineFields<'a> {
        arena.clear();
        let mut fields = LineFields {
            line: "",
            arena,
            slots: [Slot::Absent; KEYS],
        };
        let Ok(text) = std::str::from_utf8(line) else {
            return fields;
        };
        fields.line = text;
        // One pass over the bytes: `&` ends a piece, its first `=` ends the key, `%` or `+`
        // means that side must be decoded.
        let mut start = 0;
        let mut key_end = None;
        let (mut key_escaped, mut value_escaped) = (false, false);
        for (i, &b) in line
            .iter()
            .enumerate()
            .chain(std::iter::once((line.len(), &b'&')))
        {
            match b {
                b'&' => {
                    if i > start {
                        fields.take(line, start, key_end, i, key_escaped, value_escaped);
                    }
                    start = i + 1;
                    key_end = None;
                    (key_escaped, value_escaped) = (false, false);
                }
                b'=' if key_end.is_none() => key_end = Some(i),
                b'%' | b'+' => {
                    if key_end.is_none() {
                        key_escaped = true;
                    } else {
                        value_escaped = true;
                    }
                }
                _ => {}
            }
        }
        fields
    }

    /// Files the piece `line[start..end]` (key up to `key_end`) in its slot, if it is a key
    /// the rules read and the first of its kind.
    fn take(
        &mut self,
        line: &[u8],
        start: usize,
        key_end: Option<usize>,
        end: usize,
        key_escaped: bool,
        value_escaped: bool,
    ) {
        let (key_end, value_start) = match key_end {
            Some(k) => (k, k + 1),
            None => (end, end),
        };
        let raw_key = &line[start..key_end];
        let key = if key_escaped {
            // Rare: a key written with escapes.
            let mut decoded = Vec::with_capacity(raw_key.len());
            kvp_format::percent_decode_into(raw_key, &mut decoded);
            Key::from_bytes(&decoded)
        } else {
            Key::from_bytes(raw_key)
        };
        let Some(key) = key else { return };
        let slot = &mut self.slots[key as usize];
        if *slot != Slot::Absent {
            return;
        }
        *slot = if value_escaped {
            let at = self.arena.len();
            kvp_format::percent_decode_into(&line[value_start..end], &mut self.arena);
            if std::str::from_utf8(&self.arena[at..]).is_ok() {
                Slot::Arena(at, self.arena.len())
            } else {
                self.arena.truncate(at);
                Slot::Absent
            }
        } else {
            Slot::Line(value_start, end)
        };
    }

    /// Gives the arena back, for the next line.
    pub(crate) fn into_arena(self) -> Vec<u8> {
        self.arena
    }
}

impl Key {
    /// [`Key::from_name`] on bytes.
    fn from_bytes(name: &[u8]) -> Option<Key> {
        Some(match name {
            b"xKey" => Key::Key,
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
            Slot::Line(s, e) => self.line.get(s..e),
            Slot::Arena(s, e) => self
                .arena
                .get(s..e)
                .and_then(|v| std::str::from_utf8(v).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvp_format::ViewBuf;

    const ALL: [Key; KEYS] = [
        Key::Key,
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
    fn line_fields_agree_with_the_decoded_record() {
        #[rustfmt::skip]
        let lines: &[&[u8]] = &[
            b"xIndex=0&xKey=k&xName=Jo+Smith&xInvoice=A%20B&x%43VV=123&xZip=&xAmount=1.00",
            b"xCommand=cc%3Asale&&xCardNum=4111111111111111&xExp=1230&xToken&=v&xStreet=%C3%A9+%F0%9F%92%B3",
            b"xInvoice=100%&xRefNum=%zz&xRouting=%4&xAccount=a=b=c&x+y=1&xKey=%2B%26%3D",
            b"xAllowDuplicate=True&xMagstripe=%25B4111%5E&xSoftwareName=\xC3\xA9&xVersion=5.0.0",
            b"",
            b"&&&",
        ];
        let mut arena = Vec::new();
        let mut buf = ViewBuf::new();
        for line in lines {
            let view = buf.view(line).unwrap();
            let mut rec = kvp_format::Record::new();
            view.to_record(&mut rec);
            let pairs: Vec<(&str, &str)> = rec.iter().collect();
            let fields = LineFields::from_line(line, arena);
            for k in ALL {
                assert_eq!(fields.raw(k), rec.raw(k), "{k:?} in {line:?}");
                assert_eq!(fields.raw(k), pairs.as_slice().raw(k), "{k:?}");
                assert_eq!(fields.field(k), rec.field(k), "{k:?}");
            }
            arena = fields.into_arena();
        }
        let fields = LineFields::from_line(lines[0], arena);
        assert_eq!(fields.raw(Key::Invoice), Some("A B"));
        assert_eq!(fields.raw(Key::Cvv), Some("123"));
        assert_eq!(fields.raw(Key::Zip), Some(""));
        assert_eq!(fields.field(Key::Zip), None);
        assert!(matches!(fields.slots[Key::Key as usize], Slot::Line(..)));
        assert!(
            LineFields::from_line(b"xKey=\xFF", Vec::new())
                .raw(Key::Key)
                .is_none()
        );
        assert!(LineFields::empty().raw(Key::Command).is_none());
    }
}
