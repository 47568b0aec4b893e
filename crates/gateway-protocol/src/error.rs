//! Errors of a gateway step.

use kvp_format::SequenceNumber;

/// What went wrong in a step at the gateway, with the account (and batch, file or setting)
/// it concerns. Messages never carry card data or keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The account's storage (a file drop) failed.
    #[error("account {account}: storage {path}: {source}")]
    Storage {
        /// The account.
        account: String,
        /// The path inside the drop.
        path: String,
        /// Whether trying again later may succeed (a timeout, a dropped connection), as the
        /// storage layer classified it; access denied or a bad configuration is not.
        transient: bool,
        /// The storage layer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A gateway file or answer was malformed or broke a protocol rule.
    #[error("account {account} batch {sequence}: {message}")]
    Protocol {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
        /// What was wrong.
        message: String,
    },
    /// `REQUEST_X` is already at the gateway with other transactions than the ones bound to
    /// `X`: this client did not write it, so it is neither overwritten nor triggered
    /// (PROTOCOL.md decision 4b).
    #[error(
        "account {account} batch {sequence}: Request/REQUEST_{sequence}.KVP is already in the drop with other transactions than this ledger bound to that number; it was not written by this ledger, so it is neither overwritten nor triggered (another client uses this drop, or the ledger was restored: see `paybatch ledger set-floor`; or this input changed a card or account number of a batch uploaded before a stop: its lines stay `unknown`, see `paybatch resolve`)"
    )]
    ForeignRequest {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
    },
    /// An account setting is missing or bad (a secret's variable unset, a bad URL).
    #[error("configuration: accounts.{account}.{key}: {message}")]
    Setting {
        /// The account.
        account: String,
        /// The key inside `[accounts.NAME]`.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// A gateway-specific failure (an HTTP exchange, a refused signature, a code the gateway
    /// answered), from the protocol's own error type.
    #[error("account {account}: {source}")]
    Gateway {
        /// The account.
        account: String,
        /// Whether trying again later may succeed (a timeout, a connection reset).
        transient: bool,
        /// The protocol's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether the same step may succeed if tried again later: a transient storage failure or
    /// a gateway failure its protocol calls transient. Everything else (access denied, a
    /// malformed answer, a bad setting) will not go away by waiting.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Storage { transient, .. } | Error::Gateway { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The account the error concerns.
    pub fn account(&self) -> &str {
        match self {
            Error::Storage { account, .. }
            | Error::Protocol { account, .. }
            | Error::ForeignRequest { account, .. }
            | Error::Setting { account, .. }
            | Error::Gateway { account, .. } => account,
        }
    }
}

/// The result of a gateway step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
