//! The per-account gateway protocol: the steps a batch goes through at the gateway, so that
//! planning, the ledger and merging never know which gateway they talk to.
//!
//! The steps map onto both protocols paybatch speaks:
//!
//! | step | Sola file drop | APS HTTPS batch API |
//! |---|---|---|
//! | [`encode_request`](GatewayProtocol::encode_request) | `REQUEST_X.KVP` bytes | the CSV file |
//! | [`upload`](GatewayProtocol::upload) | atomic put + read-back digest check | `UPLOAD_BATCH_FILE` (`51146` = already there) |
//! | [`trigger`](GatewayProtocol::trigger) | `PROCESS_X.KVP`, always last | poll validation, then `PROCESS_BATCH` |
//! | [`poll`](GatewayProtocol::poll) | look for `COMPLETE_X` | `GET_BATCH_RESULTS` until not `70140` |
//! | [`fetch_results`](GatewayProtocol::fetch_results) | `RESPONSE_X`, joined on `xIndex` | `batch_results`, joined on `Line_Number` |
//! | [`fetch_rejected_results`](GatewayProtocol::fetch_rejected_results) | `RESPONSE_X` if present (lines may be missing) | none |
//! | [`cleanup`](GatewayProtocol::cleanup) | delete exactly `RESPONSE_X`, `COMPLETE_X` | nothing |
//!
//! Every step must be idempotent: after a crash the driver repeats the step the ledger does not
//! record as done, with the same sequence number and the same payload bytes.
//!
//! [`upload`](GatewayProtocol::upload) returns the gateway's own id for the batch when it gives
//! one (APS: `batch_id`); the driver records it with the `RequestUploaded` step
//! (`sequence_ledger::Transition::RequestUploadedAs`) and hands it back to every later step in
//! a [`BatchRef`] built from the ledger's record ([`BatchRef::from_record`]).

use async_trait::async_trait;
use bytes::Bytes;
use kvp_format::SequenceNumber;

use crate::error::Result;

/// Which batch a step is about: its number and, once uploaded, the gateway's id for it as the
/// ledger recorded it. Sola ignores the id (the number is the name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchRef {
    /// The batch's sequence number.
    pub sequence: SequenceNumber,
    /// The gateway's id for the uploaded batch (APS `batch_id`), if it gave one.
    pub gateway_batch_id: Option<String>,
}

impl BatchRef {
    /// A batch known by its number alone (no gateway id).
    pub fn new(sequence: SequenceNumber) -> Self {
        Self {
            sequence,
            gateway_batch_id: None,
        }
    }

    /// The batch as the ledger records it: its number and its stored gateway id.
    pub fn from_record(record: &sequence_ledger::BatchRecord) -> Self {
        Self {
            sequence: record.sequence,
            gateway_batch_id: record.gateway_batch_id.clone(),
        }
    }

    /// This batch with the gateway's id `id`.
    #[must_use]
    pub fn with_gateway_batch_id(mut self, id: Option<String>) -> Self {
        self.gateway_batch_id = id;
        self
    }
}

impl std::fmt::Display for BatchRef {
    /// The number, as the driver names batches in messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sequence.fmt(f)
    }
}

/// One transaction as it goes into a batch: its `xIndex` and its fields (without the
/// credentials and protocol fields, which the protocol adds).
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    /// 0-based line number in the batch.
    pub index: u64,
    /// The caller's transaction fields, in input order.
    pub fields: &'a [(String, String)],
}

/// Whether the files of a dry run carry the real card data and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Masking {
    /// Every value of a sensitive field as [`kvp_format::mask_value`] shows it: card numbers
    /// first 6 / last 4, CVV, track data, account and routing numbers and keys `[REDACTED]`.
    #[default]
    Masked,
    /// The exact bytes that would be uploaded, card data and keys included: such files must be
    /// treated like the drop itself.
    Unmasked,
}

impl Masking {
    /// Calls `f` with `lines` as this masking shows them: unchanged, or with every sensitive
    /// value masked ([`mask_fields`]).
    pub fn apply<T>(self, lines: &[RequestLine<'_>], f: impl FnOnce(&[RequestLine<'_>]) -> T) -> T {
        match self {
            Masking::Unmasked => f(lines),
            Masking::Masked => {
                let masked: Vec<Vec<(String, String)>> =
                    lines.iter().map(|l| mask_fields(l.fields)).collect();
                let view: Vec<RequestLine<'_>> = lines
                    .iter()
                    .zip(&masked)
                    .map(|(l, fields)| RequestLine {
                        index: l.index,
                        fields,
                    })
                    .collect();
                f(&view)
            }
        }
    }
}

/// One file a batch would put at the gateway, as a dry run writes it: its path relative to the
/// account's folder (`/`-separated) and its bytes. `Debug` shows the length, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct BatchFile {
    /// Relative path, e.g. `Request/REQUEST_7.KVP`.
    pub path: String,
    /// The content.
    pub bytes: Bytes,
}

impl std::fmt::Debug for BatchFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchFile")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// `fields` with every sensitive value masked ([`kvp_format::mask_value`]).
pub fn mask_fields(fields: &[(String, String)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), kvp_format::mask_value(k, v).into_owned()))
        .collect()
}

/// The gateway's verdict on a whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchVerdict {
    /// Whether the batch was processed (Sola: `xStatus=Success`).
    pub success: bool,
    /// The gateway's status word.
    pub status: String,
    /// The gateway's error text, if any.
    pub error: Option<String>,
    /// How many lines the gateway says it processed.
    pub processed_count: Option<u64>,
    /// Every field of the verdict as the gateway sent it, in order (Sola: the COMPLETE line;
    /// empty where the protocol has no such record). The ledger keeps the ones the fields
    /// above do not hold (`xResult`, the echoes), never a sensitive key.
    pub fields: Vec<(String, String)>,
}

impl BatchVerdict {
    /// The ledger transition recording this verdict: `Completed` with the verdict and the rest
    /// of the gateway's fields.
    pub fn into_transition(self) -> sequence_ledger::Transition {
        let fields = sequence_ledger::CompleteFields::from_pairs(
            self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        sequence_ledger::Transition::CompletedWith(self.into(), fields)
    }
}

impl From<BatchVerdict> for sequence_ledger::Verdict {
    /// The ledger's record of the verdict: `Success` or `GatewayError`, with the gateway's
    /// status, error and processed count as given.
    fn from(v: BatchVerdict) -> Self {
        sequence_ledger::Verdict {
            outcome: if v.success {
                sequence_ledger::Outcome::Success
            } else {
                sequence_ledger::Outcome::GatewayError
            },
            status: v.status,
            error: v.error,
            processed_count: v.processed_count,
        }
    }
}

/// What one look at the gateway found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollResult {
    /// Not finished yet.
    Pending,
    /// Finished with this verdict.
    Done(BatchVerdict),
}

/// What the gateway answered per line for a batch it rejected: the lines it returned, and
/// whether there was an answer at all (for a verdict without a processed count, only an
/// absent answer proves that nothing was processed: PROTOCOL.md decision 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedAnswer {
    /// Read, absent, or present but unreadable.
    pub answer: sequence_ledger::PerLineAnswer,
    /// The lines it held (any subset of the batch; empty unless read).
    pub lines: Vec<LineResult>,
}

impl RejectedAnswer {
    /// No per-line answer at all.
    pub fn absent() -> Self {
        Self {
            answer: sequence_ledger::PerLineAnswer::Absent,
            lines: Vec::new(),
        }
    }
}

/// What the gateway side holds of one batch, for an operator about to resolve it by hand
/// (`paybatch resolve` shows it before abandoning a batch that may have been triggered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Whether the gateway was asked to process the batch (Sola: `PROCESS_X` is in the
    /// drop); `None` when this protocol cannot tell.
    pub triggered: Option<bool>,
    /// Whether the gateway's verdict is there (Sola: a whole `COMPLETE_X`); `None` when this
    /// protocol cannot tell.
    pub answered: Option<bool>,
    /// What was found, one item each (file names), for the operator.
    pub found: Vec<String>,
}

/// One per-line result, joined on the batch index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineResult {
    /// The batch line (`xIndex`).
    pub index: u64,
    /// The response fields (sensitive ones already removed).
    pub fields: Vec<(String, String)>,
}

/// The gateway side of one account. Implementations hold the account's transport and
/// credentials; the driver calls the steps in order, one batch in flight per account.
#[async_trait]
pub trait GatewayProtocol: Send + Sync + std::fmt::Debug {
    /// The account name (for messages).
    fn account(&self) -> &str;

    /// The exact payload of batch `sequence`. Deterministic: the same lines give the same
    /// bytes, whose SHA-256 the ledger binds to the number before anything is uploaded.
    ///
    /// # Errors
    /// A line that cannot be encoded for this gateway.
    fn encode_request(&self, sequence: SequenceNumber, lines: &[RequestLine<'_>]) -> Result<Bytes>;

    /// The name the gateway knows batch `sequence` by, when it is not the number alone (APS:
    /// `batch_reference`). The driver stores it with the reservation and refuses to resume a
    /// batch whose stored name differs from this one (the configuration changed), so a batch
    /// is never uploaded or polled under a second name. The default is none (Sola: the
    /// number is the name).
    ///
    /// # Errors
    /// A configuration that cannot give a name.
    fn external_reference(&self, sequence: SequenceNumber) -> Result<Option<String>> {
        let _ = sequence;
        Ok(None)
    }

    /// Makes the payload available to the gateway without starting processing, and verifies
    /// it arrived intact. Idempotent: an identical payload already there is kept. Returns the
    /// gateway's id for the batch when it gives one (APS: `batch_id`; Sola: none), which the
    /// driver records with the `RequestUploaded` step and passes back in every [`BatchRef`].
    ///
    /// # Errors
    /// Storage or transport failures; a verification mismatch.
    async fn upload(&self, sequence: SequenceNumber, payload: Bytes) -> Result<Option<String>>;

    /// Starts processing of an uploaded batch. Idempotent (the gateway ignores a repeat).
    ///
    /// # Errors
    /// Storage or transport failures.
    async fn trigger(&self, batch: &BatchRef, line_count: u64) -> Result<()>;

    /// Whether the driver may abandon [`trigger`](Self::trigger) at any await when the run is
    /// shut down, instead of waiting for it to return. Say yes only when `trigger` can wait a
    /// long time (APS: until the gateway has validated the file) **and** dropping it midway is
    /// harmless: the batch then stays `RequestUploaded`, the next run calls `trigger` again,
    /// and that call must carry on correctly whether or not the abandoned one reached the
    /// gateway, leaving nothing behind. The default is no: `trigger` runs to completion (Sola:
    /// one atomic PROCESS put, which an abandoned upload could leave half-written as a
    /// temporary file).
    fn trigger_is_cancel_safe(&self) -> bool {
        false
    }

    /// Looks once for the batch's verdict.
    ///
    /// # Errors
    /// Storage or transport failures; a malformed verdict.
    async fn poll(&self, batch: &BatchRef) -> Result<PollResult>;

    /// The per-line results of a processed batch: exactly one per index `0..line_count`.
    ///
    /// # Errors
    /// Missing, extra or malformed lines; storage or transport failures.
    async fn fetch_results(&self, batch: &BatchRef, line_count: u64) -> Result<Vec<LineResult>>;

    /// The per-line results the gateway returned for a batch it rejected (PROTOCOL.md
    /// decision 4: "fetch RESPONSE anyway if present"). Lines may be missing and none at all
    /// is fine; an answer that cannot be read is logged and reported
    /// [`Unreadable`](sequence_ledger::PerLineAnswer::Unreadable) with no lines. A line
    /// result carrying `xResult` is the line's own outcome; one without it (APS: why
    /// validation refused the line) is a remark. The default is an absent answer: a protocol
    /// without per-line results for a rejected batch.
    ///
    /// # Errors
    /// Storage or transport failures (the batch stays `Completed`; a later run retries).
    async fn fetch_rejected_results(
        &self,
        batch: &BatchRef,
        line_count: u64,
    ) -> Result<RejectedAnswer> {
        let _ = (batch, line_count);
        Ok(RejectedAnswer::absent())
    }

    /// The highest number at or above `from` for which the gateway's side already holds an
    /// answer this client did not ask for (Sola: `Response/COMPLETE_Y.KVP` or
    /// `RESPONSE_Y.KVP` with `Y ≥ from`), if any. The driver asks before the first use of a
    /// number (and, for a batch that may have been triggered, from the number above it) and
    /// refuses the account when something is found (PROTOCOL.md decision 4b): the drop was
    /// used by another client or the ledger was restored. The default is none: a gateway
    /// whose batches are named so that no other client's answer can be mistaken for ours.
    ///
    /// # Errors
    /// Storage or transport failures.
    async fn foreign_answers(&self, from: SequenceNumber) -> Result<Option<SequenceNumber>> {
        let _ = from;
        Ok(None)
    }

    /// What the gateway side holds of batch `sequence` (see [`Inspection`]); changes nothing.
    /// The default knows nothing.
    ///
    /// # Errors
    /// Storage or transport failures.
    async fn inspect(&self, sequence: SequenceNumber) -> Result<Inspection> {
        let _ = sequence;
        Ok(Inspection::default())
    }

    /// Removes what the gateway wrote for this batch (and only this batch), once its results
    /// are durably recorded. Idempotent.
    ///
    /// # Errors
    /// Storage or transport failures.
    async fn cleanup(&self, batch: &BatchRef) -> Result<()>;

    /// The files batch `sequence` of `lines` would put at the gateway, for a dry run (nothing
    /// is uploaded, nothing touches the network): Sola `Request/REQUEST_X.KVP` and
    /// `Request/PROCESS_X.KVP`, APS the CSV named after its `batch_reference`. With
    /// [`Masking::Masked`] card data and keys are masked, including the credentials the
    /// protocol adds itself.
    ///
    /// The default is one file, the payload of [`encode_request`](Self::encode_request) over
    /// the (masked) lines, named after [`external_reference`](Self::external_reference) or
    /// `BATCH_X`. A protocol that adds credentials to the payload must override it.
    ///
    /// # Errors
    /// As [`encode_request`](Self::encode_request) and
    /// [`external_reference`](Self::external_reference).
    fn batch_files(
        &self,
        sequence: SequenceNumber,
        lines: &[RequestLine<'_>],
        masking: Masking,
    ) -> Result<Vec<BatchFile>> {
        let path = self
            .external_reference(sequence)?
            .unwrap_or_else(|| format!("BATCH_{sequence}"));
        let bytes = masking.apply(lines, |lines| self.encode_request(sequence, lines))?;
        Ok(vec![BatchFile { path, bytes }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequence_ledger::{Outcome, Verdict};

    #[test]
    fn into_transition_keeps_the_gateway_fields_but_no_key() {
        let v = BatchVerdict {
            success: true,
            status: "Success".into(),
            error: None,
            processed_count: Some(2),
            fields: [
                ("xResult", "Success"),
                ("xStatus", "Success"),
                ("xKey", "batch-secret"),
                ("xSubmittedCount", "2"),
                ("xProcessedCount", "2"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        };
        let sequence_ledger::Transition::CompletedWith(verdict, fields) = v.into_transition()
        else {
            panic!("expected CompletedWith");
        };
        assert_eq!(verdict.outcome, Outcome::Success);
        assert_eq!(fields.result.as_deref(), Some("Success"));
        assert_eq!(
            fields.extra,
            vec![("xSubmittedCount".to_owned(), "2".to_owned())]
        );
    }

    #[test]
    fn verdict_converts_to_the_ledger_s() {
        for (success, outcome) in [(true, Outcome::Success), (false, Outcome::GatewayError)] {
            let v = BatchVerdict {
                success,
                status: "S".into(),
                error: Some("e".into()),
                processed_count: Some(0),
                fields: Vec::new(),
            };
            let got = Verdict::from(v);
            assert_eq!(
                (
                    got.outcome,
                    got.status.as_str(),
                    got.error.as_deref(),
                    got.processed_count
                ),
                (outcome, "S", Some("e"), Some(0))
            );
        }
    }
}
