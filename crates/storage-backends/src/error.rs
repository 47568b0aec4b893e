//! The one error type of every backend: a small set of kinds callers branch on, each carrying
//! the location it happened at and the backend's own error as `source`.

use std::fmt;

/// A backend's own error, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is; the only thing callers should branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file (or folder) does not exist.
    NotFound,
    /// `put_if_absent` found the name taken.
    AlreadyExists,
    /// Authentication failed or the server refused access.
    PermissionDenied,
    /// The operation may succeed if retried (connection lost, timeout, 5xx, throttling).
    /// Retrying is safe: every operation of the trait is idempotent or atomic.
    Transient,
    /// The location or the options are wrong (bad URL, missing key file, unknown host key).
    Config,
    /// Anything else; not retried.
    Other,
}

impl ErrorKind {
    /// A short lower-case name ("not found", "transient", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Transient => "transient failure",
            ErrorKind::Config => "configuration error",
            ErrorKind::Other => "error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed storage operation.
///
/// Every variant names the `location` (the URL of the file or folder, never with a password)
/// and, where the backend gave one, its own error as `source`. Display: `"<kind>: <location>:
/// <message>"`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorKind::NotFound`].
    #[error("not found: {location}: {message}")]
    NotFound {
        /// URL of the file or folder.
        location: String,
        /// What failed.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// See [`ErrorKind::AlreadyExists`].
    #[error("already exists: {location}: {message}")]
    AlreadyExists {
        /// URL of the file.
        location: String,
        /// What failed.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// See [`ErrorKind::PermissionDenied`].
    #[error("permission denied: {location}: {message}")]
    PermissionDenied {
        /// URL of the file or folder.
        location: String,
        /// What failed.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// See [`ErrorKind::Transient`].
    #[error("transient failure: {location}: {message}")]
    Transient {
        /// URL of the file or folder.
        location: String,
        /// What failed.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// See [`ErrorKind::Config`].
    #[error("configuration error: {location}: {message}")]
    Config {
        /// The location (or the text that failed to parse as one).
        location: String,
        /// What is wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// See [`ErrorKind::Other`].
    #[error("error: {location}: {message}")]
    Other {
        /// URL of the file or folder.
        location: String,
        /// What failed.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// Builds an error of `kind`.
    pub fn new(
        kind: ErrorKind,
        location: impl Into<String>,
        message: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        let (location, message) = (location.into(), message.into());
        match kind {
            ErrorKind::NotFound => Error::NotFound {
                location,
                message,
                source,
            },
            ErrorKind::AlreadyExists => Error::AlreadyExists {
                location,
                message,
                source,
            },
            ErrorKind::PermissionDenied => Error::PermissionDenied {
                location,
                message,
                source,
            },
            ErrorKind::Transient => Error::Transient {
                location,
                message,
                source,
            },
            ErrorKind::Config => Error::Config {
                location,
                message,
                source,
            },
            ErrorKind::Other => Error::Other {
                location,
                message,
                source,
            },
        }
    }

    /// Builds an error of `kind` with `source` as its cause.
    pub fn with_source(
        kind: ErrorKind,
        location: impl Into<String>,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::new(kind, location, message, Some(source.into()))
    }

    /// A [`ErrorKind::Config`] error without a cause.
    pub fn config(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, location, message, None)
    }

    /// The kind to branch on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::Transient { .. } => ErrorKind::Transient,
            Error::Config { .. } => ErrorKind::Config,
            Error::Other { .. } => ErrorKind::Other,
        }
    }

    /// The URL of the file or folder the operation was about.
    pub fn location(&self) -> &str {
        match self {
            Error::NotFound { location, .. }
            | Error::AlreadyExists { location, .. }
            | Error::PermissionDenied { location, .. }
            | Error::Transient { location, .. }
            | Error::Config { location, .. }
            | Error::Other { location, .. } => location,
        }
    }

    /// The message, without kind and location.
    pub fn message(&self) -> &str {
        match self {
            Error::NotFound { message, .. }
            | Error::AlreadyExists { message, .. }
            | Error::PermissionDenied { message, .. }
            | Error::Transient { message, .. }
            | Error::Config { message, .. }
            | Error::Other { message, .. } => message,
        }
    }

    /// True for [`ErrorKind::Transient`]: the retry wrapper retries exactly these.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// Maps an `std::io::Error` from a local file operation.
    pub(crate) fn from_io(location: impl Into<String>, what: &str, err: std::io::Error) -> Self {
        let kind = ErrorKind::of_io(err.kind());
        let message = format!("{what}: {err}");
        Self::with_source(kind, location, message, err)
    }
}

impl ErrorKind {
    /// The kind of an I/O failure: connection-level and interrupted operations are
    /// `Transient`.
    pub(crate) fn of_io(kind: std::io::ErrorKind) -> ErrorKind {
        use std::io::ErrorKind as Io;
        match kind {
            Io::NotFound => ErrorKind::NotFound,
            Io::AlreadyExists => ErrorKind::AlreadyExists,
            Io::PermissionDenied => ErrorKind::PermissionDenied,
            Io::TimedOut
            | Io::Interrupted
            | Io::WouldBlock
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::ConnectionRefused
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::NotConnected => ErrorKind::Transient,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips_through_new() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::PermissionDenied,
            ErrorKind::Transient,
            ErrorKind::Config,
            ErrorKind::Other,
        ] {
            let e = Error::new(kind, "file:///x/a", "m", None);
            assert_eq!(e.kind(), kind);
            assert_eq!(e.location(), "file:///x/a");
            assert_eq!(e.message(), "m");
        }
    }

    #[test]
    fn display_names_kind_location_and_message() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::from_io("file:///srv/a.txt", "read", io);
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "not found: file:///srv/a.txt: read: gone");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn io_kinds_map() {
        use std::io::ErrorKind as Io;
        let cases = [
            (Io::NotFound, ErrorKind::NotFound),
            (Io::AlreadyExists, ErrorKind::AlreadyExists),
            (Io::PermissionDenied, ErrorKind::PermissionDenied),
            (Io::ConnectionReset, ErrorKind::Transient),
            (Io::InvalidData, ErrorKind::Other),
        ];
        for (io, want) in cases {
            let e = Error::from_io("l", "op", std::io::Error::from(io));
            assert_eq!(e.kind(), want, "{io:?}");
        }
    }
}
