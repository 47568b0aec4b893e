//! The journal: one JSON line per processed transaction, append-only, flushed and fsynced once
//! per batch before that batch's RESPONSE is written.
//!
//! It is what tests read to prove "processed exactly once", and it is also the simulator's
//! memory: on start the transaction book (approvals for `xRefNum`, the duplicate window) is
//! rebuilt by replaying it. It never holds a card number, CVV, bank account or key: cards
//! appear masked (`4xxxxxxxxxxx1111`), merchants as an opaque salted id, payment sources as a
//! random token or a salted fingerprint.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::jsonl::{self, Appender};

/// One processed transaction (one REQUEST line that got a RESPONSE line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The account (batch credential) name.
    pub account: String,
    /// The batch sequence number `X`.
    pub sequence: u32,
    /// The line's `xIndex`.
    pub index: u64,
    /// The line's `xInvoice`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    /// The command as understood (canonical lower case), or as given when unknown.
    pub command: String,
    /// `A`, `D` or `E`.
    pub result: String,
    /// The `xErrorCode` answered (`00000` when approved).
    pub error_code: String,
    /// The `xRefNum` answered.
    pub ref_num: String,
    /// The `xRefNum` the line referred to (capture, refund, void).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref_num: Option<String>,
    /// The amount applied, in cents (approved money commands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<u64>,
    /// The token answered, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The masked card or account number, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<String>,
    /// Opaque id of the merchant key the line used (salted hash prefix), if it was valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    /// Duplicate-check fingerprint (salted), for approved money commands with a payment source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// When the line was processed, by the simulator's clock, in Unix milliseconds.
    pub at_unix_ms: u64,
}

impl JournalEntry {
    /// True when the line was approved (`xResult=A`).
    pub fn is_approved(&self) -> bool {
        self.result == "A"
    }
}

/// The journal file of a state directory.
#[derive(Debug)]
pub struct Journal {
    out: Appender,
}

impl Journal {
    /// The file name inside the state directory.
    pub const FILE_NAME: &'static str = "journal.jsonl";

    /// Opens (creating if needed) the journal at `path` for appending.
    ///
    /// # Errors
    /// [`Error::State`] when the file cannot be opened.
    pub(crate) fn open_append(path: &Path) -> Result<Journal> {
        Ok(Journal {
            out: Appender::open(path)?,
        })
    }

    /// Appends `entries` and fsyncs: when this returns, they survive a crash. (The batch
    /// loop writes its lines itself and uses [`Journal::append_encoded`].)
    ///
    /// # Errors
    /// [`Error::State`] when writing or syncing fails.
    #[cfg(test)]
    pub(crate) fn append(&mut self, entries: &[JournalEntry]) -> Result<()> {
        self.out.append(entries)
    }

    /// Appends already encoded entries (JSON lines, as [`JournalEntry`] serializes, each
    /// with its LF) and fsyncs: when this returns, they survive a crash.
    ///
    /// # Errors
    /// [`Error::State`] when writing or syncing fails.
    pub(crate) fn append_encoded(&mut self, lines: &[u8]) -> Result<()> {
        self.out.append_encoded(lines)
    }

    /// Reads every entry of the journal at `path` (a missing file is an empty journal).
    ///
    /// A torn last line (the process died mid-write, before the fsync that would have made the
    /// batch count) is ignored; a bad line anywhere else is an error.
    ///
    /// # Errors
    /// [`Error::State`](crate::Error::State) on I/O failure, [`Error::Journal`](crate::Error::Journal)
    /// on a corrupt line.
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<JournalEntry>> {
        jsonl::read(path.as_ref())
    }

    /// Reads the journal of the state directory `state_dir`.
    ///
    /// # Errors
    /// As [`Journal::read`].
    pub fn read_dir(state_dir: impl AsRef<Path>) -> Result<Vec<JournalEntry>> {
        Journal::read(state_dir.as_ref().join(Journal::FILE_NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> JournalEntry {
        JournalEntry {
            account: "acme".into(),
            sequence: 7,
            index: i,
            invoice: Some(format!("INV-{i}")),
            command: "cc:sale".into(),
            result: "A".into(),
            error_code: "00000".into(),
            ref_num: format!("{}", 1000 + i),
            target_ref_num: None,
            amount_cents: Some(100),
            token: None,
            masked: Some("4xxxxxxxxxxx1111".into()),
            merchant: Some("m".into()),
            fingerprint: None,
            at_unix_ms: 5,
        }
    }

    #[test]
    fn append_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(Journal::FILE_NAME);
        assert!(Journal::read(&path).unwrap().is_empty());
        let mut j = Journal::open_append(&path).unwrap();
        j.append(&[entry(0), entry(1)]).unwrap();
        drop(j);
        let mut j = Journal::open_append(&path).unwrap();
        j.append(&[entry(2)]).unwrap();
        let got = Journal::read_dir(dir.path()).unwrap();
        assert_eq!(got, vec![entry(0), entry(1), entry(2)]);
    }
}
