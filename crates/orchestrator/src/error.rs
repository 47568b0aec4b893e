//! The orchestrator's error type.

use std::path::PathBuf;

use kvp_format::SequenceNumber;
use sequence_ledger::{AccountId, BatchState};

/// What went wrong, with the account, batch, file and line it concerns.
///
/// Messages never carry card data or keys: input values are never quoted, only field names,
/// and what does quote input (a ref, a header cell) is masked ([`kvp_format::mask_digit_runs`]).
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
    /// of the message that could be a card number: the message may quote a header cell or a
    /// field name.
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
    /// The ledger could not be opened (held by another process, unreadable, a newer format).
    #[error("ledger {}: {source}", path.display())]
    LedgerOpen {
        /// The ledger directory.
        path: PathBuf,
        /// The ledger's error.
        #[source]
        source: sequence_ledger::Error,
    },
    /// The sequence ledger refused or failed an operation for an account.
    #[error("account {account}: ledger: {source}")]
    Ledger {
        /// The account.
        account: String,
        /// The ledger's error.
        #[source]
        source: sequence_ledger::Error,
    },
    /// A gateway step (or an account's setting its protocol checks) failed.
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
        found: SequenceNumber,
        /// The number this ledger was about to use.
        next: SequenceNumber,
    },
    /// A transaction of the input cannot go where the ledger has its ref: bound to other
    /// content, or two transactions on one line of a batch. `message` quotes the ref masked.
    #[error("account {account}: line {line}: {message}")]
    Conflict {
        /// The account.
        account: String,
        /// The input line.
        line: u64,
        /// What conflicts.
        message: String,
    },
    /// A batch never triggered would be uploaded again, but this input no longer holds exactly
    /// its transactions (PROTOCOL.md decision 4d).
    #[error(
        "account {account}: batch {sequence}: this input no longer holds exactly the {bound} transaction(s) bound to it ({found} found; lines were removed or changed since); not resubmitting — re-run with the input that was submitted, or abandon the batch with `paybatch resolve --account {account} --seq {sequence} --abandon` (it was never triggered)"
    )]
    BatchChanged {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
        /// Its lines in the ledger.
        bound: u64,
        /// Lines of this input bound to it.
        found: u64,
    },
    /// An unfinished batch would be addressed under another name than the one it was
    /// reserved under (the configuration changed): uploading it again could process its
    /// transactions twice. Nothing was uploaded.
    #[error(
        "account {account}: batch {sequence} was reserved as gateway reference {stored} but the configuration now gives {} (reference_prefix changed?); restore the setting or resolve the batch — nothing was uploaded",
        .now.as_deref().unwrap_or("none")
    )]
    ReferenceChanged {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
        /// The name stored at reservation.
        stored: String,
        /// The name the configuration gives now.
        now: Option<String>,
    },
    /// A batch got no COMPLETE in time; the account's later batches were not sent behind it.
    #[error(
        "account {account}: batch {sequence} is Stuck (no COMPLETE in time); later batches were not finished or sent — check the gateway, then re-run the same submit or `paybatch resolve --account {account} --seq {sequence}`"
    )]
    Stuck {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
    },
    /// A batch of the account from another input must be finished first (one batch in
    /// flight per account), and this run cannot finish it.
    #[error("account {account}: batch {sequence} is {}: {hint}", .state.name())]
    Blocked {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
        /// Its state.
        state: BatchState,
        /// What to do.
        hint: &'static str,
    },
    /// Polling for a batch's verdict failed in a way waiting will not cure; the batch stays
    /// Triggered, so the next run resumes polling it.
    #[error(
        "account {account}: batch {sequence}: polling for COMPLETE failed and retrying will not help: {source}; the batch stays Triggered — fix the cause and re-run the same submit to resume it"
    )]
    PollFailed {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
        /// The gateway step's error.
        #[source]
        source: gateway_protocol::Error,
    },
    /// COMPLETE says Success, but the per-line answer cannot be used (missing, lines missing
    /// or extra, another number): the batch stays Completed and its transactions unknown.
    #[error(
        "account {account}: batch {sequence}: COMPLETE says Success but its per-line results cannot be used: {source}. The batch stays Completed and its transactions unknown (they may have been processed: never send them again). Re-run once the gateway provides a correct RESPONSE_{sequence}; if it cannot, close the batch with `paybatch resolve --account {account} --seq {sequence} --mark-unknown --reason \"...\"` — its transactions stay unknown and the account's next batches go on"
    )]
    UnusableAnswer {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
        /// Why the answer is unusable.
        #[source]
        source: gateway_protocol::Error,
    },
    /// Another writer kept taking the next number (a second process on this ledger?).
    #[error(
        "account {account}: lost the race for a sequence number 16 times; is another paybatch using this ledger?"
    )]
    LostRace {
        /// The account.
        account: String,
    },
    /// A batch the run relies on is not in the ledger.
    #[error("account {account}: batch {sequence} is not in the ledger")]
    MissingBatch {
        /// The account.
        account: String,
        /// The batch.
        sequence: SequenceNumber,
    },
    /// An account's task failed (a panic): that account stopped; the others went on.
    #[error("account {account}: the account's task failed: {message}")]
    TaskFailed {
        /// The account.
        account: String,
        /// The panic's message, masked.
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

    pub(crate) fn ledger(account: &AccountId) -> impl FnOnce(sequence_ledger::Error) -> Self {
        let account = account.to_string();
        move |source| Self::Ledger { account, source }
    }

    /// [`Error::ledger`] for an account known by name.
    pub(crate) fn ledger_named(account: &str) -> impl FnOnce(sequence_ledger::Error) -> Self {
        let account = account.to_owned();
        move |source| Self::Ledger { account, source }
    }

    /// A blocking task (ledger or file work off the async threads) that did not return: a
    /// panic, or the runtime shutting down.
    pub(crate) fn task(account: &str, e: &tokio::task::JoinError) -> Self {
        Self::TaskFailed {
            account: account.to_owned(),
            message: kvp_format::mask_digit_runs(&e.to_string()).into_owned(),
        }
    }
}
