//! What validation is told (`ValidateOptions`, `Policy`) and what it answers (`Problem`,
//! `Report`).

use std::fmt;

use serde::Serialize;

use crate::fields::keys;
use crate::{CompleteFile, FileName, ProcessFile};

/// Whether a rule rejects or allows what it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Report it as a problem.
    Reject,
    /// Accept it silently.
    Allow,
}

/// What [`crate::validate`] checks. `Default` is strict: the protocol's rules, nothing relaxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Stop recording problems after this many (they are still counted). Default 100.
    pub max_problems: usize,
    /// CRLF line ends. Default `Allow` (the protocol accepts LF and CRLF).
    pub crlf: Policy,
    /// A last line without a newline. Default `Allow`.
    pub missing_final_newline: Policy,
    /// A UTF-8 byte order mark at the start. Default `Reject`.
    pub bom: Policy,
    /// A blank line followed by more content (trailing blank lines are always accepted).
    /// Default `Reject`.
    pub blank_lines: Policy,
    /// A key repeated on one line. Default `Reject`.
    pub repeated_keys: Policy,
    /// REQUEST: `xIndex` must equal the line's 0-based position; RESPONSE: `xIndex` must be
    /// unique (lines may come in any order). Default `Reject`.
    pub index: Policy,
    /// `xSequenceNumber` must equal the `X` of the file name. Default `Reject`.
    pub sequence: Policy,
    /// Keys every REQUEST line must carry besides `xIndex` and `xSequenceNumber`.
    /// Default `["xKey", "xCommand"]`.
    pub request_keys: Vec<String>,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            max_problems: 100,
            crlf: Policy::Allow,
            missing_final_newline: Policy::Allow,
            bom: Policy::Reject,
            blank_lines: Policy::Reject,
            repeated_keys: Policy::Reject,
            index: Policy::Reject,
            sequence: Policy::Reject,
            request_keys: vec![keys::KEY.to_owned(), keys::COMMAND.to_owned()],
        }
    }
}

/// One problem found by validation. The message never contains a sensitive value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file as the caller named it (a path or `REQUEST_7.KVP`).
    pub file: String,
    /// 1-based line, when the problem is on one line.
    pub line: Option<u64>,
    /// The key concerned, if any.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// `FILE:LINE: message` (or `FILE: message` for whole-file problems).
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The outcome of validating one file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file as the caller named it.
    pub file: String,
    /// Its parsed name.
    pub name: FileName,
    /// Non-blank lines (records).
    pub records: u64,
    /// The problems, at most [`ValidateOptions::max_problems`].
    pub problems: Vec<Problem>,
    /// All problems found, including those not recorded.
    pub total_problems: u64,
    /// The parsed PROCESS line, when the file is a PROCESS file and its line was readable.
    pub process: Option<ProcessFile>,
    /// The parsed COMPLETE line, likewise.
    pub complete: Option<CompleteFile>,
    /// RESPONSE files: every valid `xIndex` seen, in file order (for [`crate::check_response`]).
    pub response_indexes: Vec<u64>,
}

impl Report {
    /// Whether no problem was found.
    pub fn is_valid(&self) -> bool {
        self.total_problems == 0
    }
}
