//! The demo crate's error type.

use std::path::PathBuf;

/// What went wrong building or running a demo world.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder of the world could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The world cannot be built as asked (a mixed input from a CSV world, an account number
    /// out of range, a drop location that does not parse).
    #[error("demo: {0}")]
    Invalid(String),
    /// An account's drop could not be opened.
    #[error("account {account}: storage: {source}")]
    Storage {
        /// The account.
        account: String,
        /// The backend's error.
        #[source]
        source: storage_backends::Error,
    },
    /// The gateway simulator could not start or failed while running.
    #[error("gateway-sim: {0}")]
    Simulator(#[from] gateway_sim::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
