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
//! | [`poll`](GatewayProtocol::poll) | look for a whole `COMPLETE_X` | `GET_BATCH_RESULTS` until a verdict |
//! | [`fetch_results`](GatewayProtocol::fetch_results) | `RESPONSE_X`, joined on `xIndex` | `batch_results`, joined on `Line_Number` |
//! | [`fetch_rejected_results`](GatewayProtocol::fetch_rejected_results) | `RESPONSE_X` if present (lines may be missing) | validation reasons |
//! | [`foreign_answers`](GatewayProtocol::foreign_answers) | `Response/` files numbered at or above X | none |
//! | [`cleanup`](GatewayProtocol::cleanup) | delete exactly `RESPONSE_X`, `COMPLETE_X` | nothing |
//!
//! Every step must be idempotent: after a crash the engine repeats the step its ledger does
//! not record as done, with the same sequence number and the same payload bytes.

use async_trait::async_trait;
use bytes::Bytes;
use kvp_format::SequenceNumber;

use crate::batch::{BatchRef, Inspection, LineResult, PollResult, RejectedAnswer, Uploaded};
use crate::error::Result;
use crate::request::BatchLine;

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
    fn encode_request(&self, sequence: SequenceNumber, lines: &[BatchLine<'_>]) -> Result<Bytes>;

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

    /// Before a batch recorded as uploaded is triggered again (a resumed run: PROCESS_X may or
    /// may not have been written before it stopped), checks that what the drop holds under its
    /// name is still this payload's transactions (PROTOCOL.md decisions 4b and 4d), so that a
    /// request this ledger did not write is never triggered. A request no longer there (the
    /// gateway took it) passes. The default passes: a gateway that keeps uploads where
    /// nobody else can replace them.
    ///
    /// # Errors
    /// Storage or transport failures; a request with other transactions.
    async fn verify_uploaded(&self, sequence: SequenceNumber, payload: &Bytes) -> Result<()> {
        let _ = (sequence, payload);
        Ok(())
    }

    /// The request the gateway holds under batch `sequence`'s name, as transactions: a
    /// takeover triggers a batch another process recorded as uploaded only when what is there
    /// carries the transactions the ledger bound to the number (PROTOCOL.md §5), since the
    /// taking-over process has no payload to compare with; a request is withdrawn only when
    /// it is this ledger's. The default is [`Uploaded::NotShown`] (a gateway that keeps
    /// uploads where nobody else can replace them: APS).
    ///
    /// # Errors
    /// Storage or transport failures; a request that is not a readable request file of this
    /// batch (lines numbered for other places).
    async fn uploaded_request(&self, sequence: SequenceNumber) -> Result<Uploaded> {
        let _ = sequence;
        Ok(Uploaded::NotShown)
    }

    /// Removes the request of batch `sequence` from the gateway's side, for a batch that will
    /// never be triggered (released at a takeover, abandoned by an operator): its lines hold
    /// card data, and nothing will send them. The caller has checked that the request there is
    /// this ledger's ([`uploaded_request`](Self::uploaded_request)). Returns whether this
    /// protocol removes requests at all; the default removes nothing (APS: the service keeps
    /// uploads, and a batch never started expires there).
    ///
    /// # Errors
    /// Storage or transport failures.
    async fn withdraw_request(&self, sequence: SequenceNumber) -> Result<bool> {
        let _ = sequence;
        Ok(false)
    }

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
    /// [`Unreadable`](crate::AnswerFile::Unreadable) with no lines. A line
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

    /// Removes what interrupted uploads of batch `sequence` left in the drop: files that were
    /// being written when their process was killed (or the upload cancelled), never published
    /// and never seen by the gateway, but holding the batch's data — card numbers, for a
    /// request. Never a published file. The driver calls it before it goes on with a batch
    /// that a run before it may have been uploading (resumed or taken over while `Reserved` or
    /// `RequestUploaded`). Returns how many files were removed; the default, for a gateway
    /// whose uploads leave nothing behind, removes none.
    ///
    /// # Errors
    /// Storage or transport failures.
    async fn remove_unpublished(&self, sequence: SequenceNumber) -> Result<usize> {
        let _ = sequence;
        Ok(0)
    }

    /// Removes what the gateway wrote for this batch (and only this batch), once its results
    /// are durably recorded. Idempotent.
    ///
    /// # Errors
    /// Storage or transport failures.
    async fn cleanup(&self, batch: &BatchRef) -> Result<()>;
}
