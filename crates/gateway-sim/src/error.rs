//! The simulator's error type.

use std::path::{Path, PathBuf};

use crate::knobs::CrashPoint;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while running the simulator.
///
/// Problems in what a client uploaded are never errors: they are answered in COMPLETE or
/// RESPONSE files, or the files are ignored, as the protocol says.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the state directory failed.
    #[error("gateway-sim state {path}: {action}: {source}")]
    State {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A journal line could not be written or parsed.
    #[error("gateway-sim journal {path}{}: {source}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number, when reading.
        line: Option<u64>,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The simulator's configuration is unusable (bad account name, duplicate account, ...).
    #[error("gateway-sim configuration: account {account:?}: {message}")]
    Config {
        /// The account concerned.
        account: String,
        /// What is wrong.
        message: String,
    },
    /// Another simulator (in this or another process) holds the state directory.
    #[error("gateway-sim state {path}: in use by another simulator")]
    InUse {
        /// The lock file.
        path: PathBuf,
    },
    /// An account's drop could not be opened.
    #[error("gateway-sim account {account}: cannot open its drop: {source}")]
    Open {
        /// The account.
        account: String,
        /// The backend's error.
        #[source]
        source: storage_backends::Error,
    },
    /// The crash knob fired: the simulator stopped on purpose, leaving batch `sequence` of
    /// `account` without a COMPLETE.
    #[error("gateway-sim account {account}: simulated crash at {point:?} of batch {sequence}")]
    SimulatedCrash {
        /// The account.
        account: String,
        /// The batch being processed.
        sequence: u32,
        /// Where it stopped.
        point: CrashPoint,
    },
}

impl Error {
    pub(crate) fn state(path: &Path, action: &'static str, source: std::io::Error) -> Error {
        Error::State {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}
