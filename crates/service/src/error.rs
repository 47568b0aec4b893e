//! The service's error type.

use std::path::PathBuf;

/// What went wrong starting or running the service, with the setting, file or job it concerns.
/// Messages never carry a token, a card number or a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `[serve]` setting is missing or has a bad value.
    #[error("configuration: serve.{key}: {message}")]
    Setting {
        /// The key inside `[serve]`.
        key: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The variable `serve.tokens_env` names holds no token: the service refuses to start
    /// without one (every API route needs a bearer token).
    #[error(
        "configuration: serve.tokens_env: the variable {variable} holds no bearer token (comma-separated tokens); the service does not start without one"
    )]
    NoTokens {
        /// The variable's name (as [`kvp_format::shown_env_name`] shows it).
        variable: String,
    },
    /// The engine's settings or engine failed.
    #[error(transparent)]
    Engine(Box<orchestrator::Error>),
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] sequence_ledger::Error),
    /// A file or folder of the data directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A job record could not be read or written.
    #[error("job record {}: {source}", path.display())]
    Record {
        /// The record's file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("TLS: {message}")]
    Tls {
        /// What was wrong (file names, never key material).
        message: String,
    },
    /// A blocking task did not return (a panic, or the runtime shutting down).
    #[error("a background task failed: {0}")]
    Task(String),
}

impl From<orchestrator::Error> for Error {
    fn from(e: orchestrator::Error) -> Self {
        Self::Engine(Box::new(e))
    }
}

/// The service's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn task(e: &tokio::task::JoinError) -> Self {
        Self::Task(kvp_format::mask_digit_runs(&e.to_string()).into_owned())
    }
}

/// Runs blocking work (files with their fsyncs, ledger reads) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::task(&e))?
}
