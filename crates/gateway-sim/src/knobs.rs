//! Per-account behaviour switches for tests, demos and load runs. `Knobs::default()` is a
//! well-behaved gateway: no latency, RESPONSE in request order, `%20` for spaces, no faults.

use std::num::NonZeroU32;
use std::time::Duration;

/// How an account's simulated gateway behaves. Build with struct update syntax or the
/// `with_*` methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Knobs {
    /// Extra processing time per batch (tokio time: tests can `pause()` it away).
    pub batch_latency: Duration,
    /// Extra processing time per REQUEST line (tokio time).
    pub line_latency: Duration,
    /// Order of the RESPONSE lines.
    pub response_order: ResponseOrder,
    /// How spaces are written in RESPONSE and COMPLETE.
    pub spaces: SpaceEncoding,
    /// Normal processing, or a gateway error for every batch.
    pub mode: AccountMode,
    /// Stop without COMPLETE after this many answered batches.
    pub crash: Option<CrashAfter>,
    /// Slow or failing storage on this account's drop.
    pub storage: StorageFaults,
}

impl Knobs {
    /// Sets [`Knobs::batch_latency`] and [`Knobs::line_latency`].
    #[must_use]
    pub fn with_latency(mut self, per_batch: Duration, per_line: Duration) -> Self {
        self.batch_latency = per_batch;
        self.line_latency = per_line;
        self
    }

    /// Sets [`Knobs::response_order`].
    #[must_use]
    pub fn with_response_order(mut self, order: ResponseOrder) -> Self {
        self.response_order = order;
        self
    }

    /// Sets [`Knobs::spaces`].
    #[must_use]
    pub fn with_spaces(mut self, spaces: SpaceEncoding) -> Self {
        self.spaces = spaces;
        self
    }

    /// Sets [`Knobs::mode`].
    #[must_use]
    pub fn with_mode(mut self, mode: AccountMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`Knobs::crash`].
    #[must_use]
    pub fn with_crash(mut self, crash: CrashAfter) -> Self {
        self.crash = Some(crash);
        self
    }

    /// Sets [`Knobs::storage`].
    #[must_use]
    pub fn with_storage(mut self, storage: StorageFaults) -> Self {
        self.storage = storage;
        self
    }
}

/// Order of the lines in RESPONSE_X.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseOrder {
    /// The order of the REQUEST lines.
    #[default]
    InOrder,
    /// A deterministic shuffle (from `seed` and the batch number); clients must join on
    /// `xIndex`.
    Shuffled {
        /// Seed of the shuffle.
        seed: u64,
    },
}

/// How a space is encoded in the files the gateway writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpaceEncoding {
    /// `%20`, as the batch document's example.
    #[default]
    Percent20,
    /// `+`, as the gateway's real-time responses.
    Plus,
}

/// Whether batches are processed at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccountMode {
    /// Process batches.
    #[default]
    Normal,
    /// Answer every accepted batch with a COMPLETE `xStatus=Error`, this `xError`, no RESPONSE
    /// and nothing processed.
    GatewayError {
        /// The `xError` text.
        message: String,
    },
}

/// The crash knob: after `batches` answered batches, accept the next one and stop at `point`
/// without writing its COMPLETE. The simulator then refuses to run (as if the process died);
/// open a new one over the same state directory to continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashAfter {
    /// Batches answered (COMPLETE written) by this simulator instance before the crash.
    pub batches: u64,
    /// Where in the next batch to stop.
    pub point: CrashPoint,
}

/// Where the crash knob stops a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The number is persisted and the REQUEST/PROCESS files consumed; nothing processed.
    AfterAccept,
    /// The transactions are processed and journaled; no RESPONSE, no COMPLETE.
    AfterJournal,
    /// RESPONSE is written; no COMPLETE.
    AfterResponse,
}

/// Slow or failing storage for an account (applied by wrapping its backend in
/// [`FlakyBackend`](crate::FlakyBackend)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageFaults {
    /// Added before every storage operation (tokio time).
    pub latency: Duration,
    /// Each storage operation fails with a transient error with probability 1/n (`None`:
    /// never), drawn from a generator seeded with [`StorageFaults::seed`], so a run is
    /// reproducible.
    pub fail_one_in: Option<NonZeroU32>,
    /// Seed of the failure draws.
    pub seed: u64,
}
