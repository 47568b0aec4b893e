//! `ProcessFile`: the one-line `PROCESS_X.KVP` trigger.

use crate::fields::{
    FORMAT_KVP, KvpLine, keys, optional, required, sequence_value, u64_value, without,
};
use crate::reader::read_single;
use crate::redact::Secret;
use crate::{FileKind, Record, Result, SequenceNumber};

/// The PROCESS file: the batch credential, how many lines the REQUEST has, its format and
/// the sequence number. Written last; its arrival starts processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFile {
    /// `xKey`: the batch upload credential (not a merchant key). Never printed.
    pub key: Secret<String>,
    /// `xSubmittedCount`: the number of lines in REQUEST_X.
    pub submitted_count: u64,
    /// `xFormat`: `KVP`.
    pub format: String,
    /// `xSequenceNumber`: `X`.
    pub sequence: SequenceNumber,
    /// Any other pairs, in order.
    pub extra: Record,
}

impl ProcessFile {
    /// A PROCESS file with `xFormat=KVP` and no extra pairs.
    pub fn new(key: impl Into<String>, submitted_count: u64, sequence: SequenceNumber) -> Self {
        ProcessFile {
            key: Secret::new(key.into()),
            submitted_count,
            format: FORMAT_KVP.to_owned(),
            sequence,
            extra: Record::new(),
        }
    }

    /// Converts a decoded record (`line` is 1-based, for errors).
    ///
    /// # Errors
    /// [`crate::Error::Format`] when `xKey`, `xSubmittedCount`, `xFormat` or
    /// `xSequenceNumber` is missing, repeated or ill-typed. The format's value is not
    /// checked here (see [`crate::validate`]).
    pub fn from_record(record: Record, line: u64) -> Result<Self> {
        let kind = FileKind::Process;
        let key = required(&record, kind, line, keys::KEY)?.to_owned();
        let count = required(&record, kind, line, keys::SUBMITTED_COUNT)?;
        let submitted_count = u64_value(count, kind, line, keys::SUBMITTED_COUNT)?;
        let format = required(&record, kind, line, keys::FORMAT)?.to_owned();
        let sequence = sequence_value(required(&record, kind, line, keys::SEQUENCE)?, kind, line)?;
        // Checked for repeats too, though not kept separately.
        optional(&record, kind, line, keys::INDEX)?;
        Ok(ProcessFile {
            key: Secret::new(key),
            submitted_count,
            format,
            sequence,
            extra: without(
                &record,
                &[
                    keys::KEY,
                    keys::SUBMITTED_COUNT,
                    keys::FORMAT,
                    keys::SEQUENCE,
                ],
            ),
        })
    }

    /// `xKey`, `xSubmittedCount`, `xFormat`, `xSequenceNumber`, then the extra pairs.
    pub fn to_record(&self) -> Record {
        let mut r = Record::with_capacity(4 + self.extra.len(), 64);
        r.push_str(keys::KEY, self.key.expose());
        r.push_str(keys::SUBMITTED_COUNT, &self.submitted_count.to_string());
        r.push_str(keys::FORMAT, &self.format);
        r.push_str(keys::SEQUENCE, &self.sequence.to_string());
        r.extend(self.extra.iter());
        r
    }

    /// Parses a whole PROCESS file (exactly one line; LF or CRLF; final newline optional).
    ///
    /// # Errors
    /// [`crate::Error::Format`] for zero or several lines and the errors of
    /// [`ProcessFile::from_record`] and [`crate::Reader`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let (record, line) = read_single(bytes, FileKind::Process)?;
        ProcessFile::from_record(record, line)
    }

    /// The file's bytes: one canonical line and a final LF.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.to_record().encode_into(&mut out);
        out.push(b'\n');
        out
    }
}

impl KvpLine for ProcessFile {
    const KIND: FileKind = FileKind::Process;
    fn from_record(record: Record, line: u64) -> Result<Self> {
        ProcessFile::from_record(record, line)
    }
    fn to_record(&self) -> Record {
        ProcessFile::to_record(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_redaction() {
        let p = ProcessFile::new("batch secret/key", 3, SequenceNumber::new(7).unwrap());
        let bytes = p.to_bytes();
        assert_eq!(
            bytes,
            b"xKey=batch%20secret%2Fkey&xSubmittedCount=3&xFormat=KVP&xSequenceNumber=7\n"
        );
        let back = ProcessFile::parse(&bytes).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.key.expose(), "batch secret/key");
        let shown = format!("{back:?} {:?}", back.to_record());
        assert!(!shown.contains("batch secret"), "{shown}");
    }

    #[test]
    fn parse_errors_table() {
        #[rustfmt::skip]
        let cases: &[(&[u8], &str)] = &[
            (b"", "is empty"),
            (b"xKey=k&xSubmittedCount=1&xFormat=KVP&xSequenceNumber=1\nxKey=k\n", "exactly one line"),
            (b"xSubmittedCount=1&xFormat=KVP&xSequenceNumber=1\n", "required key xKey"),
            (b"xKey=k&xSubmittedCount=one&xFormat=KVP&xSequenceNumber=1\n", "xSubmittedCount must be a whole number"),
            (b"xKey=k&xSubmittedCount=1&xSequenceNumber=1", "required key xFormat"),
            (b"xKey=k&xSubmittedCount=1&xFormat=KVP&xSequenceNumber=01", "leading zeros"),
        ];
        for (bytes, want) in cases {
            let e = ProcessFile::parse(bytes).unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(bytes)
            );
            assert!(!e.contains("xKey=k"), "{e}");
        }
    }
}
