//! Per account: the last sequence number, batches by state, the Stuck and in-flight ones.
//! One function for `paybatch status --json` and `GET /v1/accounts` (the same JSON).

use std::collections::BTreeMap;

use sequence_ledger::{AccountId, BatchState, SequenceLedger};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One account's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountStatus {
    /// The account.
    pub account: String,
    /// Its protocol (`sola`, `aps`), or null for an account only in the ledger.
    pub protocol: Option<String>,
    /// The highest number reserved.
    pub last_sequence: Option<u32>,
    /// Batches by state name.
    pub batches: BTreeMap<String, u64>,
    /// Stuck batches (no COMPLETE in time).
    pub stuck: Vec<u32>,
    /// Batches not final and not Stuck.
    pub in_flight: Vec<u32>,
    /// The account's lease on a shared ledger while a process holds it (null when none does,
    /// and always on the embedded ledger, whose one process needs none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseStatus>,
}

/// Who drives an account now (a live lease of a shared ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseStatus {
    /// The holder: host, pid and a random id of the process.
    pub holder: String,
    /// Until when, unless renewed (RFC 3339, by the database's clock).
    pub until: String,
    /// The lease's epoch (one more at every takeover).
    pub epoch: u64,
}

/// Every account: the configured ones and those only in the ledger, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// By name.
    pub accounts: Vec<AccountStatus>,
}

impl Status {
    /// Whether some batch is Stuck.
    pub fn any_stuck(&self) -> bool {
        self.accounts.iter().any(|a| !a.stuck.is_empty())
    }
}

/// The status of every account of `settings` and of `ledger` (none yet: no batches).
///
/// # Errors
/// Ledger read errors; an account name in the ledger that is not a valid account id.
pub async fn status(
    settings: &orchestrator::Settings,
    ledger: Option<&dyn SequenceLedger>,
) -> Result<Status, sequence_ledger::Error> {
    let mut names: Vec<String> = settings.accounts().keys().cloned().collect();
    let mut leases = BTreeMap::new();
    if let Some(l) = ledger {
        for entry in l.leases().await? {
            if entry.live {
                leases.insert(
                    entry.lease.account.to_string(),
                    LeaseStatus {
                        holder: entry.lease.owner.to_string(),
                        until: entry.lease.expires_text(),
                        epoch: entry.lease.epoch,
                    },
                );
            }
        }
        for a in l.accounts().await? {
            if !names.contains(&a.to_string()) {
                names.push(a.to_string());
            }
        }
    }
    names.sort();
    let mut accounts = Vec::with_capacity(names.len());
    for name in names {
        let mut entry = AccountStatus {
            account: name.clone(),
            protocol: settings
                .accounts()
                .get(&name)
                .map(|a| a.protocol().to_owned()),
            last_sequence: None,
            batches: BTreeMap::new(),
            stuck: Vec::new(),
            in_flight: Vec::new(),
            lease: leases.remove(&name),
        };
        if let Some(l) = ledger {
            let account = AccountId::new(name.as_str())?;
            entry.last_sequence = l.account_info(&account).await?.high_water.map(|s| s.get());
            for b in l.batches(&account).await? {
                *entry.batches.entry(b.state.name().to_owned()).or_default() += 1;
                match b.state {
                    BatchState::Stuck => entry.stuck.push(b.sequence.get()),
                    s if !s.is_final() => entry.in_flight.push(b.sequence.get()),
                    _ => {}
                }
            }
        }
        accounts.push(entry);
    }
    Ok(Status { accounts })
}
