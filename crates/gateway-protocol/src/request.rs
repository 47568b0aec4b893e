//! What goes into a batch: its lines, and the files a dry run writes instead of uploading.

use bytes::Bytes;

/// One transaction as it goes into a batch: its `xIndex` and its fields (without the
/// credentials and protocol fields, which the protocol adds).
#[derive(Debug, Clone, Copy)]
pub struct BatchLine<'a> {
    /// 0-based line number in the batch.
    pub index: u64,
    /// The caller's transaction fields, in input order.
    pub fields: &'a [(String, String)],
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
                let masked: Vec<Vec<(String, String)>> =
                    lines.iter().map(|l| mask_fields(l.fields)).collect();
                let view: Vec<BatchLine<'_>> = lines
                    .iter()
                    .zip(&masked)
                    .map(|(l, fields)| BatchLine {
                        index: l.index,
                        fields,
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
