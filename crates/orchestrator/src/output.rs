//! Writing output records (and rejects) in KVP, CSV or JSON Lines, atomically.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::input::Format;

/// CSV columns after the routing ones; anything else goes, as KVP, into the `extra` column.
pub const CSV_RESPONSE_COLUMNS: &[&str] = &[
    "outcome",
    "xSequenceNumber",
    "xIndex",
    "xResult",
    "xStatus",
    "xError",
    "xErrorCode",
    "xRefNum",
    "xRefNumCurrent",
    "xAuthCode",
    "xAuthAmount",
    "xToken",
    "xMaskedCardNumber",
    "xInvoice",
    "xBatch",
    "xAvsResultCode",
    "xAvsResult",
    "xCvvResultCode",
    "xCvvResult",
];

/// Writes records to `PATH.tmp` and renames it to `PATH` on [`OutputWriter::finish`], so a
/// reader never sees half an output. The file is owner-only (0600).
#[derive(Debug)]
pub struct OutputWriter {
    format: Format,
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    columns: Vec<String>,
    buf: Vec<u8>,
    csv_started: bool,
}

impl OutputWriter {
    /// Creates the writer; `lead` are the first CSV columns (the ref and account field names).
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary file cannot be created.
    pub fn create(path: &Path, format: Format, lead: &[&str]) -> Result<Self> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // Outputs and rejects hold transaction data: owner-only (0600) whatever the umask.
        let file = kvp_format::owner_only::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut columns: Vec<String> = lead.iter().map(|s| (*s).to_owned()).collect();
        columns.extend(CSV_RESPONSE_COLUMNS.iter().map(|s| (*s).to_owned()));
        columns.push("extra".to_owned());
        Ok(Self {
            format,
            path: path.to_owned(),
            tmp,
            out: BufWriter::with_capacity(1 << 16, file),
            columns,
            buf: Vec::with_capacity(512),
            csv_started: false,
        })
    }

    /// Writes one record.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn write<K: AsRef<str>, V: AsRef<str>>(&mut self, pairs: &[(K, V)]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let formatted = self.format(pairs, &mut buf);
        let written = formatted.and_then(|()| self.write_formatted(&buf));
        self.buf = buf;
        written
    }

    /// Appends one record as this writer's format writes it to `out` (CSV: a row under the
    /// writer's columns), without writing anything: the merge formats records while it reads
    /// the ledger per account and writes them in input order later
    /// ([`OutputWriter::write_formatted`]).
    ///
    /// # Errors
    /// [`Error::Io`] when a JSON record cannot be encoded.
    pub(crate) fn format<K: AsRef<str>, V: AsRef<str>>(
        &self,
        pairs: &[(K, V)],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        match self.format {
            Format::Kvp => {
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(b'&');
                    }
                    kvp_format::encode_pair(k.as_ref(), v.as_ref(), out);
                }
                out.push(b'\n');
            }
            Format::Jsonl => {
                let mut map = serde_json::Map::new();
                for (k, v) in pairs {
                    map.entry(k.as_ref())
                        .or_insert_with(|| serde_json::Value::String(v.as_ref().to_owned()));
                }
                serde_json::to_writer(&mut *out, &map)
                    .map_err(|e| Error::io(&self.tmp, std::io::Error::other(e)))?;
                out.push(b'\n');
            }
            Format::Csv => {
                let mut extra = Vec::new();
                let mut cells = vec![""; self.columns.len()];
                for (k, v) in pairs {
                    let (k, v) = (k.as_ref(), v.as_ref());
                    match self.columns.iter().position(|c| c == k) {
                        Some(i) if cells.get(i).is_some_and(|c| c.is_empty()) => {
                            if let Some(cell) = cells.get_mut(i) {
                                *cell = v;
                            }
                        }
                        _ => {
                            if !extra.is_empty() {
                                extra.push(b'&');
                            }
                            kvp_format::encode_pair(k, v, &mut extra);
                        }
                    }
                }
                let extra = String::from_utf8_lossy(&extra).into_owned();
                if let Some(last) = cells.last_mut() {
                    *last = &extra;
                }
                write_csv_row(out, cells.into_iter());
            }
        }
        Ok(())
    }

    /// Writes records formatted by [`OutputWriter::format`] (the CSV header first).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub(crate) fn write_formatted(&mut self, bytes: &[u8]) -> Result<()> {
        if self.format == Format::Csv && !self.csv_started {
            self.csv_started = true;
            let mut header = Vec::new();
            write_csv_row(&mut header, self.columns.iter().map(String::as_str));
            self.out
                .write_all(&header)
                .map_err(|e| Error::io(&self.tmp, e))?;
        }
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// Flushes, syncs and renames the file into place.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.format == Format::Csv && !self.csv_started {
            let header = self.columns.clone();
            self.buf.clear();
            write_csv_row(&mut self.buf, header.iter().map(String::as_str));
            self.out
                .write_all(&self.buf)
                .map_err(|e| Error::io(&self.tmp, e))?;
        }
        self.out.flush().map_err(|e| Error::io(&self.tmp, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
}

fn write_csv_row<'a>(out: &mut Vec<u8>, cells: impl Iterator<Item = &'a str>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if cell.contains([',', '"', '\n', '\r']) {
            out.push(b'"');
            out.extend_from_slice(cell.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(cell.as_bytes());
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{InputReader, InputRecord, RecordSource};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_format_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let rec = pairs(&[
            ("ref", "a,\"b\" ü"),
            ("account", "acme"),
            ("outcome", "approved"),
            ("xResult", "A"),
            ("xCustom01", "x&y=z"),
        ]);
        for format in [Format::Kvp, Format::Csv, Format::Jsonl] {
            let path = dir.path().join(format!("out.{}", format.extension()));
            let mut w = OutputWriter::create(&path, format, &["ref", "account"]).unwrap();
            w.write(&rec).unwrap();
            w.finish().unwrap();
            let mut r = InputReader::open(&path, None).unwrap();
            let mut got = InputRecord::default();
            assert!(r.read_record(&mut got).unwrap());
            for (k, v) in &rec {
                if format == Format::Csv && k == "xCustom01" {
                    assert_eq!(got.get("extra"), Some("xCustom01=x%26y%3Dz"));
                } else {
                    assert_eq!(got.get(k), Some(v.as_str()), "{format:?} {k}");
                }
            }
            assert!(!r.read_record(&mut got).unwrap());
        }
    }
}
