//! What the APS simulator knows (merchants) and how it misbehaves on purpose (knobs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kvp_format::Secret;

use super::signature::ShaType;

/// One merchant the simulator accepts, with its credentials.
#[derive(Debug, Clone)]
pub struct ApsMerchant {
    /// `merchant_identifier`.
    pub merchant_identifier: String,
    /// `access_code`.
    pub access_code: Secret<String>,
    /// Checks request signatures.
    pub sha_request_phrase: Secret<String>,
    /// Signs answers.
    pub sha_response_phrase: Secret<String>,
    /// SHA-256 or SHA-512.
    pub sha_type: ShaType,
}

/// How validation behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidationMode {
    /// Validate for real.
    #[default]
    Normal,
    /// Every file fails validation (line 1 flagged), whatever it holds.
    FailAll,
    /// Validation never ends while this mode is set: a batch still validating answers 138 to
    /// every `GET_BATCH_RESULTS` (a gateway slow to validate; for shutdown tests). Setting
    /// another mode lets it finish.
    Stall,
}

/// Which answers carry a corrupted signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TamperMode {
    /// Every answer is signed correctly.
    #[default]
    Off,
    /// Every answer's signature is wrong.
    Every,
    /// Only answers that carry processed per-line results (`70000`).
    ProcessedResults,
}

/// Order of the rows of processed `batch_results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultOrder {
    /// A seeded shuffle: clients must join on `Line_Number`.
    #[default]
    Shuffled,
    /// The order of the file's lines.
    InOrder,
}

/// An operation whose answer is lost once: the simulator does the work, then answers HTTP 503
/// as if the connection had dropped, so the client must retry an operation that took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostAnswer {
    /// The next accepted upload (the file is stored; a retry gets 51146).
    Upload,
    /// The next accepted `PROCESS_BATCH` (processing has started).
    ProcessBatch,
    /// The next answer carrying processed results (70000; the lines are journaled).
    Processed,
}

/// Failure knobs, changeable while the simulator runs ([`super::ApsSimHandle::set_knobs`]).
#[derive(Debug, Clone, Default)]
pub struct ApsKnobs {
    /// Added before every answer.
    pub latency: Duration,
    /// Real validation or forced failure.
    pub validation: ValidationMode,
    /// Corrupted answer signatures.
    pub tamper: TamperMode,
    /// The next this-many requests get HTTP 503 without being looked at.
    pub transient_failures: u32,
    /// Order of processed result rows.
    pub result_order: ResultOrder,
    /// Lose the answer of the next such operation (one-shot; reset after use).
    pub lose_answer: Option<LostAnswer>,
}

/// Everything [`super::ApsSim::start`] needs.
#[derive(Debug, Clone)]
pub struct ApsSimOptions {
    /// Where to listen; port 0 picks a free one. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// The merchants served.
    pub merchants: Vec<ApsMerchant>,
    /// The journal file (JSON lines, fsynced per batch); `None` keeps it in memory.
    pub journal: Option<PathBuf>,
    /// `GET_BATCH_RESULTS` answers "still validating" (138) this many times per batch.
    pub validation_polls: u32,
    /// `GET_BATCH_RESULTS` answers "still processing" (140) this many times per batch.
    pub processing_polls: u32,
    /// Amounts whose minor units end in these two digits are declined (`51`: `10.51` declines).
    pub decline_cents: u64,
    /// Seed of the result-row shuffle.
    pub seed: u64,
    /// Failure knobs at start.
    pub knobs: ApsKnobs,
}

impl Default for ApsSimOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            merchants: Vec::new(),
            journal: None,
            validation_polls: 2,
            processing_polls: 2,
            decline_cents: 51,
            seed: 7,
            knobs: ApsKnobs::default(),
        }
    }
}
