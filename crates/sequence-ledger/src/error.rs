//! The ledger's error type.

use std::path::PathBuf;

use kvp_format::SequenceNumber;

use crate::{AccountId, BatchState, Binding};

/// Everything that can go wrong in the ledger. Every variant names the account, sequence number,
/// path or key it concerns. A lost race or a reference that is already bound is *not* an error:
/// see [`crate::Reserve`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process holds the ledger open (the lock file names its pid, when it wrote one).
    #[error("ledger {path} is in use by {}", match .pid { Some(p) => format!("pid {p}"), None => "another process".to_string() })]
    InUse {
        /// The ledger directory.
        path: PathBuf,
        /// The pid recorded in the lock file by the process that holds it, if any.
        pid: Option<u32>,
    },
    /// A read-only open of a ledger that does not exist.
    #[error("no ledger at {path}")]
    NotFound {
        /// The ledger directory.
        path: PathBuf,
    },
    /// The ledger was written by a layout this version does not know.
    #[error("ledger {path} has format version {found}, this paybatch understands {supported}")]
    UnsupportedFormat {
        /// The ledger directory.
        path: PathBuf,
        /// The version recorded in the ledger.
        found: u32,
        /// The version this code reads and writes.
        supported: u32,
    },
    /// A mutating call on a ledger opened with [`crate::Ledger::open_read_only`].
    #[error("ledger is open read-only: cannot {operation}")]
    ReadOnly {
        /// What was attempted.
        operation: &'static str,
    },
    /// Filesystem trouble around the ledger (lock file, fsync, the read-only copy).
    #[error("ledger I/O on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing an export failed.
    #[error("cannot write the ledger export: {source}")]
    Export {
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// sled reported an error.
    #[error("ledger storage error ({context}): {source}")]
    Storage {
        /// What the ledger was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: sled::Error,
    },
    /// A stored value could not be decoded (a damaged or foreign database).
    #[error("ledger value for {what} is corrupt: {detail}")]
    Corrupt {
        /// Which record (tree and key, printable).
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An account id that is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid account id {id:?}: {reason}")]
    InvalidAccount {
        /// The rejected id, digit runs that could be a card number masked.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// The account has used (or its floor covers) [`SequenceNumber::MAX`]: there is no next
    /// number, and numbers never wrap around.
    #[error("account {account} has exhausted its sequence numbers (last {last})")]
    Exhausted {
        /// The account.
        account: AccountId,
        /// The highest number used or covered by the floor.
        last: SequenceNumber,
    },
    /// A batch with no lines.
    #[error("batch {sequence} of account {account} has no lines")]
    EmptyBatch {
        /// The account.
        account: AccountId,
        /// The number the caller wanted.
        sequence: SequenceNumber,
    },
    /// A line whose `index` is not its position (`xIndex` must be 0, 1, 2, ...).
    #[error("batch {sequence} of account {account}: line {position} has index {index}")]
    IndexMismatch {
        /// The account.
        account: AccountId,
        /// The batch.
        sequence: SequenceNumber,
        /// The 0-based position in the batch.
        position: u64,
        /// The index the caller gave.
        index: u64,
    },
    /// The same client reference twice in one new batch. Messages quoting a reference mask
    /// its card-like digit runs (`kvp_format::mask_digit_runs`).
    #[error(
        "batch {sequence} of account {account}: client reference {:?} appears twice",
        kvp_format::mask_digit_runs(.client_ref)
    )]
    DuplicateReference {
        /// The account.
        account: AccountId,
        /// The batch.
        sequence: SequenceNumber,
        /// The repeated reference.
        client_ref: String,
    },
    /// A client reference that is already bound to a transaction with different content.
    #[error(
        "client reference {:?} of account {account} is already bound to {existing} with different content",
        kvp_format::mask_digit_runs(.client_ref)
    )]
    ContentConflict {
        /// The account.
        account: AccountId,
        /// The reference.
        client_ref: String,
        /// Where it is bound.
        existing: Binding,
    },
    /// A batch with more lines than the ledger numbers (2³² − 1).
    #[error("batch {sequence} of account {account} has {lines} lines, more than a batch can hold")]
    BatchTooLarge {
        /// The account.
        account: AccountId,
        /// The number the caller wanted.
        sequence: SequenceNumber,
        /// Its line count.
        lines: u64,
    },
    /// No batch with that number.
    #[error("account {account} has no batch {sequence}")]
    NoSuchBatch {
        /// The account.
        account: AccountId,
        /// The number asked for.
        sequence: SequenceNumber,
    },
    /// The state machine does not allow this step (see [`crate::BatchState`]).
    #[error("batch {sequence} of account {account}: illegal transition {from} -> {to}")]
    IllegalTransition {
        /// The account.
        account: AccountId,
        /// The batch.
        sequence: SequenceNumber,
        /// The state it is in.
        from: BatchState,
        /// The state that was asked for.
        to: BatchState,
    },
    /// Triggering this batch now could make the gateway ignore another one (PROTOCOL.md §2
    /// item 5): an earlier batch of the account is not finished, or another is in flight.
    #[error(
        "batch {sequence} of account {account} cannot be triggered: batch {blocking} is {blocking_state}"
    )]
    OutOfOrder {
        /// The account.
        account: AccountId,
        /// The batch that was to be triggered.
        sequence: SequenceNumber,
        /// The batch in the way.
        blocking: SequenceNumber,
        /// Its state.
        blocking_state: BatchState,
    },
    /// A stored result that names a line outside the batch or a line twice.
    #[error("batch {sequence} of account {account}: result for xIndex {index}: {reason}")]
    BadResult {
        /// The account.
        account: AccountId,
        /// The batch.
        sequence: SequenceNumber,
        /// The offending index.
        index: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A write for an account whose lease the caller no longer holds (it expired by the
    /// ledger's clock, or another process took the account over): nothing was written.
    /// PROTOCOL.md §5: a process that lost its lease can no longer reserve a number or move a
    /// batch forward; it stops working on the account.
    #[error(
        "the lease on account {account} (epoch {epoch}) is no longer held by this process: nothing was written"
    )]
    LeaseLost {
        /// The account.
        account: AccountId,
        /// The epoch of the lease the caller held.
        epoch: u64,
    },
    /// The account's lease is held by another process and the caller does not wait for it.
    #[error("account {account} is held by {holder} until {until} (lease epoch {epoch})")]
    LeaseHeld {
        /// The account.
        account: AccountId,
        /// Who holds it (host, pid, id).
        holder: String,
        /// Its expiry by the ledger's clock (RFC 3339, UTC).
        until: String,
        /// The holder's epoch.
        epoch: u64,
    },
    /// A backend other than sled reported an error (a database, its connection, its pool).
    /// `transient` says whether the same call may succeed later (a lost connection, a
    /// database restarting); a write that failed so may or may not have been committed, and
    /// the backend's own retry settles which (see the backend's docs).
    #[error("ledger backend error ({context}): {message}")]
    Backend {
        /// What the ledger was doing.
        context: String,
        /// The backend's message (never a password: URLs are printed without it).
        message: String,
        /// Whether the same call may succeed later.
        transient: bool,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A result field the ledger must never hold (card data or a key); the value is not kept.
    #[error(
        "batch {sequence} of account {account}: result for xIndex {index} carries sensitive field {key}; the ledger never stores it"
    )]
    SensitiveField {
        /// The account.
        account: AccountId,
        /// The batch.
        sequence: SequenceNumber,
        /// The line.
        index: u64,
        /// The field name (never its value).
        key: String,
    },
}

/// `Result` with the ledger's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the same call may succeed later: a backend's lost connection or restart.
    /// Everything else (a rule of the ledger, a lost lease, corruption) is permanent.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                transient: true,
                ..
            }
        )
    }

    pub(crate) fn storage(context: &'static str) -> impl FnOnce(sled::Error) -> Error {
        move |source| Error::Storage { context, source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_names_the_pid_or_says_another_process() {
        let with = Error::InUse {
            path: "/l".into(),
            pid: Some(42),
        };
        let without = Error::InUse {
            path: "/l".into(),
            pid: None,
        };
        assert_eq!(with.to_string(), "ledger /l is in use by pid 42");
        assert_eq!(
            without.to_string(),
            "ledger /l is in use by another process"
        );
    }

    #[test]
    fn messages_quoting_a_reference_mask_card_like_digit_runs() {
        let account = AccountId::new("acme").unwrap();
        let sequence = SequenceNumber::new(7).unwrap();
        let errors = [
            Error::DuplicateReference {
                account: account.clone(),
                sequence,
                client_ref: "4111111111111112".into(),
            },
            Error::ContentConflict {
                account,
                client_ref: "4111111111111112".into(),
                existing: crate::Binding {
                    sequence,
                    index: 3,
                    content_digest: [0; 32],
                },
            },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(
                text.contains("\"411111******1112\"") && !text.contains("4111111111111112"),
                "{text}"
            );
        }
    }
}
