//! The request fields the transaction rules read, and three ways to hold a line's values:
//! [`LineFields`] (borrowed from the REQUEST bytes through a `kvp_format::LineView`, what the
//! batch loop uses), a decoded [`kvp_format::Record`], and a slice of pairs (unit tests).

use std::borrow::Cow;

use kvp_format::LineView;

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

/// The values of one line's [`Key`]s, taken from a [`LineView`] in one pass over its pairs:
/// borrowed from the line unless they had to be percent-decoded. Other keys are skipped
/// without decoding their values. Each slot holds the first occurrence of its key (REQUEST
/// lines with a repeated key are refused before any line is processed).
pub(crate) struct LineFields<'a> {
    slots: [Option<Cow<'a, str>>; KEYS],
}

impl<'a> LineFields<'a> {
    /// A line without any of the keys.
    pub(crate) fn empty() -> LineFields<'a> {
        LineFields {
            slots: [const { None }; KEYS],
        }
    }

    /// Collects the keys the rules read from `view`.
    pub(crate) fn from_view(view: &LineView<'a>) -> LineFields<'a> {
        let mut slots = [const { None }; KEYS];
        for i in 0..view.len() {
            let Some(key) = view.key(i).as_deref().and_then(Key::from_name) else {
                continue;
            };
            let slot: &mut Option<Cow<'a, str>> = &mut slots[key as usize];
            if slot.is_none() {
                *slot = view.value(i);
            }
        }
        LineFields { slots }
    }
}

impl Fields for LineFields<'_> {
    fn raw(&self, key: Key) -> Option<&str> {
        self.slots[key as usize].as_deref()
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
            assert_eq!(*k as usize, i);
        }
        assert_eq!(Key::from_name("xkey"), None);
        assert_eq!(Key::from_name("xName"), None);
    }

    #[test]
    fn view_fields_agree_with_record_and_pairs() {
        let line: &[u8] =
            b"xIndex=0&xKey=k&xName=Jo+Smith&xInvoice=A%20B&x%43VV=123&xZip=&xAmount=1.00";
        let mut buf = ViewBuf::new();
        let view = buf.view(line).unwrap();
        let fields = LineFields::from_view(&view);
        let mut rec = kvp_format::Record::new();
        view.to_record(&mut rec);
        let pairs: Vec<(&str, &str)> = rec.iter().collect();
        for k in ALL {
            assert_eq!(fields.raw(k), rec.raw(k), "{k:?}");
            assert_eq!(fields.raw(k), pairs.as_slice().raw(k), "{k:?}");
            assert_eq!(fields.field(k), rec.field(k), "{k:?}");
        }
        assert_eq!(fields.raw(Key::Invoice), Some("A B"));
        assert_eq!(fields.raw(Key::Cvv), Some("123"));
        assert_eq!(fields.raw(Key::Zip), Some(""));
        assert_eq!(fields.field(Key::Zip), None);
        assert!(matches!(
            fields.slots[Key::Key as usize],
            Some(Cow::Borrowed(_))
        ));
    }
}
