//! `ResponseLine` and `XResult`: one result line of a `RESPONSE_X.KVP`.

use std::fmt;

use crate::fields::{KvpLine, join_indexed, keys, split_indexed};
use crate::{FileKind, Record, Result, SequenceNumber};

/// The gateway's `xResult` letter. Unknown letters are kept, not rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XResult {
    /// `A`
    Approved,
    /// `D`
    Declined,
    /// `E`
    Error,
    /// Anything else, verbatim (an empty string when `xResult` is missing).
    Other(String),
}

impl XResult {
    /// Reads the letter (exact match: `A`, `D`, `E`).
    pub fn parse(value: &str) -> XResult {
        match value {
            "A" => XResult::Approved,
            "D" => XResult::Declined,
            "E" => XResult::Error,
            other => XResult::Other(other.to_owned()),
        }
    }

    /// The wire form.
    pub fn as_str(&self) -> &str {
        match self {
            XResult::Approved => "A",
            XResult::Declined => "D",
            XResult::Error => "E",
            XResult::Other(s) => s,
        }
    }
}

impl fmt::Display for XResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for XResult {
    fn from(value: &str) -> Self {
        XResult::parse(value)
    }
}

/// One line of a RESPONSE file. Lines may come in any order: join on [`ResponseLine::index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseLine {
    /// The `xIndex` of the request line this answers.
    pub index: u64,
    /// The batch's `X`.
    pub sequence: SequenceNumber,
    /// Every other pair in order, including `xResult`, `xStatus`, ... (read them with the
    /// accessors).
    pub fields: Record,
}

impl ResponseLine {
    /// A line from its parts.
    pub fn new(index: u64, sequence: SequenceNumber, fields: Record) -> Self {
        ResponseLine {
            index,
            sequence,
            fields,
        }
    }

    /// Converts a decoded record (`line` is 1-based, for errors).
    ///
    /// # Errors
    /// [`crate::Error::Format`] when `xIndex` or `xSequenceNumber` is missing, repeated or
    /// not a number. Other keys are not required.
    pub fn from_record(record: Record, line: u64) -> Result<Self> {
        let (index, sequence, fields) = split_indexed(&record, FileKind::Response, line)?;
        Ok(ResponseLine::new(index, sequence, fields))
    }

    /// `xIndex`, `xSequenceNumber`, then the fields.
    pub fn to_record(&self) -> Record {
        join_indexed(self.index, self.sequence, &self.fields)
    }

    /// Any field (first occurrence).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key)
    }

    /// `xResult` as an enum; `Other("")` when missing.
    pub fn result(&self) -> XResult {
        XResult::parse(self.get(keys::RESULT).unwrap_or(""))
    }

    /// `xStatus` (`Approved`, `Declined`, `Error`, ...).
    pub fn status(&self) -> Option<&str> {
        self.get(keys::STATUS)
    }

    /// `xError`.
    pub fn error(&self) -> Option<&str> {
        self.get(keys::ERROR)
    }

    /// `xErrorCode`.
    pub fn error_code(&self) -> Option<&str> {
        self.get("xErrorCode")
    }

    /// `xRefNum`: the gateway's reference of this transaction.
    pub fn ref_num(&self) -> Option<&str> {
        self.get("xRefNum")
    }

    /// `xRefNumCurrent`.
    pub fn ref_num_current(&self) -> Option<&str> {
        self.get("xRefNumCurrent")
    }

    /// `xAuthCode`.
    pub fn auth_code(&self) -> Option<&str> {
        self.get("xAuthCode")
    }

    /// `xAuthAmount`.
    pub fn auth_amount(&self) -> Option<&str> {
        self.get("xAuthAmount")
    }

    /// `xToken`.
    pub fn token(&self) -> Option<&str> {
        self.get("xToken")
    }

    /// `xMaskedCardNumber`.
    pub fn masked_card_number(&self) -> Option<&str> {
        self.get("xMaskedCardNumber")
    }

    /// `xInvoice`.
    pub fn invoice(&self) -> Option<&str> {
        self.get("xInvoice")
    }

    /// `xBatch`.
    pub fn batch(&self) -> Option<&str> {
        self.get("xBatch")
    }
}

impl KvpLine for ResponseLine {
    const KIND: FileKind = FileKind::Response;
    fn from_record(record: Record, line: u64) -> Result<Self> {
        ResponseLine::from_record(record, line)
    }
    fn to_record(&self) -> Record {
        ResponseLine::to_record(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xresult_table() {
        let cases: &[(&str, XResult)] = &[
            ("A", XResult::Approved),
            ("D", XResult::Declined),
            ("E", XResult::Error),
            ("V", XResult::Other("V".into())),
            ("a", XResult::Other("a".into())),
            ("", XResult::Other(String::new())),
        ];
        for (text, want) in cases {
            assert_eq!(XResult::parse(text), *want, "{text:?}");
            assert_eq!(want.as_str(), *text);
        }
    }

    #[test]
    fn accessors() {
        let r: Record = [
            ("xResult", "D"),
            ("xIndex", "5"),
            ("xStatus", "Declined"),
            ("xSequenceNumber", "2"),
            ("xError", "Insufficient funds"),
            ("xRefNum", "123"),
            ("xAvsResultCode", "YYY"),
        ]
        .into_iter()
        .collect();
        let line = ResponseLine::from_record(r, 6).unwrap();
        assert_eq!((line.index, line.sequence.get()), (5, 2));
        assert_eq!(line.result(), XResult::Declined);
        assert_eq!(line.status(), Some("Declined"));
        assert_eq!(line.error(), Some("Insufficient funds"));
        assert_eq!(line.ref_num(), Some("123"));
        assert_eq!(line.auth_code(), None);
        assert_eq!(line.get("xAvsResultCode"), Some("YYY"));
        let back = ResponseLine::from_record(line.to_record(), 6).unwrap();
        assert_eq!(back, line);
    }
}
