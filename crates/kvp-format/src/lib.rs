//! The Sola (Cardknox) batch **KVP** file format: the line codec, typed sequence numbers and
//! file names, the four file kinds, streaming readers and writers, validation and redaction.
//!
//! A KVP file has one `application/x-www-form-urlencoded` record per line. This crate reads
//! them the WHATWG way (`+` is a space, `%XX` a byte, a bad `%` stays literal, empty pieces
//! skipped, repeated keys kept in order, decoded bytes must be UTF-8) and writes them one
//! canonical way (everything but `A-Z a-z 0-9 - . _ ~` as upper-case `%XX`, never `+`, LF line
//! ends, a final newline). See `docs/FORMAT.md` for the grammar and every rule.
//!
//! Main types:
//! - [`Record`]: one decoded line, ordered pairs; its `Debug`/`Display` mask secrets.
//!   [`LineView`] is its borrowed, lazily decoding counterpart (through a [`ViewBuf`]).
//! - [`Reader`] / [`Writer`] (and [`AsyncReader`] / [`AsyncWriter`] with the `tokio` feature):
//!   streaming, constant memory, buffer reuse through [`Reader::read_record`].
//! - [`RequestLine`], [`ProcessFile`], [`ResponseLine`], [`CompleteFile`]: the four file kinds.
//! - [`SequenceNumber`], [`FileName`], [`FileKind`]: `REQUEST_42.KVP` ⇄ (kind, 42).
//! - [`Secret`], [`mask_value`], [`mask_digit_runs`], [`contains_card_number`]: redaction of
//!   card data and keys; [`owner_only`]: files and folders only their owner can read.
//! - [`validate`] with [`ValidateOptions`]: every problem of a file, as [`Problem`]s.
//!
//! ```
//! use kvp_format::{FileName, ProcessFile, Reader, RequestLine, Writer};
//!
//! let name: FileName = "REQUEST_7.KVP".parse()?;
//! let mut w = Writer::new(Vec::new());
//! w.write_pairs([("xIndex", "0"), ("xSequenceNumber", "7"), ("xName", "Jo Smith")])?;
//! let bytes = w.into_inner();
//! assert_eq!(bytes, b"xIndex=0&xSequenceNumber=7&xName=Jo%20Smith\n");
//!
//! let mut reader = Reader::new(&bytes[..]).with_name(name.to_string());
//! let lines = reader.typed::<RequestLine>().collect::<Result<Vec<_>, _>>()?;
//! assert_eq!(lines[0].sequence, name.sequence);
//!
//! let process = ProcessFile::new("batch-key", lines.len() as u64, name.sequence);
//! assert!(!format!("{process:?}").contains("batch-key"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Guarantees: the codec does no I/O; the readers never hold more than one line; the writers
//! produce byte-identical output for equal input; `decode(encode(pairs)) == pairs` for any
//! Unicode pairs; no value of a [sensitive key](SENSITIVE_KEYS) appears in any `Debug`,
//! `Display` or error message of this crate.
#![warn(missing_docs)]

#[cfg(feature = "tokio")]
mod async_io;
mod codec;
mod complete;
mod error;
mod fields;
mod file_name;
pub mod owner_only;
mod process;
mod reader;
mod record;
mod redact;
mod report;
mod request;
mod response;
mod scan;
mod sequence;
mod serde_support;
mod validate;
mod view;
mod writer;

#[cfg(feature = "tokio")]
pub use async_io::{AsyncReader, AsyncWriter};
pub use codec::{
    ENCODE_SET, Pair, Pairs, decode_into, decode_line, decode_line_lossy, encode_component,
    encode_pair, encode_pairs, is_unreserved, pairs, percent_decode_into, split,
};
pub use complete::CompleteFile;
pub use error::{Error, Position, Result, Utf8Part, show_key};
pub use fields::{FORMAT_KVP, KvpLine, keys, parse_u64};
pub use file_name::{FileKind, FileName};
pub use process::ProcessFile;
pub use reader::{BOM, Reader, Records, Typed};
pub use record::{Iter, Record};
pub use redact::{
    EnvName, REDACTED, SENSITIVE_KEYS, Secret, contains_card_number, contains_secret, is_sensitive,
    mask_card, mask_card_numbers, mask_digit_runs, mask_key, mask_url_password, mask_value,
    shown_env_name, url_has_password,
};
pub use report::{Policy, Problem, Report, ValidateOptions};
pub use request::RequestLine;
pub use response::{ResponseLine, XResult};
pub use sequence::SequenceNumber;
pub use validate::{
    Validator, check_process, check_response, validate, validate_bytes, validate_reader,
};
pub use view::{LineView, ViewBuf};
pub use writer::Writer;
