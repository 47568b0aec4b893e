//! Shared pieces of the four typed file kinds: the `KvpLine` trait, key names and the
//! helpers that pull typed values out of a `Record`.

use crate::error::{Error, Position, Result, show_key, shown_key};
use crate::redact::{mask_digit_runs, mask_value};
use crate::{FileKind, Record, SequenceNumber};

/// Key names used by the protocol.
pub mod keys {
    /// 0-based row number of a REQUEST/RESPONSE line.
    pub const INDEX: &str = "xIndex";
    /// The batch sequence number `X`, on every line of every file.
    pub const SEQUENCE: &str = "xSequenceNumber";
    /// Merchant key (REQUEST) or batch credential (PROCESS). Sensitive.
    pub const KEY: &str = "xKey";
    /// PROCESS/COMPLETE: lines in the REQUEST.
    pub const SUBMITTED_COUNT: &str = "xSubmittedCount";
    /// PROCESS/COMPLETE: `KVP`.
    pub const FORMAT: &str = "xFormat";
    /// RESPONSE/COMPLETE: result letter.
    pub const RESULT: &str = "xResult";
    /// RESPONSE/COMPLETE: status word.
    pub const STATUS: &str = "xStatus";
    /// RESPONSE/COMPLETE: error text.
    pub const ERROR: &str = "xError";
    /// COMPLETE: lines processed.
    pub const PROCESSED_COUNT: &str = "xProcessedCount";
    /// REQUEST: the transaction command (`cc:sale`, ...).
    pub const COMMAND: &str = "xCommand";
}

/// The value of `xFormat` in a PROCESS file.
pub const FORMAT_KVP: &str = "KVP";

/// A typed line of one of the four file kinds, convertible to and from a [`Record`].
pub trait KvpLine: Sized {
    /// Which file the line belongs to.
    const KIND: FileKind;
    /// Converts a decoded record; `line` (1-based) is used in errors only.
    ///
    /// # Errors
    /// [`Error::Format`] for a missing, repeated or ill-typed required key.
    fn from_record(record: Record, line: u64) -> Result<Self>;
    /// The record in protocol key order.
    fn to_record(&self) -> Record;
}

pub(crate) fn pos(kind: FileKind, line: u64, key: &str) -> Position {
    Position {
        file: None,
        kind: Some(kind),
        line: Some(line),
        key: Some(shown_key(key.to_owned())),
    }
}

/// The single value of a required key.
pub(crate) fn required<'r>(
    rec: &'r Record,
    kind: FileKind,
    line: u64,
    key: &str,
) -> Result<&'r str> {
    optional(rec, kind, line, key)?.ok_or_else(|| {
        Error::format(
            pos(kind, line, key),
            format!(
                "required key {} is missing from this {kind} line",
                show_key(key)
            ),
        )
    })
}

/// The single value of an optional key (a repeated key is an error).
pub(crate) fn optional<'r>(
    rec: &'r Record,
    kind: FileKind,
    line: u64,
    key: &str,
) -> Result<Option<&'r str>> {
    let mut found = rec.get_all(key);
    let first = found.next();
    if found.next().is_some() {
        return Err(Error::format(
            pos(kind, line, key),
            format!("key {} appears more than once on this line", show_key(key)),
        ));
    }
    Ok(first)
}

/// A canonical non-negative decimal (`0`, `17`; not `017`, `+1`, ` 1`).
pub fn parse_u64(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || (value.len() > 1 && value.starts_with('0')) {
        return None;
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

pub(crate) fn u64_value(value: &str, kind: FileKind, line: u64, key: &str) -> Result<u64> {
    parse_u64(value).ok_or_else(|| {
        Error::format(
            pos(kind, line, key),
            format!(
                "{key} must be a whole number without leading zeros, found {:?}",
                mask_digit_runs(&mask_value(key, value))
            ),
        )
    })
}

pub(crate) fn sequence_value(value: &str, kind: FileKind, line: u64) -> Result<SequenceNumber> {
    value.parse::<SequenceNumber>().map_err(|e| {
        let reason = match &e {
            Error::InvalidSequence { reason, .. } => *reason,
            _ => "invalid",
        };
        Error::format(
            pos(kind, line, keys::SEQUENCE),
            format!(
                "{} {:?} is not a valid sequence number: {reason}",
                keys::SEQUENCE,
                mask_digit_runs(value)
            ),
        )
    })
}

/// `record` without the pairs whose key is in `skip`.
pub(crate) fn without(record: &Record, skip: &[&str]) -> Record {
    record.iter().filter(|(k, _)| !skip.contains(k)).collect()
}

/// Splits a REQUEST or RESPONSE line (both start with `xIndex`, `xSequenceNumber`) into
/// index, sequence and the other pairs in order; `line` is 1-based, for errors.
pub(crate) fn split_indexed(
    record: &Record,
    kind: FileKind,
    line: u64,
) -> Result<(u64, SequenceNumber, Record)> {
    let index = u64_value(
        required(record, kind, line, keys::INDEX)?,
        kind,
        line,
        keys::INDEX,
    )?;
    let sequence = sequence_value(required(record, kind, line, keys::SEQUENCE)?, kind, line)?;
    Ok((
        index,
        sequence,
        without(record, &[keys::INDEX, keys::SEQUENCE]),
    ))
}

/// The inverse of [`split_indexed`]: `xIndex`, `xSequenceNumber`, then `fields`.
pub(crate) fn join_indexed(index: u64, sequence: SequenceNumber, fields: &Record) -> Record {
    let mut r = Record::with_capacity(fields.len() + 2, 64);
    r.push_str(keys::INDEX, &index.to_string());
    r.push_str(keys::SEQUENCE, &sequence.to_string());
    r.extend(fields.iter());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_u64_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("17", Some(17)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("017", None),
            ("", None),
            ("+1", None),
            ("-1", None),
            ("1.0", None),
            (" 1", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_u64(text), *want, "{text:?}");
        }
    }

    #[test]
    fn required_and_optional() {
        let r: Record = [("a", "1"), ("b", "2"), ("b", "3")].into_iter().collect();
        assert_eq!(required(&r, FileKind::Request, 1, "a").unwrap(), "1");
        let e = required(&r, FileKind::Request, 4, "c")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "line 4: required key c is missing from this REQUEST line"
        );
        let e = optional(&r, FileKind::Request, 2, "b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than once"), "{e}");
        assert_eq!(optional(&r, FileKind::Request, 2, "z").unwrap(), None);
    }

    #[test]
    fn sensitive_values_are_masked_in_errors() {
        let e = u64_value("sk_live_secret", FileKind::Process, 1, "xKey").unwrap_err();
        assert!(!e.to_string().contains("sk_live_secret"), "{e}");
    }
}
