//! Errors of the APS batch client.

/// What went wrong talking to Amazon Payment Services, or preparing a batch for it.
///
/// Messages name fields, lines and batch references, never secrets (access code, SHA phrases)
/// and never whole request or response bodies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input record cannot become a line of an APS batch file.
    #[error("APS input: field `{field}`: {message}")]
    Input {
        /// The APS parameter name (`amount`, `command`, ...).
        field: String,
        /// What was wrong (the value is quoted only for non-sensitive fields).
        message: String,
    },
    /// The account configuration is incomplete or invalid.
    #[error("APS account {account}: setting `{key}`: {message}")]
    Config {
        /// The account.
        account: String,
        /// The setting.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// A `batch_reference` breaks the service's rules (at most 20 characters from `[A-Za-z0-9_./-]`).
    #[error("invalid batch_reference: {message}")]
    Reference {
        /// What was wrong.
        message: String,
    },
    /// The batch file could not be written or a `batch_results` CSV could not be read.
    #[error("APS batch {reference}: CSV line {line}: {message}")]
    Csv {
        /// The batch reference (or `-` before one is known).
        reference: String,
        /// 1-based line of the CSV text (0 when not tied to a line).
        line: u64,
        /// What was wrong.
        message: String,
        /// The csv crate's error, if it came from there.
        #[source]
        source: Option<csv::Error>,
    },
    /// The HTTP exchange failed (connection, timeout, status) after the allowed retries.
    #[error("APS {operation} for batch {reference}: HTTP: {message}")]
    Http {
        /// `UPLOAD_BATCH_FILE`, `GET_BATCH_RESULTS` or `PROCESS_BATCH`.
        operation: &'static str,
        /// The batch reference.
        reference: String,
        /// What failed.
        message: String,
        /// The transport error, if any.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// An answer's signature does not verify with the response phrase: it is not trusted.
    #[error(
        "APS {operation} for batch {reference}: the response signature does not verify; answer refused"
    )]
    BadSignature {
        /// The operation whose answer was refused.
        operation: &'static str,
        /// The batch reference.
        reference: String,
    },
    /// An answer was malformed or broke a protocol rule (unexpected code, wrong echo, bad rows).
    #[error("APS {operation} for batch {reference}: {message}")]
    Protocol {
        /// The operation.
        operation: &'static str,
        /// The batch reference.
        reference: String,
        /// What was wrong.
        message: String,
    },
    /// The service answered with an error code that ends the attempt.
    #[error("APS {operation} for batch {reference}: {response_code} {response_message}")]
    Rejected {
        /// The operation.
        operation: &'static str,
        /// The batch reference.
        reference: String,
        /// The 5-digit code as sent.
        response_code: String,
        /// The service's message.
        response_message: String,
    },
    /// Polling ran past the configured deadline (the batch should be marked Stuck).
    #[error("APS batch {reference}: still {phase} after the polling deadline")]
    Deadline {
        /// The batch reference.
        reference: String,
        /// `validating` or `processing`.
        phase: &'static str,
    },
}

/// The APS client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Input {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn protocol(
        operation: &'static str,
        reference: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Protocol {
            operation,
            reference: reference.into(),
            message: message.into(),
        }
    }

    /// True for failures worth retrying later without changing anything (transport, deadline).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Http { .. } | Self::Deadline { .. })
    }
}

impl From<gateway_protocol::money::MoneyError> for Error {
    fn from(e: gateway_protocol::money::MoneyError) -> Self {
        Error::Input {
            field: e.field.to_owned(),
            message: e.message,
        }
    }
}
