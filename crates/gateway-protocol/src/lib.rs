//! The contract between the paybatch engine and a gateway's batch interface.
//!
//! The engine (the `orchestrator` crate) plans, numbers, records and merges batches without
//! knowing which gateway it talks to; each protocol crate (`sola-file-drop`, `aps-batch`)
//! implements this contract, and a program wires them together from its settings.
//!
//! Main types:
//! - [`GatewayProtocol`] — the per-account steps a batch goes through at the gateway: encode,
//!   upload, trigger, poll, fetch results, clean up; each idempotent.
//! - [`Account`] / [`AccountFactory`] — an account built from its `[accounts.NAME]` table:
//!   its [`LineRules`] (input checks and how batches are cut, no I/O) and how to connect.
//! - [`BatchRef`], [`GatewayVerdict`], [`PollResult`], [`LineResult`], [`RejectedAnswer`] — what
//!   the steps exchange.
//! - [`money`] — ISO 4217 currencies and minor units, for gateways and summaries alike.
//!
//! ```
//! use gateway_protocol::{ChunkLimits, Chunker, LineCountChunker, money};
//!
//! // Amounts are exact: 12.345 KWD is 12345 fils, and 12.3456 KWD is refused.
//! let kwd = money::Currency::new("kwd")?;
//! assert_eq!(kwd.to_minor("12.345")?.0, 12345);
//! assert!(kwd.to_minor("12.3456").is_err());
//! assert_eq!(money::format_amount("KWD", -5), "-0.005");
//!
//! // A protocol without size rules cuts batches by line count alone.
//! assert_eq!(LineCountChunker.limits(5000), ChunkLimits::lines(5000));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Guarantees asked of every implementation: steps are idempotent (the engine repeats the step
//! its ledger does not record as done, after a crash, with the same number and bytes); a
//! verdict is returned only from a whole answer that is this batch's (PROTOCOL.md decision 4a);
//! nothing this client did not write is overwritten or deleted (decision 4b); no card number,
//! CVV or key appears in an error, a result line or a log.
#![warn(missing_docs)]

mod account;
mod batch;
mod error;
pub mod money;
mod protocol;
mod request;
pub mod settings;

pub use account::{
    Account, AccountCommon, AccountContext, AccountFactory, ChunkItem, ChunkLimits, Chunker, Env,
    Exclusive, LineCountChunker, LineRules,
};
pub use batch::{
    AnswerFile, BatchRef, GatewayVerdict, Inspection, LineResult, PollResult, RejectedAnswer,
    Uploaded, UploadedRequest,
};
pub use error::{Error, Result};
pub use protocol::GatewayProtocol;
pub use request::{BatchFile, BatchLine, LineFields, Masking, mask_fields};

/// The `xResult` letters a gateway's per-line results carry (Sola's own, which the APS
/// client sets too), from which the engine takes each line's outcome.
pub mod x_result {
    /// Approved.
    pub const APPROVED: &str = "A";
    /// Declined.
    pub const DECLINED: &str = "D";
    /// The gateway refused or failed the line (any other letter counts as this too).
    pub const ERROR: &str = "E";
    /// Not settled: pending, uncertain, on hold, in review — money may have moved, so the line
    /// is `unknown`, never `error` and never `not_processed`.
    pub const UNKNOWN: &str = "U";
}
