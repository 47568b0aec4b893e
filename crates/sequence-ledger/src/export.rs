//! The whole ledger as JSON lines, for operators, audits and migrations.

use std::io::Write;

use serde::Serialize;

use crate::codec;
use crate::error::{Error, Result};
use crate::results::LineResult;
use crate::{AccountId, AccountInfo, BatchRecord, Ledger};

/// One line of [`Ledger::export`]. Tagged by `"type"`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Format {
        version: u32,
    },
    Account {
        account: &'a AccountId,
        #[serde(flatten)]
        info: AccountInfo,
    },
    Batch(&'a BatchRecord),
    Binding {
        account: &'a AccountId,
        client_ref: &'a str,
        sequence: kvp_format::SequenceNumber,
        index: u64,
        content_sha256: String,
    },
    Result {
        account: &'a AccountId,
        sequence: kvp_format::SequenceNumber,
        index: u64,
        fields: Pairs<'a>,
    },
}

/// A stored line's fields, serialised as `[[name, value], ...]` straight from the blob.
#[derive(Debug)]
struct Pairs<'a>(LineResult<'a>);

impl Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.fields().map(|(k, v)| [k, v]))
    }
}

/// Writes the lines of [`Ledger::export`], for any backend: the `format` line first
/// ([`ExportWriter::new`]), then per account its `account` line, its `batch` lines, its
/// `binding` lines and its `result` lines, in that order.
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
    lines: u64,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export: writes the `format` line.
    ///
    /// # Errors
    /// [`Error::Export`] when `out` fails.
    pub fn new(out: W) -> Result<Self> {
        let mut w = ExportWriter { out, lines: 0 };
        w.line(&Line::Format {
            version: codec::EXPORT_VERSION,
        })?;
        Ok(w)
    }

    fn line(&mut self, line: &Line<'_>) -> Result<()> {
        let out = &mut self.out;
        let write = |out: &mut W| -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, line)?;
            out.write_all(b"\n")
        };
        write(out).map_err(|source| Error::Export { source })?;
        self.lines += 1;
        Ok(())
    }

    /// An account's numbers.
    ///
    /// # Errors
    /// [`Error::Export`].
    pub fn account(&mut self, account: &AccountId, info: AccountInfo) -> Result<()> {
        self.line(&Line::Account { account, info })
    }

    /// A batch record.
    ///
    /// # Errors
    /// [`Error::Export`].
    pub fn batch(&mut self, batch: &BatchRecord) -> Result<()> {
        self.line(&Line::Batch(batch))
    }

    /// A reference's current binding.
    ///
    /// # Errors
    /// [`Error::Export`].
    pub fn binding(
        &mut self,
        account: &AccountId,
        client_ref: &str,
        binding: &crate::Binding,
    ) -> Result<()> {
        self.line(&Line::Binding {
            account,
            client_ref,
            sequence: binding.sequence,
            index: binding.index,
            content_sha256: hex::encode(binding.content_digest),
        })
    }

    /// Every stored result of a batch.
    ///
    /// # Errors
    /// [`Error::Export`].
    pub fn results(
        &mut self,
        account: &AccountId,
        sequence: kvp_format::SequenceNumber,
        results: &crate::BatchResults,
    ) -> Result<()> {
        for r in results.iter() {
            self.line(&Line::Result {
                account,
                sequence,
                index: r.index(),
                fields: Pairs(r),
            })?;
        }
        Ok(())
    }

    /// Flushes and returns the number of lines written.
    ///
    /// # Errors
    /// [`Error::Export`].
    pub fn finish(mut self) -> Result<u64> {
        self.out
            .flush()
            .map_err(|source| Error::Export { source })?;
        Ok(self.lines)
    }
}

impl Ledger {
    /// Writes the whole ledger as JSON lines: a `format` line, then per account an `account`
    /// line followed by its `batch`, `binding` and `result` lines (each object has a `"type"`).
    /// Digests are lowercase hex. A `binding` line is a reference's current binding (the last
    /// batch that took it), as in format version 1. Returns the number of lines written.
    ///
    /// # Errors
    /// [`Error::Export`] when `out` fails; storage and corruption errors.
    pub fn export(&self, out: impl Write) -> Result<u64> {
        let mut w = ExportWriter::new(out)?;
        for account in self.accounts()? {
            w.account(&account, self.account_info(&account)?)?;
            let batches = self.batches(&account)?;
            for batch in &batches {
                w.batch(batch)?;
            }
            for (client_ref, b) in self.bindings_of(&account)? {
                w.binding(&account, &client_ref, &b)?;
            }
            for batch in &batches {
                w.results(
                    &account,
                    batch.sequence,
                    &self.batch_results(&account, batch.sequence)?,
                )?;
            }
        }
        w.finish()
    }
}
