//! What callers hand to the ledger and what they get back.

use std::fmt;

use kvp_format::{Record, SequenceNumber};
use serde::{Deserialize, Serialize};

use crate::{AccountId, BatchState, CompleteFields, Stamp, Verdict};

/// A batch to reserve: its number (from [`crate::Ledger::next_sequence`]), the length of the
/// `REQUEST_X` file as first built, and one binding per line. The ledger derives the batch's
/// [content digest](BatchRecord::content_sha256) from the lines' digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// The number the caller wants; must be above the account's high-water mark and floor.
    pub sequence: SequenceNumber,
    /// Length of the `REQUEST_X` file in bytes, as built at reservation (informational: a
    /// rotated key or a new software version may change it when the batch is resumed).
    pub request_len: u64,
    /// One entry per line, in line order (`index` 0, 1, 2, ...).
    pub lines: Vec<NewBinding>,
    /// The name the gateway knows the batch by, when it is not the number alone (APS:
    /// `batch_reference`). Stored with the reservation so that a resumed batch is always
    /// addressed by the name it was reserved under, whatever the configuration says later.
    pub external_reference: Option<String>,
}

/// One transaction of a new batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBinding {
    /// The caller's reference for the transaction (unique per account, for idempotency).
    pub client_ref: String,
    /// Its `xIndex` in the batch (= its position).
    pub index: u64,
    /// [`crate::content_digest`] of the transaction (sensitive values masked before hashing).
    pub content_digest: [u8; 32],
}

/// Where a client reference is bound: "batch 17, line 4".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The batch.
    pub sequence: SequenceNumber,
    /// The line's `xIndex` (0-based).
    pub index: u64,
    /// The transaction's content digest.
    #[serde(with = "crate::codec::hex32")]
    pub content_digest: [u8; 32],
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch {}, line {}", self.sequence, self.index)
    }
}

/// The answer of [`crate::Ledger::reserve`]. Only `Reserved` wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
// One value per reservation, handed straight back: boxing the record would only cost callers
// a deref.
#[allow(clippy::large_enum_variant)]
pub enum Reserve {
    /// The batch is durable (flushed and fsynced) with all its bindings.
    Reserved(BatchRecord),
    /// The number is no longer above the account's high-water mark or floor (another task
    /// reserved it, or an operator raised the floor). `next` is the number to try instead.
    LostRace {
        /// What [`crate::Ledger::next_sequence`] answers now.
        next: SequenceNumber,
    },
    /// Some references are already bound to a live batch; nothing was written.
    Conflict {
        /// One entry per bound reference, in line order.
        conflicts: Vec<RefConflict>,
    },
}

/// A reference of a new batch that is already bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefConflict {
    /// The reference.
    pub client_ref: String,
    /// Its line in the new batch.
    pub index: u64,
    /// Where it is already bound.
    pub existing: Binding,
    /// Same content (a re-submission) or different content (a real conflict).
    pub kind: ConflictKind,
}

/// Whether a re-used reference carries the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// Same content digest: the transaction was already submitted ("already in batch 17, line 4").
    AlreadyBound,
    /// Different content under the same reference: an error in the caller's input.
    ContentDiffers,
}

/// Everything the ledger knows about one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The account.
    pub account: AccountId,
    /// Its number.
    pub sequence: SequenceNumber,
    /// Where it is.
    pub state: BatchState,
    /// What the batch carries, as [`crate::batch_digest`] of its lines' content digests, in
    /// line order: the caller's transactions with sensitive values masked — never the file's
    /// bytes, which hold card numbers and keys (a digest of those could be brute-forced back
    /// to a card number by anyone who knows the other fields) and change with a rotated key
    /// or a new software version, neither of which changes the batch (PROTOCOL.md decision
    /// 4d). Records written before this rule hold the digest of the REQUEST bytes here
    /// (serialised as `request_sha256`); nothing compares against it.
    #[serde(with = "crate::codec::hex32", alias = "request_sha256")]
    pub content_sha256: [u8; 32],
    /// Length of `REQUEST_X` in bytes, as built at reservation.
    pub request_len: u64,
    /// Number of lines (transactions).
    pub line_count: u64,
    /// Every state entered, oldest first (the first is `Reserved`).
    pub transitions: Vec<Stamp>,
    /// The gateway's COMPLETE verdict, once seen.
    pub verdict: Option<Verdict>,
    /// The rest of COMPLETE (`xResult`, the echoes; never a sensitive key), when the verdict
    /// was recorded with [`crate::Transition::CompletedWith`]. `None` before COMPLETE, after
    /// a plain [`crate::Transition::Completed`], and in records written before this field
    /// existed (it defaults when absent, so older ledgers open unchanged).
    #[serde(default)]
    pub complete_fields: Option<CompleteFields>,
    /// The operator's note (an abandon reason, or a manual resolution).
    pub note: Option<String>,
    /// The gateway's name for the batch, as reserved ([`NewBatch::external_reference`]).
    /// `None` for gateways addressed by the number alone and in records written before this
    /// field existed (it defaults when absent).
    #[serde(default)]
    pub external_reference: Option<String>,
    /// What the gateway's per-line answer held when the batch was collected; `None` before
    /// collection and in records written before this field existed.
    #[serde(default)]
    pub per_line_answer: Option<PerLineAnswer>,
    /// The gateway's own id for the uploaded batch (APS: the upload answer's `batch_id`),
    /// recorded with the `RequestUploaded` step ([`crate::Transition::RequestUploadedAs`]) and
    /// sent back on every later call about the batch. `None` for gateways without one, when
    /// the gateway did not give one, and in records written before this field existed (it
    /// defaults when absent).
    #[serde(default)]
    pub gateway_batch_id: Option<String>,
    /// When [`crate::Ledger::prune`] dropped the batch's stored results (Unix milliseconds):
    /// its lines' answers are no longer in the ledger (report them `unknown`, "results
    /// pruned"). Its references, digests, state and verdict stay, so idempotency is unchanged.
    /// `None` while the results are kept, and in records written before this field existed.
    #[serde(default)]
    pub results_pruned_at: Option<u64>,
}

/// What a batch's per-line answer (Sola: `RESPONSE_X`) held when the batch was collected. For
/// a batch the gateway rejected without a processed count, only an absent answer proves that
/// nothing was processed (PROTOCOL.md decision 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PerLineAnswer {
    /// It was read; the stored results are its lines.
    Read,
    /// There was none.
    Absent,
    /// There was one, but it could not be read (bad line, wrong number, repeated index):
    /// nothing can be concluded from it.
    Unreadable,
}

/// Which finished batches give their transactions back, so that a new batch may take them
/// (PROTOCOL.md §2 item 6 allows both; the caller picks what its operator asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Release {
    /// Only batches an operator abandoned: a gateway-rejected batch is final, and its
    /// transactions stay bound to it (a plain re-run uploads nothing).
    #[default]
    AbandonedOnly,
    /// Abandoned batches and batches the gateway rejected without processing anything
    /// (`paybatch submit --resubmit-rejected`).
    AbandonedOrRejected,
}

impl BatchRecord {
    /// Whether a line of this batch may be bound to another number: the batch was abandoned
    /// by an operator, or (under [`Release::AbandonedOrRejected`]) the gateway proved it
    /// processed nothing of it and the line has no result of its own
    /// (`line_has_outcome`: its stored result carries `xResult`, see
    /// [`StoredResult::is_outcome`]). PROTOCOL.md decisions 4 and 6.
    pub fn releases_line_under(&self, release: Release, line_has_outcome: bool) -> bool {
        self.state == BatchState::Abandoned
            || (release == Release::AbandonedOrRejected && self.is_rejected() && !line_has_outcome)
    }

    /// Whether the gateway rejected the batch and proved it processed nothing, as far as its
    /// answer is read: a collected batch whose verdict is an error with `xProcessedCount=0`
    /// (and no per-line answer that could not be read: its lines may say `xResult=A`), or
    /// with no count and no per-line answer at all (PROTOCOL.md decision 4). Lines of such a
    /// batch that nevertheless have a result of their own keep it.
    pub fn is_rejected(&self) -> bool {
        let collected = matches!(self.state, BatchState::Collected | BatchState::Cleaned);
        collected
            && self.verdict.as_ref().is_some_and(|v| {
                (v.proves_nothing_processed()
                    && self.per_line_answer != Some(PerLineAnswer::Unreadable))
                    || (v.outcome == crate::BatchOutcome::GatewayError
                        && v.processed_count.is_none()
                        && self.per_line_answer == Some(PerLineAnswer::Absent))
            })
    }
}

/// The gateway's answer for one transaction, as kept for re-merging after a crash. Only
/// response fields: sensitive keys (`kvp_format::is_sensitive`) are refused by
/// [`crate::Ledger::store_results`]; the gateway's masked card number and token are fine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    /// The line's `xIndex`.
    pub index: u64,
    /// The response fields in the gateway's order (`xIndex`/`xSequenceNumber` need not be
    /// kept), in one buffer. Serialized as a list of `[key, value]` pairs.
    #[serde(with = "pairs")]
    pub fields: Record,
}

impl StoredResult {
    /// Whether these fields are the gateway's outcome for the line (they carry `xResult`), as
    /// opposed to remarks about it (APS: the reason a line failed validation, with no
    /// `xResult`). A line with an outcome was processed, whatever its batch's verdict.
    pub fn is_outcome(fields: &Record) -> bool {
        fields
            .keys()
            .any(|k| k.eq_ignore_ascii_case(kvp_format::keys::RESULT))
    }
}

/// A [`Record`] as a list of `[key, value]` pairs.
mod pairs {
    use kvp_format::Record;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(r: &Record, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(r.iter())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Record, D::Error> {
        Ok(Vec::<(String, String)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// An account's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The highest number ever reserved, if any.
    pub high_water: Option<SequenceNumber>,
    /// The operator's floor: the gateway has already seen numbers up to here.
    pub floor: Option<SequenceNumber>,
    /// The highest number ever triggered (PROCESS uploaded).
    pub triggered: Option<SequenceNumber>,
}

impl AccountInfo {
    /// The larger of the high-water mark and the floor: every new number must be above it.
    pub fn last_used(&self) -> Option<SequenceNumber> {
        self.high_water.max(self.floor)
    }
}
