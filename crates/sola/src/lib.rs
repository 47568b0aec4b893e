//! The Sola (formerly Cardknox) batch file drop, one of paybatch's gateway protocols.
//!
//! A batch is four files in the account's drop (an SFTP folder, an S3 prefix or a local
//! directory, through `storage_backends`): this client writes `Request/REQUEST_X.KVP` (the
//! transactions) and then `Request/PROCESS_X.KVP` (the trigger); the gateway answers with
//! `Response/RESPONSE_X.KVP` (one line per transaction) and `Response/COMPLETE_X.KVP` (the
//! verdict). PROTOCOL.md section 1 and decisions 1-11 are the rules this crate follows.
//!
//! Main types:
//! - [`SolaFileDrop`] — the [`gateway_protocol::GatewayProtocol`] over any backend;
//! - [`SolaAccount`] / [`SolaFactory`] — an account from its `[accounts.NAME]` table
//!   ([`SolaSettings`]) and the shared `[storage]` ([`StorageSettings`]) and `[gateway]`
//!   ([`GatewaySettings`]) sections;
//! - [`SolaRules`] — what an input line must be.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use gateway_protocol::{AccountCommon, GatewayProtocol, BatchLine, LineFields};
//! use sola_file_drop::{GatewaySettings, SolaAccount, StorageSettings};
//!
//! let dir = tempfile::tempdir()?;
//! let table = gateway_protocol::settings::table_from_toml("acme", &format!(
//!     "location = \"file://{}\"\nbatch_key = \"batch-key\"\nmerchant_key = \"merchant-key\"\n",
//!     dir.path().display(),
//! ))?;
//! let account = SolaAccount::new("acme", AccountCommon::default(), table,
//!     StorageSettings::default(), GatewaySettings::default(), Arc::default())?;
//! let drop = gateway_protocol::Account::connect(&account).await?;
//! let mut encoded = Vec::new();
//! LineFields::encode(&[("xCommand", "cc:sale")], &mut encoded);
//! let fields = LineFields::from_canonical(&encoded);
//! let seq = kvp_format::SequenceNumber::new(1)?;
//! let bytes = drop.encode_request(seq, &[BatchLine { index: 0, fields }])?;
//! assert!(bytes.starts_with(b"xIndex=0&xSequenceNumber=1&xKey=merchant-key&"));
//! drop.upload(seq, bytes).await?;   // Request/REQUEST_1.KVP, written atomically and verified
//! assert!(dir.path().join("Request/REQUEST_1.KVP").exists());
//! # Ok(()) }
//! ```
//!
//! Guarantees: REQUEST_X is written create-only and read back before PROCESS_X (never over a
//! REQUEST this client did not write); a COMPLETE counts only when whole and this batch's;
//! RESPONSE lines are joined on `xIndex` and must carry `xSequenceNumber` = X; only this
//! batch's RESPONSE_X and COMPLETE_X are ever deleted; card data and keys never reach a
//! result, an error or a log.
#![warn(missing_docs)]

mod account;
mod drop;
mod rules;
mod settings;

pub use account::{PROTOCOL, SolaAccount, SolaFactory, factory};
pub use drop::SolaFileDrop;
pub use rules::{RESERVED_FIELDS, SolaRules};
pub use settings::{GatewaySettings, SolaSettings, StorageSettings};
