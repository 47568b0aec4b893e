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

/// Which reading of the service the simulator follows (PROTOCOL.md §3a and §3b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReferenceMode {
    /// As the vendor's published reference shows (§3b, the default): a validated batch answers
    /// `70000` (not `76000`), and `Line_Number` counts the header row as line 1 (the first
    /// data row is 2).
    #[default]
    Published,
    /// As section 3a assumed: a validated batch answers `76000`, data rows are numbered from 1.
    Assumed3a,
}

impl ReferenceMode {
    /// `Line_Number` of the file's first data row: 2 (published) or 1 (3a).
    pub fn line_number_offset(self) -> u64 {
        match self {
            Self::Published => 2,
            Self::Assumed3a => 1,
        }
    }
}

/// How processed per-line results travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultsForm {
    /// Inside the signed JSON answer, as the `batch_results` CSV text (3a).
    #[default]
    Json,
    /// As the whole answer: a `text/csv` body, unsigned (the published example is plain CSV).
    CsvBody,
}

/// Whether the upload's signature covers the file part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadSignature {
    /// Every field but `signature` and the file (3a).
    #[default]
    Excluded,
    /// Also the file's text, as the value of a `file` parameter.
    Content,
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
    /// Lines whose amount's minor units end in these two digits are left unsettled: their
    /// status is, by line, one of `15` uncertain, `19` pending, `20` on hold, `40` in review.
    pub unsettled_cents: Option<u64>,
    /// How processed per-line results travel.
    pub results_form: ResultsForm,
    /// `GET_BATCH_RESULTS` and `PROCESS_BATCH` without `batch_id` are refused (`x1001`).
    /// A `batch_id` that is not the batch's is always refused (`x1002`).
    pub require_batch_id: bool,
    /// A validated batch's answer lists every line (`Line_Number`, `merchant_reference`,
    /// `response_code` = the answer's code): per-line rows that are not transaction results.
    pub validation_rows: bool,
    /// `GET_BATCH_RESULTS` answers leave out `transactions_count` (the published parameter
    /// list has it; a service that does not send it must not be taken at its word).
    pub omit_transactions_count: bool,
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
    /// Which reading of the service to follow (default: the published reference).
    pub reference: ReferenceMode,
    /// When set, `PROCESS_BATCH` is served only at this path (the older reference gives the
    /// Process step its own URL) and refused on the batchApi path (`00004`).
    pub process_path: Option<String>,
    /// Whether upload signatures must cover the file.
    pub upload_signature: UploadSignature,
    /// Header cells of renamed standard columns, as (parameter, cell): the file's header is
    /// read back to parameter names before validation.
    pub header_names: Vec<(String, String)>,
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
            reference: ReferenceMode::default(),
            process_path: None,
            upload_signature: UploadSignature::default(),
            header_names: Vec::new(),
        }
    }
}
