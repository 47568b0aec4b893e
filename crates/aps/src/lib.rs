//! Amazon Payment Services (formerly PayFort) batch service, one of paybatch's gateway
//! protocols.
//!
//! Three steps per batch, strictly in order: upload the CSV file (`UPLOAD_BATCH_FILE`, a
//! multipart POST to `{endpoint}/FortAPI/upload/`), poll `GET_BATCH_RESULTS` until validation
//! is over, send `PROCESS_BATCH` only if it passed, poll again until processing is over, then
//! join the per-line results on `Line_Number`. Every request is signed with the request phrase
//! and every answer's signature is checked with the response phrase before anything in it is
//! believed.
//!
//! Main types:
//! - [`ApsTransaction`] / [`write_batch_file`] — input fields to CSV rows (minor units);
//! - [`Currency`] — the ISO 4217 exponent table and amount conversion
//!   (`gateway_protocol::money`, re-exported);
//! - [`sign`] / [`verify`] — signatures; [`ResponseCode`] / [`BatchPhase`] — the 5-digit codes;
//! - [`BatchReference`] — derived from (account, sequence, file digest), never reused;
//! - [`ApsClient`] — the signed HTTP exchanges with retries of transient failures;
//! - [`ApsBatchApi`] — the engine's `GatewayProtocol` over all of the above;
//! - [`ApsAccount`] / [`ApsFactory`] — an account from its `[accounts.NAME]` table
//!   ([`ApsSettings`]), with its [`ApsRules`] (input checks, batch limits).
//!
//! ```
//! use aps_batch::{ApsTransaction, Currency, write_batch_file};
//!
//! let usd = Currency::new("USD")?;
//! let line = ApsTransaction::from_fields(
//!     [("command", "CAPTURE"), ("merchant_reference", "order-1"), ("amount", "12.34")],
//!     Some(usd),
//! )?;
//! let file = String::from_utf8(write_batch_file(&[line])?)?;
//! assert!(file.lines().nth(1).unwrap().starts_with("CAPTURE,order-1,1234,USD,"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Guarantees: a verdict is read only from an answer that can be one (per-line transaction
//! statuses after this client sent `PROCESS_BATCH`, or a failed validation); per-line answers
//! are joined on `Line_Number` and checked against each line's `merchant_reference`, never
//! shifted; unsettled line statuses are `unknown`; every answer's signature is verified where
//! it carries one; card data never reaches a result. What is our reading rather than the
//! vendor's document is listed in `docs/APS.md`.
#![warn(missing_docs)]

mod account;
mod batch_file;
mod client;
mod codes;
mod config;
mod error;
mod gateway;
mod reading;
mod reference;
mod results;
mod settings;
mod signature;

pub use account::{ApsAccount, ApsFactory, ApsRules, PROTOCOL, factory};
pub use batch_file::{
    ApsCommand, ApsTransaction, COLUMNS, HeaderNames, MAX_HEADER_NAME, header_size, row_size_bound,
    split_by_size, write_batch_file, write_batch_file_with,
};
pub use client::{AnswerForm, ApsAnswer, ApsClient, UploadOutcome};
pub use codes::{
    BatchPhase, INVALID_REQUEST, LineOutcome, ResponseCode, UNSETTLED_STATUSES,
    is_transaction_status,
};
pub use config::{ApsAccountConfig, Endpoint, FileSignature};
pub use error::{Error, Result};
pub use gateway::ApsBatchApi;
pub use gateway_protocol::money::{Currency, MinorUnits};
pub use reference::BatchReference;
pub use results::{
    LINE_NUMBER, ResultRow, check_references, join_complete, join_partial, parse_batch_results,
};
pub use settings::ApsSettings;
pub use signature::{ShaType, json_pairs, sign, verify};
