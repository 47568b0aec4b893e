//! `RequestLine`: one transaction of a `REQUEST_X.KVP`.

use crate::fields::{KvpLine, join_indexed, keys, split_indexed};
use crate::{FileKind, Record, Result, SequenceNumber};

/// One line of a REQUEST file: `xIndex`, `xSequenceNumber`, then the transaction's fields
/// (`xKey`, `xCommand`, `xAmount`, ...) in their original order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    /// 0-based row number; must equal the line's position in the file.
    pub index: u64,
    /// The batch's `X`.
    pub sequence: SequenceNumber,
    /// Every other pair, in order (sensitive values stay masked in `Debug`).
    pub fields: Record,
}

impl RequestLine {
    /// A line from its parts.
    pub fn new(index: u64, sequence: SequenceNumber, fields: Record) -> Self {
        RequestLine {
            index,
            sequence,
            fields,
        }
    }

    /// Converts a decoded record (`line` is 1-based, for errors).
    ///
    /// # Errors
    /// [`crate::Error::Format`] when `xIndex` or `xSequenceNumber` is missing, repeated or
    /// not a number.
    pub fn from_record(record: Record, line: u64) -> Result<Self> {
        let (index, sequence, fields) = split_indexed(&record, FileKind::Request, line)?;
        Ok(RequestLine::new(index, sequence, fields))
    }

    /// `xIndex`, `xSequenceNumber`, then the fields.
    pub fn to_record(&self) -> Record {
        join_indexed(self.index, self.sequence, &self.fields)
    }

    /// The value of a field (first occurrence).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key)
    }

    /// `xCommand`.
    pub fn command(&self) -> Option<&str> {
        self.fields.get(keys::COMMAND)
    }
}

impl KvpLine for RequestLine {
    const KIND: FileKind = FileKind::Request;
    fn from_record(record: Record, line: u64) -> Result<Self> {
        RequestLine::from_record(record, line)
    }
    fn to_record(&self) -> Record {
        RequestLine::to_record(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pairs: &[(&str, &str)]) -> Record {
        pairs.iter().copied().collect()
    }

    #[test]
    fn round_trip_keeps_order() {
        let r = rec(&[
            ("xIndex", "3"),
            ("xKey", "k"),
            ("xSequenceNumber", "9"),
            ("xCommand", "cc:sale"),
            ("xAmount", "1.00"),
        ]);
        let line = RequestLine::from_record(r, 4).unwrap();
        assert_eq!(line.index, 3);
        assert_eq!(line.sequence.get(), 9);
        assert_eq!(line.command(), Some("cc:sale"));
        assert_eq!(
            line.fields.keys().collect::<Vec<_>>(),
            ["xKey", "xCommand", "xAmount"]
        );
        assert_eq!(
            line.to_record().to_line(),
            "xIndex=3&xSequenceNumber=9&xKey=k&xCommand=cc%3Asale&xAmount=1.00"
        );
    }

    #[test]
    fn errors_table() {
        #[rustfmt::skip]
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("xSequenceNumber", "1")], "line 2: required key xIndex is missing"),
            (&[("xIndex", "0")], "required key xSequenceNumber is missing"),
            (&[("xIndex", "x"), ("xSequenceNumber", "1")], "xIndex must be a whole number"),
            (&[("xIndex", "01"), ("xSequenceNumber", "1")], "xIndex must be a whole number"),
            (&[("xIndex", "0"), ("xSequenceNumber", "0")], "not a valid sequence number"),
            (&[("xIndex", "0"), ("xIndex", "0"), ("xSequenceNumber", "1")], "more than once"),
        ];
        for (pairs, want) in cases {
            let e = RequestLine::from_record(rec(pairs), 2)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
    }
}
