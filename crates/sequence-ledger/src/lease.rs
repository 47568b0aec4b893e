//! Leases: an account is driven by one process at a time (PROTOCOL.md §5).
//!
//! A lease names its holder ([`LeaseOwner`]: host, pid, a random id), carries an epoch (the
//! fencing number: it grows with every new holder of the account) and expires at a time set by
//! the ledger's clock (the database's, for a shared ledger). Every write for an account takes
//! the caller's [`Lease`] and is refused with [`crate::Error::LeaseLost`] once that lease is no
//! longer the account's live one, checked in the same transaction as the write.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::AccountId;

/// How long a lease lasts unless renewed, by default (`[ledger] lease_ttl`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// Who holds or asks for a lease: a host name, a process id and a random id (so a restarted
/// process with a recycled pid is a new owner).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseOwner {
    /// The host name (from the kernel, else `$HOSTNAME`, else `localhost`).
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// A random id, 16 hex digits.
    pub id: String,
}

impl LeaseOwner {
    /// This process, with a fresh random id.
    pub fn this_process() -> LeaseOwner {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "localhost".to_string());
        LeaseOwner {
            host,
            pid: std::process::id(),
            id: random_id(),
        }
    }

    /// This owner with another random id: a second owner inside one process (tests, or two
    /// engines sharing a process).
    #[must_use]
    pub fn renamed(&self) -> LeaseOwner {
        LeaseOwner {
            id: random_id(),
            ..self.clone()
        }
    }
}

/// 64 random bits as hex: `RandomState` draws its keys from the operating system's randomness.
fn random_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:016x}",
        RandomState::new().hash_one((nanos, std::process::id()))
    )
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pid {} ({})", self.host, self.pid, self.id)
    }
}

/// A lease on one account, as the ledger granted it (or as another holder has it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The account.
    pub account: AccountId,
    /// Its holder.
    pub owner: LeaseOwner,
    /// The fencing number: every new holder of the account gets a higher one.
    pub epoch: u64,
    /// When it expires unless renewed, by the ledger's clock (at the last grant or renewal).
    #[serde(with = "crate::codec::rfc3339")]
    pub expires_at: SystemTime,
}

impl Lease {
    /// [`Lease::expires_at`] as RFC 3339 text, UTC, to the millisecond.
    pub fn expires_text(&self) -> String {
        crate::codec::rfc3339::format(self.expires_at)
    }
}

/// The answer of [`crate::SequenceLedger::acquire_lease`]. A lease held by another owner is
/// a value, not an error: the caller waits (and says so) or gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum LeaseAttempt {
    /// The caller holds the account now, with a new epoch. The account's idempotency index
    /// is read again from the ledger before it is next used (another process may have added
    /// batches meanwhile).
    Acquired(Lease),
    /// Another owner holds a live lease: who, until when.
    Held(Lease),
}

/// One row of [`crate::SequenceLedger::leases`]: a lease and whether it is still live by the
/// ledger's clock when listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseEntry {
    /// The lease (the last holder's, when expired or released).
    #[serde(flatten)]
    pub lease: Lease,
    /// Whether it had not expired when listed.
    pub live: bool,
}
