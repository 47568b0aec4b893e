//! The service's 5-digit response codes: a 2-digit status and a 3-digit message.

use std::fmt;

use crate::batch_file::ApsCommand;

/// A parsed `response_code` (`"70138"` is status 70, message 138).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseCode {
    /// The operation result, first two digits.
    pub status: u8,
    /// The detail, last three digits.
    pub message: u16,
}

impl ResponseCode {
    /// Upload accepted.
    pub const UPLOAD_OK: Self = Self::new(50, 0);
    /// A file with this `batch_reference` was uploaded before (after a retried upload:
    /// "already uploaded").
    pub const REFERENCE_EXISTS: Self = Self::new(51, 146);
    /// Results: the file is still being validated.
    pub const STILL_VALIDATING: Self = Self::new(70, 138);
    /// Results: validation passed, the batch waits for `PROCESS_BATCH`.
    pub const VALIDATION_OK: Self = Self::new(76, 0);
    /// Results: validation failed; `batch_results` names the bad lines.
    pub const VALIDATION_FAILED: Self = Self::new(77, 136);
    /// `PROCESS_BATCH` accepted.
    pub const PROCESS_ACCEPTED: Self = Self::new(72, 147);
    /// Results: processing has not finished.
    pub const STILL_PROCESSING: Self = Self::new(70, 140);
    /// Results available: processing finished with a row per line, or (the published
    /// reference) validation passed. Told apart by the rows (see `BatchPhase::Processed`).
    pub const PROCESSED: Self = Self::new(70, 0);
    /// The request's signature did not verify at the service.
    pub const SIGNATURE_MISMATCH: Self = Self::new(0, 8);

    /// A code from its parts.
    pub const fn new(status: u8, message: u16) -> Self {
        Self { status, message }
    }

    /// Parses exactly five ASCII digits.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let status = text.get(..2)?.parse().ok()?;
        let message = text.get(2..)?.parse().ok()?;
        Some(Self { status, message })
    }

    /// Message 141: the service does not know this `batch_reference`.
    pub fn is_unknown_reference(self) -> bool {
        self.message == 141
    }
}

/// Whether a 2-digit status is a transaction's (a per-line result: 14 purchase success, 19
/// pending, ...) rather than a batch step's (50/51 upload, 70/71 results, 72/73 processing,
/// 76/77 validation). Only rows with transaction statuses can be processed results.
pub fn is_transaction_status(status: u8) -> bool {
    !matches!(status, 50 | 51 | 70..=77)
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}{:03}", self.status, self.message)
    }
}

/// Where a batch stands, from a `GET_BATCH_RESULTS` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPhase {
    /// 138: validation still running.
    Validating,
    /// 76xxx: validated, waiting for `PROCESS_BATCH`.
    Validated,
    /// 77xxx: validation failed; nothing will be processed.
    ValidationFailed,
    /// 140: processing still running.
    Processing,
    /// 70000: "results available" — after processing, or (published reference) after
    /// validation. Processed only when the answer carries per-line transaction rows; the
    /// client decides that from the rows, not from this code alone.
    Processed,
    /// 141: the service does not know the reference (never uploaded, or expired).
    UnknownReference,
    /// Anything else: an error answer.
    Failed,
}

impl BatchPhase {
    /// Classifies a results answer's code.
    pub fn of(code: ResponseCode) -> Self {
        match (code.status, code.message) {
            (_, 138) => Self::Validating,
            (_, 140) => Self::Processing,
            (_, 141) => Self::UnknownReference,
            (76, _) => Self::Validated,
            (77, _) | (_, 136) => Self::ValidationFailed,
            (70, 0) => Self::Processed,
            _ => Self::Failed,
        }
    }
}

/// The 2-digit status of a request the service refused outright ("Invalid request"): nothing
/// was done, whatever the command.
pub const INVALID_REQUEST: u8 = 0;

/// Transaction statuses that leave a line's fate open (PROTOCOL.md §3b): money may have moved.
pub const UNSETTLED_STATUSES: [(u8, &str); 4] = [
    (15, "uncertain"),
    (19, "pending"),
    (20, "on hold"),
    (40, "in review"),
];

/// The outcome of one processed line, from its 2-digit status and the line's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// The command's success status (14 purchase, 04 capture, 06 refund, 08 void).
    Approved,
    /// The command's failure status (13, 05, 07, 09).
    Declined,
    /// The service refused the request (status 00, invalid request): nothing was done.
    Error,
    /// Any other status — unsettled (15 uncertain, 19 pending, 20 on hold, 40 in review),
    /// another command's status, one we do not know — or none: the line's fate is not known
    /// and money may have moved (PROTOCOL.md decision 11). Never to be sent again.
    Unknown,
}

impl LineOutcome {
    /// Classifies `status` (the first two digits of the line's `response_code`, or its
    /// `status` column) for `command`.
    pub fn of(command: ApsCommand, status: u8) -> Self {
        let (ok, failed) = command.statuses();
        if status == ok {
            Self::Approved
        } else if status == failed {
            Self::Declined
        } else if status == INVALID_REQUEST {
            Self::Error
        } else {
            Self::Unknown
        }
    }

    /// The merged output's word: `approved`, `declined`, `error`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Error => "error",
            Self::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cases() {
        let cases: &[(&str, Option<(u8, u16)>)] = &[
            ("70138", Some((70, 138))),
            ("00008", Some((0, 8))),
            ("50000", Some((50, 0))),
            ("7013", None),
            ("701380", None),
            ("7013a", None),
            ("+7013", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let got = ResponseCode::parse(text).map(|c| (c.status, c.message));
            assert_eq!(got, *expected, "{text:?}");
        }
        assert_eq!(ResponseCode::SIGNATURE_MISMATCH.to_string(), "00008");
        assert_eq!(
            ResponseCode::parse("51146"),
            Some(ResponseCode::REFERENCE_EXISTS)
        );
    }

    #[test]
    fn phases() {
        let cases: &[(&str, BatchPhase)] = &[
            ("70138", BatchPhase::Validating),
            ("76000", BatchPhase::Validated),
            ("77136", BatchPhase::ValidationFailed),
            ("70140", BatchPhase::Processing),
            ("70000", BatchPhase::Processed),
            ("71141", BatchPhase::UnknownReference),
            ("00008", BatchPhase::Failed),
            ("71006", BatchPhase::Failed),
        ];
        for (text, phase) in cases {
            assert_eq!(
                BatchPhase::of(ResponseCode::parse(text).unwrap()),
                *phase,
                "{text}"
            );
        }
    }

    #[test]
    fn transaction_statuses() {
        for s in [0, 4, 13, 14, 15, 19, 20, 40, 99] {
            assert!(is_transaction_status(s), "{s}");
        }
        for s in [50, 51, 70, 71, 72, 73, 76, 77] {
            assert!(!is_transaction_status(s), "{s}");
        }
    }

    #[test]
    fn outcomes() {
        use ApsCommand::*;
        let cases: &[(ApsCommand, u8, LineOutcome)] = &[
            (Purchase, 14, LineOutcome::Approved),
            (Purchase, 13, LineOutcome::Declined),
            // Another command's status, or an unsettled one: not known (was Error).
            (Purchase, 4, LineOutcome::Unknown),
            (Purchase, 15, LineOutcome::Unknown),
            (Capture, 19, LineOutcome::Unknown),
            (Refund, 20, LineOutcome::Unknown),
            (VoidAuthorization, 40, LineOutcome::Unknown),
            (Capture, 99, LineOutcome::Unknown),
            (Purchase, 0, LineOutcome::Error),
            (Capture, 4, LineOutcome::Approved),
            (Capture, 5, LineOutcome::Declined),
            (Refund, 6, LineOutcome::Approved),
            (Refund, 7, LineOutcome::Declined),
            (VoidAuthorization, 8, LineOutcome::Approved),
            (VoidAuthorization, 9, LineOutcome::Declined),
            (VoidAuthorization, 0, LineOutcome::Error),
        ];
        for (cmd, status, outcome) in cases {
            assert_eq!(LineOutcome::of(*cmd, *status), *outcome, "{cmd:?} {status}");
        }
    }
}
