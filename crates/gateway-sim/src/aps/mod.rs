//! A simulator of the Amazon Payment Services batch service, for tests and demos.
//!
//! It serves `POST /FortAPI/upload/` (multipart: the CSV file plus signed fields) and
//! `POST /FortAPI/batchApi/` (`GET_BATCH_RESULTS`, `PROCESS_BATCH`, JSON) on 127.0.0.1. Two
//! readings of the service ([`ReferenceMode`]): the published reference (PROTOCOL.md §3b, the
//! default: a validated batch answers `70000`, `Line_Number` counts the header row as line 1)
//! and the assumptions of §3a (`76000`, data rows from 1). Per-line results come in the signed
//! JSON answer or as a plain CSV body ([`ResultsForm`]); some lines can be left unsettled
//! (statuses 15, 19, 20, 40); `PROCESS_BATCH` can be served on its own path; `batch_id` is
//! checked when sent. Validation and processing are asynchronous: results
//! answer "still validating" (70138) and "still processing" (70140) a configured number of
//! times (knobs: latency, forced validation failure, tampered
//! signatures, HTTP 503s, lost answers, result order). Validation checks the header, commands, unique `merchant_reference`, amounts and the
//! parameters `PURCHASE` needs; result rows come back shuffled.
//!
//! Main types: [`ApsSim`] (start), [`ApsSimHandle`] (address, knobs, journal, shutdown),
//! [`ApsSimOptions`] / [`ApsMerchant`] / [`ApsKnobs`], [`ApsJournalEntry`].
//!
//! Guarantees: every request signature is checked with the merchant's request phrase and every
//! answer to a known merchant is signed with its response phrase (unless a knob tampers with
//! it); a batch is processed at most once, however often `PROCESS_BATCH` is repeated; its
//! lines are journaled and fsynced before any result is visible; a reference is accepted once
//! (a second upload answers 51146), also across restarts with the same journal.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gateway_sim::aps::Error> {
//! use gateway_sim::aps::{ApsMerchant, ApsSim, ApsSimOptions, ShaType};
//! use kvp_format::Secret;
//! let sim = ApsSim::start(ApsSimOptions {
//!     merchants: vec![ApsMerchant {
//!         merchant_identifier: "MID1".into(),
//!         access_code: Secret::new("ACCESS".into()),
//!         sha_request_phrase: Secret::new("IN".into()),
//!         sha_response_phrase: Secret::new("OUT".into()),
//!         sha_type: ShaType::Sha256,
//!     }],
//!     ..ApsSimOptions::default()
//! })
//! .await?;
//! println!("endpoint = {}", sim.endpoint());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod answer;
mod commands;
mod error;
mod journal;
mod multipart;
mod options;
mod server;
mod signature;
mod validate;

pub use error::{Error, Result};
pub use journal::ApsJournalEntry;
pub use options::{
    ApsKnobs, ApsMerchant, ApsSimOptions, LostAnswer, ReferenceMode, ResultOrder, ResultsForm,
    TamperMode, UploadSignature, ValidationMode,
};
pub use server::{ApsSim, ApsSimHandle};
pub use signature::{ShaType, signature};
