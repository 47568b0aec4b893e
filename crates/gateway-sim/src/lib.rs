//! The gateway side of the Sola (Cardknox) file-drop batch protocol, strict enough to test a
//! client against: it watches each account's `Request/` folder on any storage backend, answers
//! in `Response/`, and processes every transaction as the real-time API would — including the
//! awkward parts (stale sequence numbers silently ignored, duplicates declined, RESPONSE lines
//! shuffled, gateway errors, crashes between RESPONSE and COMPLETE).
//!
//! Main types:
//! - [`GatewaySim`]: the simulator; [`GatewaySim::run_once`] polls every account once,
//!   [`GatewaySim::run`] polls until a shutdown future completes.
//! - [`SimAccount`]: one batch account: its drop (`Arc<dyn Backend>`), batch key, merchant keys
//!   and [`Knobs`].
//! - [`SimOptions`]: state directory, poll interval, idle backoff, [`Clock`] ([`ManualClock`]
//!   in tests).
//! - [`Journal`] / [`JournalEntry`]: every processed transaction, for "processed exactly once".
//! - [`FlakyBackend`]: slow or failing storage (also available as [`Knobs::storage`]).
//!
//! ```
//! use std::sync::Arc;
//! use gateway_sim::{GatewaySim, Journal, SimAccount, SimOptions};
//! use storage_backends::{Backend, LocalBackend, Location};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let drop_dir = Location::parse(&format!("file://{}/drop", dir.path().display()))?;
//! let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&drop_dir).await?);
//! let account = SimAccount::new("acme", backend.clone(), "batch-key", ["merchant-key"]);
//! let sim = GatewaySim::new(vec![account], SimOptions::new(dir.path().join("state")))?;
//!
//! let line = "xIndex=0&xSequenceNumber=1&xKey=merchant-key&xVersion=5.0.0&xSoftwareName=doc\
//!             &xSoftwareVersion=1&xCommand=cc:sale&xCardNum=4111111111111111&xExp=1299\
//!             &xAmount=10.00&xInvoice=INV-1\n";
//! backend.put("Request/REQUEST_1.KVP", line.into()).await?;
//! backend
//!     .put("Request/PROCESS_1.KVP", "xKey=batch-key&xSubmittedCount=1&xFormat=KVP&xSequenceNumber=1\n".into())
//!     .await?;
//! let stats = sim.run_once().await?;
//! assert_eq!((stats.batches_succeeded, stats.approved), (1, 1));
//!
//! let complete = kvp_format::CompleteFile::parse(&backend.get("Response/COMPLETE_1.KVP").await?)?;
//! assert!(complete.is_success());
//! let response = backend.get("Response/RESPONSE_1.KVP").await?;
//! assert!(std::str::from_utf8(&response)?.contains("xMaskedCardNumber=4xxxxxxxxxxx1111"));
//! let journal = Journal::read(sim.journal_path())?;
//! assert_eq!((journal.len(), journal[0].invoice.as_deref()), (1, Some("INV-1")));
//! # Ok(()) }
//! ```
//!
//! # Protocol behaviour (PROTOCOL.md sections 1 and 2)
//! - Only `Request/PROCESS_X.KVP` triggers work; several are handled in arrival order
//!   (modification time, then number).
//! - **Sequence rule**: `X` must be above the last number accepted for the account, else both
//!   `PROCESS_X` and `REQUEST_X` are deleted and logged, and no COMPLETE is written. A name that
//!   is not a valid number (`PROCESS_0.KVP`, `PROCESS_007.KVP`) is treated the same way.
//! - **Accepting** persists `X` (atomic replace + fsync) before anything else, then deletes
//!   `PROCESS_X` and `REQUEST_X`. A restarted simulator therefore never processes `X` twice.
//! - **Batch checks**: batch key, `xFormat=KVP`, `xSequenceNumber`, `xSubmittedCount` = lines,
//!   `REQUEST_X` present and non-empty, each line UTF-8 with no repeated key, no BOM or blank
//!   line, `xIndex` = position, `xSequenceNumber` = X. A failure writes only
//!   `COMPLETE_X` with `xResult=Error&xStatus=Error&xError=<reason>&xProcessedCount=0`.
//! - Success writes the whole `RESPONSE_X.KVP`, then `COMPLETE_X.KVP`
//!   (`xResult=Success&xStatus=Success&xError=&xProcessedCount=n&xSubmittedCount=n&xFormat=KVP&xSequenceNumber=X`),
//!   each with one atomic `put`.
//!
//! # Transaction rules
//! Each line uses its own merchant `xKey`, which must be one of the account's merchant keys.
//! `xVersion`, `xSoftwareName`, `xSoftwareVersion` and `xCommand` are required. Empty values
//! count as absent. Commands (case-insensitive):
//!
//! | command | needs | effect when approved |
//! |---|---|---|
//! | `cc:sale` | one payment source, `xAmount` | authorized and captured |
//! | `cc:authonly` | one payment source, `xAmount` | authorized, capturable once |
//! | `cc:capture` | `xRefNum` of an uncaptured, unvoided authonly; `xAmount` ≤ authorized (default: all) | captured |
//! | `cc:credit` | one payment source, `xAmount` | money to the card (no decline-by-amount) |
//! | `cc:refund` | `xRefNum` of a captured sale/authonly (or its capture); `xAmount` ≤ captured − refunded (default: the rest) | refunded |
//! | `cc:void` | `xRefNum` of a sale, authonly, credit, capture or refund, not voided, without refunds | voided (only once) |
//! | `cc:save` | one payment source | token issued |
//! | `check:sale` | `xRouting` (ABA checksum) + `xAccount` (4–17 digits), or a check `xToken`; `xAmount` | debited |
//!
//! A payment source is exactly one of `xCardNum`+`xExp`, `xToken` (issued by this simulator),
//! `xMagstripe` (track 1 `%B<pan>^<name>^<YYMM>…` or track 2 `;<pan>=<YYMM>…`). Cards must be
//! 13–19 digits passing Luhn; `xExp` is MMYY and the card is valid through the end of that
//! month, judged by the [`Clock`]. `xAmount` is `digits[.d[d]]`, > 0, ≤ 999,999,999.99.
//! References (`xRefNum`) only reach transactions this simulator approved for the same
//! merchant on the same account. Other commands (`cc:adjust`, `check:refund`, gift, EBT, ...)
//! are answered `xResult=E`, `Unsupported Command`.
//!
//! **Duplicates**: a `cc:sale`, `cc:authonly` or `check:sale` with the same merchant, command,
//! amount, payment source (a card and its token count as the same) and `xInvoice` (absent
//! counts as empty) as one approved within the last 10 minutes of clock time is declined
//! (`D`, `01004`, `Duplicate Transaction`) unless `xAllowDuplicate=True` (or `1`).
//!
//! # Decline table (deterministic test values)
//! | value | applies to | `xResult` | `xErrorCode` | `xError` |
//! |---|---|---|---|---|
//! | card `4000000000000002` | sale, authonly, credit, save | D | 01000 | Declined |
//! | card `4000000000009995` | sale, authonly, credit, save | D | 01001 | Insufficient Funds |
//! | card `4000000000009987` | sale, authonly, credit, save | D | 01002 | Pick Up Card |
//! | card `4000000000000119` | sale, authonly, credit, save | E | 02000 | Issuer Unavailable |
//! | `xAmount=13.13` | sale, authonly, check:sale | D | 01000 | Declined |
//! | `xAmount=14.14` | sale, authonly, check:sale | D | 01001 | Insufficient Funds |
//! | `xAmount=15.15` | sale, authonly, check:sale | E | 02000 | Issuer Unavailable |
//! | `xAmount` > 50000.00 | sale, authonly, check:sale | D | 01003 | Amount Exceeds Limit |
//! | `xAccount=9999999999` | check:sale | D | 01001 | Insufficient Funds |
//!
//! Errors in the request itself are `E` with codes `00001` `Required: <field>`, `00002`
//! `Invalid <field>`, `00003` `Invalid xKey`, `00004` `Unsupported Command`, `00005` `Invalid
//! Card Number`, `00006` `Card Expired`, `00007` `More than one payment source`, `00008`
//! `Invalid Token`, `00009` `Original Transaction Not Found`, `00010` `Original Transaction
//! Already Voided`, `00011` `Original Transaction Cannot Be Captured`, `00012` `Amount Exceeds
//! Authorized Amount`, `00013` `Amount Exceeds Refundable Amount`, `00014` `Original
//! Transaction Cannot Be Refunded`, `00015` `Original Transaction Cannot Be Voided`.
//! Approved lines have `xErrorCode=00000` and an empty `xError`.
//!
//! # Response fields
//! Every line: `xIndex`, `xSequenceNumber`, `xResult` (A/D/E), `xStatus`
//! (Approved/Declined/Error), `xError`, `xErrorCode`, `xRefNum` (unique across the state
//! directory, so per account; every line gets one, declines and errors too), `xInvoice`
//! (echoed when sent), `xBatch` (= X). Approved lines add `xAuthAmount`, `xToken` (for
//! payment-source commands) and, for card money commands, `xAuthCode` (6 characters);
//! `xAvsResultCode`/`xAvsResult` when `xZip` or `xStreet` was sent, `xCvvResultCode`/
//! `xCvvResult` when `xCVV` was sent. When the source is known: `xMaskedCardNumber` and
//! `xCardType` for cards, `xMaskedAccountNumber` for checks.
//!
//! - `xMaskedCardNumber`: Sola style, the first digit, `x` for each hidden digit, the last
//!   four, same length: `4111111111111111` → `4xxxxxxxxxxx1111`.
//! - `xMaskedAccountNumber`: `x` for each digit but the last four: `xxxxx6789`.
//! - `xToken`: 32 random hex characters, issued on the first approval of a card (or account)
//!   and returned for it ever after; not derived from the number (see the vault below).
//!
//! # State and guarantees
//! The state directory is locked (`lock`, an OS file lock) while a [`GatewaySim`] over it
//! lives. It holds `accounts/<name>.accepted` (last accepted X), `journal.jsonl`
//! (one [`JournalEntry`] per processed line, appended and fsynced once per batch before its
//! RESPONSE is written), and the token vault (`vault.salt`, `vault.jsonl`: tokens keyed by a
//! salted hash). On start the transaction book (approvals, captures, refunds, voids, the
//! duplicate window) is replayed from the journal. Per batch the order is: persist X →
//! consume the request files → process → save tokens → journal → RESPONSE → COMPLETE, so
//! after a crash a batch is either never processed or processed exactly once (possibly
//! without a COMPLETE — the client then reports it stuck, as it would with a real gateway).
//! Storage failures are retried on the next poll (unwritten RESPONSE/COMPLETE are kept in
//! memory, not re-processed). Accounts are polled in parallel tasks; the batches of one
//! account are handled one at a time. [`SimOptions::idle_backoff`] lets [`GatewaySim::run`]
//! poll less often while every drop is idle. Card numbers, CVV, bank accounts and keys never
//! reach the journal, the vault, the logs or errors; only masked forms and salted hashes do.
//!
//! What is synced, per batch: the accepted number (atomic replace: fsync of the file and of
//! its folder), new tokens (one append + fdatasync, only when the batch issued some), the
//! journal (one write + one fdatasync for all the batch's lines), then RESPONSE and COMPLETE
//! (one atomic `put` each, which on a local folder fsyncs the file and the folder).
//!
//! # Performance
//! A Sola batch is checked through borrowed line views, each line viewed once, collecting the
//! values the rules read as ranges of the file's text; each line is decided and its RESPONSE
//! and journal lines are written straight into reused buffers, without a per-line allocation
//! in the usual case. `cargo bench -p gateway-sim --bench throughput`: about 3.7–4.7 µs of CPU
//! a line (213,000–274,000 lines per CPU-second; 10.4–11.7 µs before), see `README.md` for
//! the figures, the method and what is left.
#![warn(missing_docs)]

pub mod aps;
mod batch;
mod book;
mod card;
mod clock;
mod command;
mod error;
mod fields;
mod flaky;
mod journal;
mod jsonl;
mod knobs;
mod money;
mod out;
mod process;
mod refusal;
mod sim;
mod source;
mod validate;
mod vault;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use flaky::FlakyBackend;
pub use journal::{Journal, JournalEntry};
pub use knobs::{
    AccountMode, CrashAfter, CrashPoint, Knobs, ResponseOrder, SpaceEncoding, StorageFaults,
};
pub use sim::{GatewaySim, RunStats, SimAccount, SimOptions};
