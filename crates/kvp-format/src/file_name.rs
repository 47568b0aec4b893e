//! `FileKind` and `FileName`: `REQUEST_42.KVP` ⇄ (kind, sequence).

use std::fmt;
use std::str::FromStr;

use crate::SequenceNumber;
use crate::error::{Error, Result};

/// The four files of the Sola batch protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// `REQUEST_X.KVP`: the transactions, one per line (client → gateway).
    Request,
    /// `PROCESS_X.KVP`: the one-line trigger, always written last (client → gateway).
    Process,
    /// `RESPONSE_X.KVP`: one result line per processed request line (gateway → client).
    Response,
    /// `COMPLETE_X.KVP`: the one-line batch verdict (gateway → client).
    Complete,
}

impl FileKind {
    /// All kinds, in lifecycle order.
    pub const ALL: [FileKind; 4] = [
        FileKind::Request,
        FileKind::Process,
        FileKind::Response,
        FileKind::Complete,
    ];

    /// The name prefix: `"REQUEST"`, `"PROCESS"`, `"RESPONSE"` or `"COMPLETE"`.
    pub fn prefix(self) -> &'static str {
        match self {
            FileKind::Request => "REQUEST",
            FileKind::Process => "PROCESS",
            FileKind::Response => "RESPONSE",
            FileKind::Complete => "COMPLETE",
        }
    }

    /// The folder under the account root: `"Request"` for the client's files, `"Response"`
    /// for the gateway's.
    pub fn folder(self) -> &'static str {
        match self {
            FileKind::Request | FileKind::Process => "Request",
            FileKind::Response | FileKind::Complete => "Response",
        }
    }

    /// Whether the file has exactly one line (PROCESS and COMPLETE).
    pub fn is_single_line(self) -> bool {
        matches!(self, FileKind::Process | FileKind::Complete)
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// A protocol file name: `{PREFIX}_{X}.KVP`, upper-case prefix and extension, canonical `X`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName {
    /// Which of the four files.
    pub kind: FileKind,
    /// Its sequence number `X`.
    pub sequence: SequenceNumber,
}

impl FileName {
    /// A name from its parts.
    pub fn new(kind: FileKind, sequence: SequenceNumber) -> Self {
        FileName { kind, sequence }
    }

    /// Parses a bare file name (no folder), e.g. `REQUEST_42.KVP`.
    ///
    /// # Errors
    /// [`Error::InvalidFileName`] saying why: unknown prefix, missing `_` or `.KVP`, or an
    /// invalid sequence number (leading zero, 0, too large, not digits).
    pub fn parse(name: &str) -> Result<Self> {
        // A name in a drop can hold anything, a card number included: shown masked.
        let bad = |reason: String| Error::InvalidFileName {
            name: crate::mask_digit_runs(&name.chars().take(200).collect::<String>()).into_owned(),
            reason: crate::mask_digit_runs(&reason).into_owned(),
        };
        let Some(stem) = name.strip_suffix(".KVP") else {
            return Err(bad("it does not end in \".KVP\"".to_owned()));
        };
        let Some((prefix, number)) = stem.split_once('_') else {
            return Err(bad("expected KIND_X.KVP, e.g. REQUEST_42.KVP".to_owned()));
        };
        let Some(kind) = FileKind::ALL.into_iter().find(|k| k.prefix() == prefix) else {
            return Err(bad(format!(
                "unknown kind {prefix:?}: expected REQUEST, PROCESS, RESPONSE or COMPLETE"
            )));
        };
        let sequence = number.parse::<SequenceNumber>().map_err(|e| match e {
            Error::InvalidSequence { reason, .. } => {
                bad(format!("sequence number {number:?}: {reason}"))
            }
            other => bad(other.to_string()),
        })?;
        Ok(FileName { kind, sequence })
    }

    /// Parses the last component of a `/`-separated path (or an OS path's file name).
    ///
    /// # Errors
    /// As [`FileName::parse`].
    pub fn from_path(path: &str) -> Result<Self> {
        let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
        FileName::parse(base)
    }

    /// The path relative to the account root: `Request/REQUEST_42.KVP`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.kind.folder(), self)
    }

    /// The same sequence number with another kind (`REQUEST_7` → `PROCESS_7`).
    pub fn with_kind(self, kind: FileKind) -> Self {
        FileName { kind, ..self }
    }
}

impl FromStr for FileName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        FileName::parse(s)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}.KVP", self.kind.prefix(), self.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<(FileKind, u32)>)] = &[
            ("REQUEST_42.KVP", Some((FileKind::Request, 42))),
            ("PROCESS_1.KVP", Some((FileKind::Process, 1))),
            (
                "RESPONSE_999999999.KVP",
                Some((FileKind::Response, 999_999_999)),
            ),
            ("COMPLETE_7.KVP", Some((FileKind::Complete, 7))),
            ("REQUEST_042.KVP", None),
            ("REQUEST_0.KVP", None),
            ("REQUEST_1000000000.KVP", None),
            ("request_1.KVP", None),
            ("REQUEST_1.kvp", None),
            ("REQUEST1.KVP", None),
            ("REQUEST_.KVP", None),
            ("REQUEST_1.KVP.tmp", None),
            ("RESULT_1.KVP", None),
            ("REQUEST_1_2.KVP", None),
            ("", None),
        ];
        for (name, want) in cases {
            let got = FileName::parse(name)
                .ok()
                .map(|f| (f.kind, f.sequence.get()));
            assert_eq!(got, *want, "{name:?}");
        }
    }

    #[test]
    fn display_path_and_round_trip() {
        let f = FileName::parse("PROCESS_12.KVP").unwrap();
        assert_eq!(f.to_string(), "PROCESS_12.KVP");
        assert_eq!(f.path(), "Request/PROCESS_12.KVP");
        assert_eq!(
            f.with_kind(FileKind::Complete).path(),
            "Response/COMPLETE_12.KVP"
        );
        assert_eq!(
            FileName::from_path("/a/b/REQUEST_3.KVP")
                .unwrap()
                .sequence
                .get(),
            3
        );
    }

    #[test]
    fn errors_say_why() {
        let cases: &[(&str, &str)] = &[
            ("REQUEST_042.KVP", "leading zeros"),
            ("REQUEST_1.txt", "does not end in"),
            ("FOO_1.KVP", "unknown kind"),
            ("REQUEST1.KVP", "expected KIND_X.KVP"),
            // Too large a number; a card number in a name is shown masked.
            ("PROCESS_4111111111111111111.KVP", "411111*********1111"),
            ("PROCESS_4111111111111111.txt", "411111******1111"),
        ];
        for (name, want) in cases {
            let e = FileName::parse(name).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
            assert!(!e.contains("4111111111111111"), "{name}: {e}");
        }
    }
}
