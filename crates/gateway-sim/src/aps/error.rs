//! Errors of the APS simulator (start-up and journal I/O; protocol problems are answers).

use std::path::PathBuf;

/// What stopped the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener could not be bound.
    #[error("APS simulator: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The journal could not be read or written.
    #[error("APS simulator journal {}: line {line}: {message}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// 1-based line (0 when not tied to a line).
        line: u64,
        /// What failed.
        message: String,
        /// The I/O error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The options are inconsistent (e.g. two merchants with one identifier).
    #[error("APS simulator options: {message}")]
    Options {
        /// What was wrong.
        message: String,
    },
}

/// The APS simulator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
