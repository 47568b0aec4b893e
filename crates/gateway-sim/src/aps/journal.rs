//! The APS simulator's journal: one JSON line per processed transaction, appended and fsynced
//! once per batch before that batch's results are visible. Tests read it to prove "processed
//! exactly once"; on start it is replayed so references and orders survive a restart.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// One processed line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApsJournalEntry {
    /// The merchant.
    pub merchant_identifier: String,
    /// The batch.
    pub batch_reference: String,
    /// 1-based data row of the batch file.
    pub line_number: u64,
    /// `PURCHASE`, `CAPTURE`, `REFUND`, `VOID_AUTHORIZATION`.
    pub command: String,
    /// The order.
    pub merchant_reference: String,
    /// Minor units, if the command has an amount.
    pub amount: Option<u64>,
    /// Currency, if the command has an amount.
    pub currency: Option<String>,
    /// The 5-digit code answered.
    pub response_code: String,
    /// The gateway id given to the transaction.
    pub fort_id: String,
}

/// The journal file (or memory only, when no path is given).
#[derive(Debug)]
pub struct Journal {
    path: Option<PathBuf>,
    file: Option<File>,
    entries: Vec<ApsJournalEntry>,
}

impl Journal {
    /// Opens (creating) the journal and reads what is already there. A torn last line (a
    /// crash while appending) is ignored; any other unreadable line is an error.
    ///
    /// # Errors
    /// [`Error::Journal`] for I/O failures or a corrupt line.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self {
                path: None,
                file: None,
                entries: Vec::new(),
            });
        };
        let io = |line: u64, message: &str, source: std::io::Error| Error::Journal {
            path: path.to_owned(),
            line,
            message: message.to_owned(),
            source: Some(source),
        };
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| io(0, "cannot open", e))?;
        let mut text = Vec::new();
        (&file)
            .read_to_end(&mut text)
            .map_err(|e| io(0, "cannot read", e))?;
        let mut entries = Vec::new();
        let mut good_len = 0usize;
        let mut line_no = 0u64;
        for piece in text.split_inclusive(|b| *b == b'\n') {
            line_no += 1;
            let complete = piece.ends_with(b"\n");
            match serde_json::from_slice::<ApsJournalEntry>(piece) {
                Ok(entry) if complete => entries.push(entry),
                // A torn last line (crash while appending): cut it so appends stay whole lines.
                _ if !complete => break,
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::Journal {
                        path: path.to_owned(),
                        line: line_no,
                        message: format!("corrupt entry: {e}"),
                        source: None,
                    });
                }
            }
            good_len += piece.len();
        }
        if good_len < text.len() {
            file.set_len(good_len as u64)
                .map_err(|e| io(line_no, "cannot cut a torn line", e))?;
        }
        Ok(Self {
            path: Some(path.to_owned()),
            file: Some(file),
            entries,
        })
    }

    /// Appends a batch's entries and makes them durable (fsync) before returning.
    ///
    /// # Errors
    /// [`Error::Journal`] for I/O failures; the entries are then not recorded in memory either.
    pub fn append(&mut self, batch: Vec<ApsJournalEntry>) -> Result<()> {
        if let (Some(file), Some(path)) = (self.file.as_mut(), self.path.as_ref()) {
            let mut text = Vec::with_capacity(batch.len() * 200);
            for entry in &batch {
                serde_json::to_writer(&mut text, entry).map_err(|e| Error::Journal {
                    path: path.clone(),
                    line: 0,
                    message: format!("cannot encode: {e}"),
                    source: None,
                })?;
                text.push(b'\n');
            }
            let io = |source| Error::Journal {
                path: path.clone(),
                line: 0,
                message: "cannot append".to_owned(),
                source: Some(source),
            };
            file.write_all(&text).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        self.entries.extend(batch);
        Ok(())
    }

    /// Every entry, in the order processed.
    pub fn entries(&self) -> &[ApsJournalEntry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: u64) -> ApsJournalEntry {
        ApsJournalEntry {
            merchant_identifier: "M".into(),
            batch_reference: "PB1-x".into(),
            line_number: line,
            command: "CAPTURE".into(),
            merchant_reference: format!("o{line}"),
            amount: Some(5),
            currency: Some("USD".into()),
            response_code: "04000".into(),
            fort_id: "1".into(),
        }
    }

    #[test]
    fn survives_reopen_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aps.jsonl");
        let mut j = Journal::open(Some(&path)).unwrap();
        j.append(vec![entry(1), entry(2)]).unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"merch")
            .unwrap();
        let mut j = Journal::open(Some(&path)).unwrap();
        assert_eq!(j.entries(), &[entry(1), entry(2)]);
        j.append(vec![entry(3)]).unwrap();
        drop(j);
        assert_eq!(
            Journal::open(Some(&path)).unwrap().entries(),
            &[entry(1), entry(2), entry(3)]
        );
    }

    #[test]
    fn corrupt_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aps.jsonl");
        std::fs::write(
            &path,
            format!("garbage\n{}\n", serde_json::to_string(&entry(1)).unwrap()),
        )
        .unwrap();
        assert!(matches!(
            Journal::open(Some(&path)),
            Err(Error::Journal { line: 1, .. })
        ));
    }
}
