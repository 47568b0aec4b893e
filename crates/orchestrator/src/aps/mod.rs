//! Amazon Payment Services (formerly PayFort) batch service: the second gateway protocol.
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
//! - [`Currency`] — the ISO 4217 exponent table and amount conversion;
//! - [`sign`] / [`verify`] — signatures; [`ResponseCode`] / [`BatchPhase`] — the 5-digit codes;
//! - [`BatchReference`] — derived from (account, sequence, file digest), never reused;
//! - [`ApsClient`] — the signed HTTP exchanges with retries of transient failures;
//! - [`ApsBatchApi`] — the orchestrator's `GatewayProtocol` over all of the above;
//!   [`ApsSettings`] — an account's configuration keys.
//!
//! What is our reading rather than the vendor's document is listed in `docs/APS.md`.

mod batch_file;
mod client;
mod codes;
mod config;
mod currency;
mod error;
mod gateway;
mod reading;
mod reference;
mod results;
mod settings;
mod signature;
#[cfg(test)]
mod sim_tests;
mod support;

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
pub use currency::{Currency, MinorUnits};
pub use error::{Error, Result};
pub use gateway::ApsBatchApi;
pub use reference::BatchReference;
pub use results::{
    LINE_NUMBER, ResultRow, check_references, join_complete, join_partial, parse_batch_results,
};
pub use settings::ApsSettings;
pub use signature::{ShaType, json_pairs, sign, verify};
pub use support::check_input;
