//! What the service keeps of a job: its record (state, times, totals, the idempotency key and
//! the body's digest), persisted as `job.json` beside the input and the results.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A job's id: 12 hex digits of its creation time in milliseconds, `-`, 8 random hex digits
/// (sortable by creation; only `[0-9a-f-]`, so it is safe as a folder name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A new id for a job created at `now`.
    pub fn new(now: SystemTime) -> Self {
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self(format!("{ms:012x}-{:08x}", fastrand::u32(..)))
    }

    /// Checks an id given by a caller (a path segment): `None` unless it has the form of an id.
    pub fn parse(text: &str) -> Option<Self> {
        let (time, random) = text.split_once('-')?;
        let hex = |s: &str, n: usize| {
            s.len() >= n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        (hex(time, 12) && time.len() <= 16 && random.len() == 8 && hex(random, 8))
            .then(|| Self(text.to_owned()))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a job is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Durable and waiting for a slot (also after a restart, until it runs again).
    Accepted,
    /// Running through the engine (left so by a stop; resumed at the next start).
    Running,
    /// Every batch of the job reached a final state and no account failed; results ready.
    Complete,
    /// The run ended with an account failed or a batch Stuck (their transactions `unknown` or
    /// `not_processed` with the reason), or could not run; results ready when `results` is
    /// true. `POST /v1/jobs/{id}/retry` runs it again once the cause is fixed.
    Failed,
}

impl JobState {
    /// Its name in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 4] = [
        JobState::Accepted,
        JobState::Running,
        JobState::Complete,
        JobState::Failed,
    ];

    /// Whether the run ended (complete or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Complete | Self::Failed)
    }
}

/// One account of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobAccount {
    /// The account.
    pub account: String,
    /// The job's transactions of this account.
    pub transactions: u64,
    /// Transactions per outcome (`approved`, `declined`, `error`, `not_processed`,
    /// `unknown`), once the run ended.
    pub totals: BTreeMap<String, u64>,
    /// The job's batches by state, once the run ended.
    pub batches: BTreeMap<String, u64>,
    /// Batches of the job not finished when the run ended.
    pub pending: Vec<u32>,
    /// Batches of the job that are Stuck (no COMPLETE in time).
    pub stuck: Vec<u32>,
    /// Why the account stopped, if it did (masked).
    pub failure: Option<String>,
}

/// A job: what `GET /v1/jobs/{id}` shows and `job.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobRecord {
    /// The id.
    pub id: JobId,
    /// Where it is.
    pub state: JobState,
    /// When it was accepted (RFC 3339, UTC).
    pub created: String,
    /// When its last run ended (RFC 3339, UTC).
    pub finished: Option<String>,
    /// The input's format (`kvp`, `csv`, `jsonl`); the results' default format.
    pub format: String,
    /// Transactions in the input.
    pub transactions: u64,
    /// Bytes of the input.
    pub bytes: u64,
    /// SHA-256 of the input (hex): with the idempotency key, what makes a repeated request the
    /// same job.
    pub body_sha256: String,
    /// The `Idempotency-Key` it was created with.
    pub idempotency_key: Option<String>,
    /// Transactions per outcome over every account, once the run ended.
    pub totals: BTreeMap<String, u64>,
    /// Per account.
    pub accounts: Vec<JobAccount>,
    /// Why the run could not finish (masked), if it could not.
    pub error: Option<String>,
    /// Whether merged results can be fetched.
    pub results: bool,
    /// How many times a run was started (a restart or a retry adds one).
    pub runs: u32,
}

/// RFC 3339 UTC, whole seconds.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sortable_and_only_ids_parse() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_000);
        let id = JobId::new(t);
        assert!(id.as_str().starts_with("018bcfe56800-"), "{id}");
        assert_eq!(JobId::parse(id.as_str()), Some(id.clone()));
        let later = JobId::new(t + std::time::Duration::from_millis(1));
        assert!(later > id);
        for bad in [
            "",
            "..",
            "../etc",
            "018bcfe56800",
            "018bcfe56800-0000000g",
            "018BCFE56800-00000000",
            "018bcfe56800-000000000",
            "018bcfe56800-0000/000",
        ] {
            assert_eq!(JobId::parse(bad), None, "{bad:?}");
        }
    }
}
