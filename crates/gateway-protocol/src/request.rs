//! What goes into a batch: its lines, and the files a dry run writes instead of uploading.

use std::borrow::Cow;

use bytes::Bytes;

/// One transaction as it goes into a batch: its `xIndex` and its fields (without the
/// credentials and protocol fields, which the protocol adds).
#[derive(Debug, Clone, Copy)]
pub struct BatchLine<'a> {
    /// 0-based line number in the batch.
    pub index: u64,
    /// The caller's transaction fields, in input order.
    pub fields: LineFields<'a>,
}

/// A transaction's fields in their canonical KVP encoding (`k=v&k=v`, each pair as
/// [`kvp_format::encode_pair`] writes it), as the engine keeps them between reading the input
/// and writing a batch. A protocol that sends KVP copies [`LineFields::encoded`] as it is;
/// one that needs the values reads them with [`LineFields::iter`] (decoded, borrowed where
/// nothing was escaped).
///
/// `Debug` shows the field names and masked values ([`kvp_format::mask_value`]), never a card
/// number.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LineFields<'a> {
    encoded: &'a [u8],
}

impl<'a> LineFields<'a> {
    /// Fields already in canonical encoding (what [`LineFields::encode`] writes). Bytes that
    /// are not valid UTF-8 once decoded read as U+FFFD: the engine only ever hands over what
    /// it encoded from text.
    pub fn from_canonical(encoded: &'a [u8]) -> Self {
        Self { encoded }
    }

    /// Appends the canonical encoding of `fields` to `out` (for [`LineFields::from_canonical`]).
    pub fn encode<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)], out: &mut Vec<u8>) {
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            kvp_format::encode_pair(k.as_ref(), v.as_ref(), out);
        }
    }

    /// The canonical bytes: `k=v&k=v`, no line ending.
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// The fields in order, decoded.
    pub fn iter(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + 'a {
        kvp_format::split(self.encoded).map(|(k, v)| (decode(k), decode(v)))
    }

    /// The fields as owned pairs.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

fn decode(raw: &[u8]) -> Cow<'_, str> {
    if raw.iter().any(|b| matches!(b, b'%' | b'+')) {
        let mut out = Vec::with_capacity(raw.len());
        kvp_format::percent_decode_into(raw, &mut out);
        Cow::Owned(String::from_utf8_lossy(&out).into_owned())
    } else {
        String::from_utf8_lossy(raw)
    }
}

impl std::fmt::Debug for LineFields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for (k, v) in self.iter() {
            list.entry(&(k.as_ref(), kvp_format::mask_value(&k, &v)));
        }
        list.finish()
    }
}

/// Whether the files of a dry run carry the real card data and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Masking {
    /// Every value of a sensitive field as [`kvp_format::mask_value`] shows it: card numbers
    /// first 6 / last 4, CVV, track data, account and routing numbers and keys `[REDACTED]`.
    #[default]
    Masked,
    /// The exact bytes that would be uploaded, card data and keys included: such files must be
    /// treated like the drop itself.
    Unmasked,
}

impl Masking {
    /// Calls `f` with `lines` as this masking shows them: unchanged, or with every sensitive
    /// value masked ([`mask_fields`]).
    pub fn apply<T>(self, lines: &[BatchLine<'_>], f: impl FnOnce(&[BatchLine<'_>]) -> T) -> T {
        match self {
            Masking::Unmasked => f(lines),
            Masking::Masked => {
                let masked: Vec<Vec<u8>> = lines
                    .iter()
                    .map(|l| {
                        let mut out = Vec::with_capacity(l.fields.encoded().len());
                        LineFields::encode(&mask_fields(&l.fields.to_vec()), &mut out);
                        out
                    })
                    .collect();
                let view: Vec<BatchLine<'_>> = lines
                    .iter()
                    .zip(&masked)
                    .map(|(l, fields)| BatchLine {
                        index: l.index,
                        fields: LineFields::from_canonical(fields),
                    })
                    .collect();
                f(&view)
            }
        }
    }
}

/// One file a batch would put at the gateway, as a dry run writes it: its path relative to the
/// account's folder (`/`-separated) and its bytes. `Debug` shows the length, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct BatchFile {
    /// Relative path, e.g. `Request/REQUEST_7.KVP`.
    pub path: String,
    /// The content.
    pub bytes: Bytes,
}

impl std::fmt::Debug for BatchFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchFile")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// `fields` with every sensitive value masked ([`kvp_format::mask_value`]).
pub fn mask_fields(fields: &[(String, String)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), kvp_format::mask_value(k, v).into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_fields_round_trip_and_debug_masks() {
        let fields = [
            ("xCommand", "cc:sale"),
            ("xName", "Jö & Co=+"),
            ("xCardNum", "4111111111111111"),
        ];
        let mut buf = Vec::new();
        LineFields::encode(&fields, &mut buf);
        let line = LineFields::from_canonical(&buf);
        let back = line.to_vec();
        let want: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(back, want);
        let shown = format!("{line:?}");
        assert!(shown.contains("411111******1111"), "{shown}");
        assert!(!shown.contains("4111111111111111"), "{shown}");
    }

    #[test]
    fn masking_masks_the_encoded_fields() {
        let mut buf = Vec::new();
        LineFields::encode(&[("xCardNum", "4111111111111111")], &mut buf);
        let lines = [BatchLine {
            index: 0,
            fields: LineFields::from_canonical(&buf),
        }];
        let masked = Masking::Masked.apply(&lines, |l| l[0].fields.to_vec());
        assert_eq!(masked[0].1, "411111******1111");
        let plain = Masking::Unmasked.apply(&lines, |l| l[0].fields.to_vec());
        assert_eq!(plain[0].1, "4111111111111111");
    }
}
