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

fn write_line(out: &mut impl Write, line: &Line<'_>) -> Result<()> {
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")
    };
    write(out).map_err(|source| Error::Export { source })
}

impl Ledger {
    /// Writes the whole ledger as JSON lines: a `format` line, then per account an `account`
    /// line followed by its `batch`, `binding` and `result` lines (each object has a `"type"`).
    /// Digests are lowercase hex. A `binding` line is a reference's current binding (the last
    /// batch that took it), as in format version 1. Returns the number of lines written.
    ///
    /// # Errors
    /// [`Error::Export`] when `out` fails; storage and corruption errors.
    pub fn export(&self, mut out: impl Write) -> Result<u64> {
        let mut lines = 0u64;
        write_line(
            &mut out,
            &Line::Format {
                version: codec::FORMAT_VERSION,
            },
        )?;
        lines += 1;
        for account in self.accounts()? {
            let info = self.account_info(&account)?;
            write_line(
                &mut out,
                &Line::Account {
                    account: &account,
                    info,
                },
            )?;
            lines += 1;
            for batch in self.batches(&account)? {
                write_line(&mut out, &Line::Batch(&batch))?;
                lines += 1;
            }
            for (client_ref, b) in self.bindings_of(&account)? {
                write_line(
                    &mut out,
                    &Line::Binding {
                        account: &account,
                        client_ref: &client_ref,
                        sequence: b.sequence,
                        index: b.index,
                        content_sha256: hex::encode(b.content_digest),
                    },
                )?;
                lines += 1;
            }
            for batch in self.batches(&account)? {
                let results = self.batch_results(&account, batch.sequence)?;
                for r in results.iter() {
                    write_line(
                        &mut out,
                        &Line::Result {
                            account: &account,
                            sequence: batch.sequence,
                            index: r.index(),
                            fields: Pairs(r),
                        },
                    )?;
                    lines += 1;
                }
            }
        }
        out.flush().map_err(|source| Error::Export { source })?;
        Ok(lines)
    }
}
