//! The crate's error type.
//!
//! Position conventions: line numbers are 1-based (the first line of a file is line 1);
//! `xIndex` values are 0-based row numbers, as the protocol defines them. Values of sensitive
//! keys never appear in a message (they are masked with [`crate::mask_value`]).

use std::fmt;

use crate::FileKind;
use crate::redact::{mask_digit_runs, mask_key};

/// Everything that can go wrong reading, writing or checking KVP data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sequence number outside `1..=999_999_999` or not in canonical decimal form.
    #[error("invalid sequence number {value:?}: {reason}")]
    InvalidSequence {
        /// The rejected text (or number).
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A file name that is not `KIND_X.KVP`.
    #[error("invalid file name {name:?}: {reason}")]
    InvalidFileName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Bytes that are not UTF-8 (after percent-decoding) in a key or value.
    #[error("{pos}{}", utf8_message(.pos, *.what))]
    InvalidUtf8 {
        /// Where: file, line and the key (lossily decoded when the key itself is bad).
        pos: Position,
        /// "key" or "value of key ...".
        what: Utf8Part,
        /// The decoder's finding.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The structure of a file or record is wrong (blank line, BOM, repeated or missing key,
    /// a value of the wrong type, ...).
    #[error("{pos}{message}")]
    Format {
        /// Where the problem is.
        pos: Position,
        /// What is wrong, in words a person understands.
        message: String,
    },
    /// Reading or writing failed.
    #[error("{}I/O error", display_file(file.as_deref()))]
    Io {
        /// The file name, when known.
        file: Option<String>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Converting a record to or from a user struct through serde failed.
    #[error("serde: {message}")]
    Serde {
        /// The serializer's message (values of sensitive keys are not part of it).
        message: String,
    },
}

fn display_file(file: Option<&str>) -> String {
    file.map(|f| format!("{f}: ")).unwrap_or_default()
}

/// Whether a UTF-8 error is in a key or in a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf8Part {
    /// The key itself.
    Key,
    /// The value of the key named in the position.
    Value,
}

impl fmt::Display for Utf8Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Utf8Part::Key => "the key",
            Utf8Part::Value => "the value",
        })
    }
}

/// Where in a file something happened. Every part is optional because the line codec works
/// on lines without knowing their file, and some problems concern a whole file.
///
/// The key is stored as [`mask_key`] shows it (a card number that ended up as a key is
/// masked) when built with [`Position::key`] or by this crate's readers and validators;
/// `Debug` masks it again for positions built field by field.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// File name (as given to the reader, e.g. `REQUEST_7.KVP`).
    pub file: Option<String>,
    /// The file kind, when known.
    pub kind: Option<FileKind>,
    /// 1-based line number.
    pub line: Option<u64>,
    /// The key concerned (never its value), masked with [`mask_key`].
    pub key: Option<String>,
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Position")
            .field("file", &self.file)
            .field("kind", &self.kind)
            .field("line", &self.line)
            .field("key", &self.key.as_deref().map(mask_key))
            .finish()
    }
}

impl Position {
    /// A position naming only a key (stored masked, see [`mask_key`]).
    pub fn key(key: impl Into<String>) -> Self {
        Position {
            key: Some(shown_key(key.into())),
            ..Position::default()
        }
    }

    /// A position naming only a 1-based line.
    pub fn line(line: u64) -> Self {
        Position {
            line: Some(line),
            ..Position::default()
        }
    }

    /// Fills in the file name and line where they are still unknown.
    pub fn at(mut self, file: Option<&str>, line: u64) -> Self {
        if self.file.is_none() {
            self.file = file.map(str::to_owned);
        }
        if self.line.is_none() {
            self.line = Some(line);
        }
        self
    }
}

/// Renders as a prefix such as `REQUEST_7.KVP:3: ` (empty when neither is known). The key is
/// not part of the prefix: every message names its key itself.
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: "),
            (Some(file), None) => write!(f, "{file}: "),
            (None, Some(line)) => write!(f, "line {line}: "),
            (None, None) => Ok(()),
        }
    }
}

fn utf8_message(pos: &Position, what: Utf8Part) -> String {
    let key = show_key(pos.key.as_deref().unwrap_or("?")).into_owned();
    match what {
        Utf8Part::Key => format!("the key {key} is not valid UTF-8 after percent-decoding"),
        Utf8Part::Value => {
            format!("the value of key {key} is not valid UTF-8 after percent-decoding")
        }
    }
}

impl Error {
    /// A [`Error::Format`] at `pos`.
    pub(crate) fn format(pos: Position, message: impl Into<String>) -> Self {
        Error::Format {
            pos,
            message: shown_text(message.into()),
        }
    }

    /// The position of a format or UTF-8 error.
    pub fn position(&self) -> Option<&Position> {
        match self {
            Error::InvalidUtf8 { pos, .. } | Error::Format { pos, .. } => Some(pos),
            _ => None,
        }
    }

    /// The message without its position prefix (for tools that print the position themselves).
    pub fn message(&self) -> String {
        match self {
            Error::InvalidUtf8 { pos, what, .. } => utf8_message(pos, *what),
            Error::Format { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Adds the file name and line to a positioned error where they are missing.
    pub(crate) fn at(self, file: Option<&str>, line: u64) -> Self {
        match self {
            Error::InvalidUtf8 { pos, what, source } => Error::InvalidUtf8 {
                pos: pos.at(file, line),
                what,
                source,
            },
            Error::Format { pos, message } => Error::Format {
                pos: pos.at(file, line),
                message,
            },
            other => other,
        }
    }
}

/// `key` masked with [`mask_key`], reusing the allocation when nothing is masked.
pub(crate) fn shown_key(key: String) -> String {
    match mask_key(&key) {
        std::borrow::Cow::Borrowed(_) => key,
        std::borrow::Cow::Owned(masked) => masked,
    }
}

/// A message with every card-like run of digits masked ([`mask_digit_runs`]): messages quote
/// values (`xIndex is 4111111111111111 but ...`), and a value may be a misplaced card number.
pub(crate) fn shown_text(message: String) -> String {
    match mask_digit_runs(&message) {
        std::borrow::Cow::Borrowed(_) => message,
        std::borrow::Cow::Owned(masked) => masked,
    }
}

/// A key as shown in messages: as is when it is a plain name (`xIndex`), quoted otherwise
/// (an empty key, spaces, control characters). A card-like number in the key is masked
/// first ([`mask_key`]): `"411111******1111"`.
pub fn show_key(key: &str) -> std::borrow::Cow<'_, str> {
    let masked = mask_key(key);
    if let std::borrow::Cow::Owned(masked) = masked {
        return std::borrow::Cow::Owned(format!("{masked:?}"));
    }
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if plain {
        std::borrow::Cow::Borrowed(key)
    } else {
        std::borrow::Cow::Owned(format!("{key:?}"))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_prefixes() {
        let full = Position {
            file: Some("REQUEST_7.KVP".into()),
            kind: None,
            line: Some(3),
            key: Some("xIndex".into()),
        };
        let cases: &[(Position, &str)] = &[
            (full, "REQUEST_7.KVP:3: "),
            (Position::line(4), "line 4: "),
            (Position::key("xAmount"), ""),
            (Position::default(), ""),
        ];
        for (pos, want) in cases {
            assert_eq!(pos.to_string(), *want);
        }
    }

    #[test]
    fn card_number_keys_are_masked_everywhere() {
        let card = "4111111111111111";
        assert_eq!(show_key(card), "\"411111******1111\"");
        assert_eq!(show_key("xCustom01"), "xCustom01");
        let bad = "4111111111111111\u{FFFD}";
        let errors = [
            Error::format(
                Position::key(card),
                format!("key {} repeated", show_key(card)),
            ),
            Error::InvalidUtf8 {
                pos: Position::key(bad),
                what: Utf8Part::Key,
                source: String::from_utf8(vec![0xff]).unwrap_err().utf8_error(),
            },
            Error::InvalidUtf8 {
                pos: Position::key(card),
                what: Utf8Part::Value,
                source: String::from_utf8(vec![0xff]).unwrap_err().utf8_error(),
            },
            Error::format(
                Position {
                    key: Some(card.into()),
                    ..Position::default()
                },
                "built field by field",
            ),
        ];
        for e in &errors {
            let shown = format!("{e} {e:?} {e:#?} {} {:?}", e.message(), e.position());
            assert!(!shown.contains(card), "{shown}");
            assert!(shown.contains("411111******1111"), "{shown}");
        }
        assert_eq!(
            errors[0].position().unwrap().key.as_deref(),
            Some("411111******1111")
        );
        assert_eq!(Position::key("xCustom01").key.as_deref(), Some("xCustom01"));
    }

    #[test]
    fn at_fills_only_missing_parts() {
        let e = Error::format(Position::key("xIndex"), "bad").at(Some("F.KVP"), 9);
        assert_eq!(e.to_string(), "F.KVP:9: bad");
        assert_eq!(e.position().unwrap().key.as_deref(), Some("xIndex"));
        let e = Error::format(Position::line(2), "bad").at(Some("F.KVP"), 9);
        assert_eq!(e.to_string(), "F.KVP:2: bad");
        assert_eq!(e.message(), "bad");
    }
}
