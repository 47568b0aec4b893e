//! The orchestrator's error type.

use std::path::PathBuf;

/// What went wrong, with the account, sequence number, file and line it concerns.
///
/// Messages never carry card data or keys: input values are never quoted, only field names,
/// and an input error's message is shown with its card-like digit runs masked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be read or parsed (an unknown key is named here).
    #[error("configuration: {message}")]
    Config {
        /// What was wrong.
        message: String,
        /// The config crate's error, if it came from there.
        #[source]
        source: Option<config::ConfigError>,
    },
    /// A setting is missing or has a bad value.
    #[error("configuration: {key}: {message}")]
    Setting {
        /// The dotted key, e.g. `accounts.acme.batch_key`.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An input record could not be read (syntax, encoding). `Display` masks every digit run
    /// of the message that could be a card number ([`kvp_format::mask_digit_runs`]): the message
    /// may quote a header cell or a field name.
    #[error("{file}:{line}: {}", kvp_format::mask_digit_runs(.message))]
    Input {
        /// The input file name.
        file: String,
        /// 1-based line of the record.
        line: u64,
        /// What was wrong.
        message: String,
    },
    /// The input failed validation; every problem was reported separately.
    #[error("the input has {count} invalid record(s); nothing was reserved or uploaded")]
    Invalid {
        /// How many problems were found.
        count: usize,
    },
    /// The sequence ledger refused or failed an operation.
    #[error("account {account}: ledger: {source}")]
    Ledger {
        /// The account (or `-` for ledger-wide operations).
        account: String,
        /// The ledger's error.
        #[source]
        source: sequence_ledger::Error,
    },
    /// A gateway step (or an account's setting a protocol checks) failed.
    #[error(transparent)]
    Gateway(#[from] gateway_protocol::Error),
    /// The account's drop holds answer files numbered at or above the next number this
    /// ledger would use (PROTOCOL.md decision 4b): another client used the drop, or the
    /// ledger was restored from an older copy. Nothing was uploaded or deleted.
    #[error(
        "account {account}: the drop already holds an answer for batch {found} (Response/COMPLETE_{found}.KVP or RESPONSE_{found}.KVP), but this ledger's next batch is {next}: another client used this drop, or the ledger was restored from an older copy. Nothing was uploaded or deleted. Check with the gateway which numbers it has seen, then run `paybatch ledger set-floor --account {account} {found}` (or higher) and re-run"
    )]
    ForeignAnswers {
        /// The account.
        account: String,
        /// The highest number found in the drop.
        found: kvp_format::SequenceNumber,
        /// The number this ledger was about to use.
        next: kvp_format::SequenceNumber,
    },
    /// Resuming found a state that must not be continued automatically.
    #[error("account {account}: {message}")]
    Resume {
        /// The account.
        account: String,
        /// What was found and what to do.
        message: String,
    },
    /// The shutdown signal fired before the work was done; the ledger has what was done.
    #[error("interrupted by shutdown; re-run the same command to resume")]
    Shutdown,
}

/// The orchestrator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn setting(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Setting {
            key: key.into(),
            message: message.into(),
        }
    }
}
