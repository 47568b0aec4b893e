//! What the steps exchange about one batch: which batch, the gateway's verdict, its per-line
//! answer.

use bytes::Bytes;
use kvp_format::SequenceNumber;

/// Which batch a step is about: its number and, once uploaded, the gateway's id for it as the
/// engine recorded it. Sola ignores the id (the number is the name).
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

    /// This batch with the gateway's id `id`.
    #[must_use]
    pub fn with_gateway_batch_id(mut self, id: Option<String>) -> Self {
        self.gateway_batch_id = id;
        self
    }
}

impl std::fmt::Display for BatchRef {
    /// The number, as batches are named in messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sequence.fmt(f)
    }
}

/// The gateway's verdict on a whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayVerdict {
    /// Whether the batch was processed (Sola: `xStatus=Success`).
    pub success: bool,
    /// The gateway's status word.
    pub status: String,
    /// The gateway's error text, if any.
    pub error: Option<String>,
    /// How many lines the gateway says it processed.
    pub processed_count: Option<u64>,
    /// Every field of the verdict as the gateway sent it, in order (Sola: the COMPLETE line;
    /// empty where the protocol has no such record). The engine keeps the ones the fields
    /// above do not hold (`xResult`, the echoes), never a sensitive key.
    pub fields: Vec<(String, String)>,
}

/// What one look at the gateway found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollResult {
    /// Not finished yet.
    Pending,
    /// Finished with this verdict.
    Done(GatewayVerdict),
}

/// One per-line result, joined on the batch index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineResult {
    /// The batch line (`xIndex`).
    pub index: u64,
    /// The response fields in the gateway's order (sensitive ones already removed), in one
    /// buffer: a line's dozen fields are two allocations, not two dozen.
    pub fields: kvp_format::Record,
}

/// What the gateway's per-line answer to a batch was when it was looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerFile {
    /// It was read; its lines are the results.
    Read,
    /// There was none.
    Absent,
    /// There was one, but it could not be read: nothing can be concluded from it.
    Unreadable,
}

/// What the gateway answered per line for a batch it rejected: the lines it returned, and
/// whether there was an answer at all (for a verdict without a processed count, only an
/// absent answer proves that nothing was processed: PROTOCOL.md decision 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedAnswer {
    /// Read, absent, or present but unreadable.
    pub answer: AnswerFile,
    /// The lines it held (any subset of the batch; empty unless read).
    pub lines: Vec<LineResult>,
}

impl RejectedAnswer {
    /// No per-line answer at all.
    pub fn absent() -> Self {
        Self {
            answer: AnswerFile::Absent,
            lines: Vec::new(),
        }
    }
}

/// The request the gateway holds under a batch's name, as transactions: each line's fields
/// without the protocol's envelope (index, number, key, version, software), in order, and
/// the bytes as stored. A takeover compares them with the ledger's digest of the batch
/// before triggering a batch another process uploaded (see
/// [`GatewayProtocol::uploaded_request`](crate::GatewayProtocol::uploaded_request)). Debug
/// shows the sizes only: the fields hold card data.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UploadedRequest {
    /// The request's bytes, as the gateway holds them.
    pub bytes: Bytes,
    /// Each line's transaction fields (name, value), in file order.
    pub lines: Vec<Vec<(String, String)>>,
}

/// What [`GatewayProtocol::uploaded_request`](crate::GatewayProtocol::uploaded_request) found
/// under a batch's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploaded {
    /// A request, as transactions.
    Found(UploadedRequest),
    /// Nothing is there.
    Absent,
    /// This protocol cannot show what the gateway holds (APS keeps uploads on its side).
    NotShown,
}

impl std::fmt::Debug for UploadedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadedRequest")
            .field("bytes", &self.bytes.len())
            .field("lines", &self.lines.len())
            .finish()
    }
}

/// What the gateway side holds of one batch, for an operator about to resolve it by hand
/// (`paybatch resolve` shows it before abandoning a batch) and for a takeover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Whether the gateway holds the batch's request (Sola: `REQUEST_X` is in the drop; APS:
    /// the service knows the batch reference); `None` when this protocol cannot tell.
    pub uploaded: Option<bool>,
    /// Whether the gateway was asked to process the batch (Sola: `PROCESS_X` is in the
    /// drop); `None` when this protocol cannot tell.
    pub triggered: Option<bool>,
    /// Whether the gateway's answer is there, or any part of it (Sola: `COMPLETE_X` or
    /// `RESPONSE_X`, whole or not): proof that it took the batch up; `None` when this protocol
    /// cannot tell.
    pub answered: Option<bool>,
    /// What was found, one item each (file names, or what the service said), for the operator.
    pub found: Vec<String>,
}
