//! `CompleteFile`: the one-line `COMPLETE_X.KVP` verdict.

use crate::fields::{KvpLine, keys, optional, required, sequence_value, u64_value, without};
use crate::reader::read_single;
use crate::{FileKind, Record, Result, SequenceNumber};

/// The COMPLETE file the gateway writes after RESPONSE_X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteFile {
    /// `xResult`.
    pub result: String,
    /// `xStatus`: `Success`, or an error.
    pub status: String,
    /// `xError`, when present.
    pub error: Option<String>,
    /// `xProcessedCount`, when present.
    pub processed_count: Option<u64>,
    /// `xSubmittedCount` echoed, when present.
    pub submitted_count: Option<u64>,
    /// `xFormat` echoed, when present.
    pub format: Option<String>,
    /// `xSequenceNumber`: `X`.
    pub sequence: SequenceNumber,
    /// Any other pairs in order (for example an echoed `xKey`, masked in `Debug`).
    pub extra: Record,
}

const KNOWN: &[&str] = &[
    keys::RESULT,
    keys::STATUS,
    keys::ERROR,
    keys::PROCESSED_COUNT,
    keys::SUBMITTED_COUNT,
    keys::FORMAT,
    keys::SEQUENCE,
];

impl CompleteFile {
    /// Whether `xStatus` is `Success` (ASCII case-insensitive). Anything else fails the batch.
    pub fn is_success(&self) -> bool {
        self.status.eq_ignore_ascii_case("Success")
    }

    /// Converts a decoded record (`line` is 1-based, for errors).
    ///
    /// # Errors
    /// [`crate::Error::Format`] when `xResult`, `xStatus` or `xSequenceNumber` is missing,
    /// a known key is repeated, or a count or the sequence number is not a number.
    pub fn from_record(record: Record, line: u64) -> Result<Self> {
        let kind = FileKind::Complete;
        let count = |key: &str| -> Result<Option<u64>> {
            optional(&record, kind, line, key)?
                .map(|v| u64_value(v, kind, line, key))
                .transpose()
        };
        Ok(CompleteFile {
            result: required(&record, kind, line, keys::RESULT)?.to_owned(),
            status: required(&record, kind, line, keys::STATUS)?.to_owned(),
            error: optional(&record, kind, line, keys::ERROR)?.map(str::to_owned),
            processed_count: count(keys::PROCESSED_COUNT)?,
            submitted_count: count(keys::SUBMITTED_COUNT)?,
            format: optional(&record, kind, line, keys::FORMAT)?.map(str::to_owned),
            sequence: sequence_value(required(&record, kind, line, keys::SEQUENCE)?, kind, line)?,
            extra: without(&record, KNOWN),
        })
    }

    /// `xResult`, `xStatus`, `xError`, `xProcessedCount`, `xSubmittedCount`, `xFormat`,
    /// `xSequenceNumber` (the optional ones only when present), then the extra pairs.
    pub fn to_record(&self) -> Record {
        let mut r = Record::with_capacity(KNOWN.len() + self.extra.len(), 96);
        r.push_str(keys::RESULT, &self.result);
        r.push_str(keys::STATUS, &self.status);
        if let Some(e) = &self.error {
            r.push_str(keys::ERROR, e);
        }
        if let Some(n) = self.processed_count {
            r.push_str(keys::PROCESSED_COUNT, &n.to_string());
        }
        if let Some(n) = self.submitted_count {
            r.push_str(keys::SUBMITTED_COUNT, &n.to_string());
        }
        if let Some(f) = &self.format {
            r.push_str(keys::FORMAT, f);
        }
        r.push_str(keys::SEQUENCE, &self.sequence.to_string());
        r.extend(self.extra.iter());
        r
    }

    /// Parses a whole COMPLETE file (exactly one line; LF or CRLF; final newline optional).
    ///
    /// # Errors
    /// [`crate::Error::Format`] for zero or several lines and the errors of
    /// [`CompleteFile::from_record`] and [`crate::Reader`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let (record, line) = read_single(bytes, FileKind::Complete)?;
        CompleteFile::from_record(record, line)
    }

    /// The file's bytes: one canonical line and a final LF.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.to_record().encode_into(&mut out);
        out.push(b'\n');
        out
    }
}

impl KvpLine for CompleteFile {
    const KIND: FileKind = FileKind::Complete;
    fn from_record(record: Record, line: u64) -> Result<Self> {
        CompleteFile::from_record(record, line)
    }
    fn to_record(&self) -> Record {
        CompleteFile::to_record(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_round_trip() {
        let bytes = b"xResult=A&xStatus=Success&xError=&xProcessedCount=2&xSubmittedCount=2\
&xFormat=KVP&xSequenceNumber=4&xKey=secretkey\r\n";
        let c = CompleteFile::parse(bytes).unwrap();
        assert!(c.is_success());
        assert_eq!(c.error.as_deref(), Some(""));
        assert_eq!((c.processed_count, c.submitted_count), (Some(2), Some(2)));
        assert_eq!(c.extra.get("xKey"), Some("secretkey"));
        assert!(!format!("{c:?}").contains("secretkey"));
        assert_eq!(CompleteFile::parse(&c.to_bytes()).unwrap(), c);
    }

    #[test]
    fn status_table() {
        let cases: &[(&str, bool)] = &[
            ("Success", true),
            ("success", true),
            ("Error", false),
            ("", false),
            ("Successful", false),
        ];
        for (status, want) in cases {
            let line = format!("xResult=E&xStatus={status}&xSequenceNumber=1");
            assert_eq!(
                CompleteFile::parse(line.as_bytes()).unwrap().is_success(),
                *want,
                "{status}"
            );
        }
    }

    #[test]
    fn errors_table() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("xStatus=Success&xSequenceNumber=1", "required key xResult"),
            ("xResult=A&xSequenceNumber=1", "required key xStatus"),
            ("xResult=A&xStatus=Success", "required key xSequenceNumber"),
            ("xResult=A&xStatus=Success&xSequenceNumber=1&xProcessedCount=x", "xProcessedCount must be"),
            ("xResult=A&xStatus=Success&xStatus=Error&xSequenceNumber=1", "more than once"),
        ];
        for (line, want) in cases {
            let e = CompleteFile::parse(line.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
    }
}
