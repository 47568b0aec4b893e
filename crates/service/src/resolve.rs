//! An operator's decision on a batch that cannot finish by itself, shared by
//! `paybatch resolve` and `POST /v1/accounts/{account}/batches/{seq}/resolve`.
//!
//! - abandon: the gateway confirmed it never processed the batch. For a batch not final
//!   (Reserved included) the drop is inspected first; a batch with any file of its answer there
//!   (COMPLETE or RESPONSE, whole or not) is refused (the gateway answered: collect it, or mark
//!   it unknown).
//! - mark-unknown: the answer cannot be had; the transactions stay `unknown` for ever and the
//!   account's later batches go on.

use std::sync::Arc;

use kvp_format::SequenceNumber;
use sequence_ledger::{
    AccountId, BatchRecord, BatchState, Lease, LeaseOwner, SequenceLedger, SequenceLedgerExt,
    Transition,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the operator decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResolveAction {
    /// The gateway confirmed it never processed the batch: its transactions are released.
    Abandon,
    /// The answer cannot be had: its transactions stay `unknown`, the account moves on.
    MarkUnknown,
}

/// A decision taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resolved {
    /// The account.
    pub account: String,
    /// The batch.
    pub sequence: u32,
    /// Its state before.
    pub from: String,
    /// Its state now.
    pub to: String,
    /// What the drop showed and any warning (e.g. a PROCESS file found), for the operator.
    pub notes: Vec<String>,
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The account name, the number or the reason is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The ledger has no such batch.
    #[error("account {account} has no batch {sequence}")]
    NoBatch {
        /// The account.
        account: String,
        /// The number.
        sequence: u32,
    },
    /// Refused: the gateway answered, or the ledger does not allow the step from the batch's
    /// state. `notes` is what the drop showed.
    #[error("{message}")]
    Refused {
        /// Why.
        message: String,
        /// What the drop showed.
        notes: Vec<String>,
    },
    /// The drop had to be inspected and that failed.
    #[error("{0}")]
    Inspect(String),
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(sequence_ledger::Error),
}

/// Takes the decision on `account`'s batch `sequence`, with `reason` kept in the ledger.
///
/// # Errors
/// See [`ResolveError`].
pub async fn resolve(
    settings: &orchestrator::Settings,
    ledger: Arc<dyn SequenceLedger>,
    account: &str,
    sequence: u32,
    action: ResolveAction,
    reason: &str,
) -> Result<Resolved, ResolveError> {
    let id = AccountId::new(account).map_err(|e| ResolveError::Invalid(e.to_string()))?;
    let seq = SequenceNumber::new(sequence).map_err(|e| ResolveError::Invalid(e.to_string()))?;
    if reason.trim().is_empty() {
        return Err(ResolveError::Invalid("the reason must say why".into()));
    }
    // The decision is a write like any other: under the account's lease (refused, naming
    // the holder, while another process drives the account on a shared ledger). The lease is
    // taken before the batch is read and the drop inspected, so no other process can move the
    // batch (to Triggered, say) between what this decision saw and what it writes.
    let lease = ledger
        .lease_now(&id, &LeaseOwner::this_process(), settings.ledger.lease_ttl)
        .await
        .map_err(|e| ResolveError::Refused {
            message: e.to_string(),
            notes: Vec::new(),
        })?;
    let decided = decide_and_write(settings, &*ledger, &lease, &id, seq, action, reason).await;
    if let Err(e) = ledger.release_lease(&lease).await {
        tracing::warn!(account, error = %e, "the account's lease was not released; it expires on its own");
    }
    let (before, after, notes) = decided?;
    Ok(Resolved {
        account: account.to_owned(),
        sequence,
        from: before.state.name().to_owned(),
        to: after.state.name().to_owned(),
        notes,
    })
}

/// Under `lease`: reads the batch, looks in the drop when abandoning a batch that may have
/// been triggered, and writes the decision. Returns the batch before and after, and the notes.
async fn decide_and_write(
    settings: &orchestrator::Settings,
    ledger: &dyn SequenceLedger,
    lease: &Lease,
    id: &AccountId,
    seq: SequenceNumber,
    action: ResolveAction,
    reason: &str,
) -> Result<(BatchRecord, BatchRecord, Vec<String>), ResolveError> {
    let before = ledger
        .batch(id, seq)
        .await
        .map_err(ResolveError::Ledger)?
        .ok_or_else(|| ResolveError::NoBatch {
            account: id.as_str().to_owned(),
            sequence: seq.get(),
        })?;
    let mut notes = Vec::new();
    // Whether the drop showed the batch never triggered (its request may then be withdrawn).
    let mut untriggered = false;
    let transition = match action {
        ResolveAction::Abandon => {
            // Reserved too: the ledger says never triggered, but a takeover that found its
            // PROCESS or answer in the drop sends the operator here.
            if !before.state.is_final() {
                untriggered = look_in_the_drop(settings, &before, &mut notes).await?;
            }
            Transition::Abandoned {
                reason: reason.to_owned(),
            }
        }
        ResolveAction::MarkUnknown => Transition::MarkedUnknown {
            reason: reason.to_owned(),
        },
    };
    match ledger
        .resolve(lease, seq, transition, reason.to_owned())
        .await
    {
        Ok(after) => {
            // Final now: no run resumes it to clean up after its upload.
            if after.state.is_final()
                && matches!(
                    before.state,
                    BatchState::Reserved | BatchState::RequestUploaded
                )
            {
                // Only a request the gateway was never asked to process: with its PROCESS
                // there it may be processing it, and the request is what was sent.
                let withdraw = after.state == BatchState::Abandoned && untriggered;
                clean_up_upload(settings, &before, withdraw, &mut notes).await;
            }
            Ok((before, after, notes))
        }
        Err(e) => Err(ResolveError::Refused {
            message: e.to_string(),
            notes,
        }),
    }
}

/// The gateway protocol of `account`, connected; errors as text for the operator's notes.
async fn protocol_of(
    settings: &orchestrator::Settings,
    account: &str,
) -> Result<Arc<dyn gateway_protocol::GatewayProtocol>, String> {
    settings
        .account(account)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// After abandoning (or marking unknown) a batch that was being uploaded: removes what an
/// upload killed midway left in the drop (its temporary files hold the batch's card data, or
/// the batch key; no run resumes a final batch to do it), and with `withdraw` (abandoned: never
/// triggered, nothing will send it) its request when it is this ledger's. Best effort: the
/// outcome is a note.
async fn clean_up_upload(
    settings: &orchestrator::Settings,
    batch: &sequence_ledger::BatchRecord,
    withdraw: bool,
    notes: &mut Vec<String>,
) {
    let account = batch.account.as_str();
    let seq = batch.sequence;
    let protocol = match protocol_of(settings, account).await {
        Ok(p) => p,
        Err(e) => {
            notes.push(format!(
                "warning: account {account} batch {seq}: could not look in the drop for what its upload left there: {e}"
            ));
            return;
        }
    };
    match protocol.remove_unpublished(seq).await {
        Ok(0) => {}
        Ok(n) => notes.push(format!(
            "account {account} batch {seq}: removed {n} temporary file(s) an interrupted upload left in the drop"
        )),
        Err(e) => notes.push(format!(
            "warning: account {account} batch {seq}: could not look for temporary files an interrupted upload may have left in the drop: {e}"
        )),
    }
    if !withdraw {
        return;
    }
    match orchestrator::withdraw_own_request(&*protocol, batch).await {
        Ok(orchestrator::Withdrawn::Removed) => notes.push(format!(
            "account {account} batch {seq}: removed its request from the drop (never triggered; nothing will send it)"
        )),
        Ok(orchestrator::Withdrawn::NotOurs) => notes.push(format!(
            "warning: account {account} batch {seq}: the request under its number is not this ledger's; left in the drop"
        )),
        Ok(orchestrator::Withdrawn::Nothing) => {}
        Err(e) => notes.push(format!(
            "warning: account {account} batch {seq}: could not remove its request from the drop: {e}"
        )),
    }
}

/// Before abandoning a batch that is not final: notes what the gateway side holds of it, and
/// refuses when any part of the gateway's answer is there (its transactions may have been
/// processed; abandoning would release them for a second send).
///
/// Returns whether the drop shows the batch never triggered and never answered (then its
/// request may be withdrawn once it is abandoned).
async fn look_in_the_drop(
    settings: &orchestrator::Settings,
    batch: &sequence_ledger::BatchRecord,
    notes: &mut Vec<String>,
) -> Result<bool, ResolveError> {
    let account = batch.account.as_str();
    let seq = batch.sequence;
    let inspected = async {
        let protocol = protocol_of(settings, account).await?;
        // The gateway is asked about the batch under the name it was reserved under: with
        // the account's reference settings changed since, it would be asked about another.
        if let Some(stored) = &batch.external_reference {
            let now = protocol
                .external_reference(seq)
                .map_err(|e| e.to_string())?;
            if now.as_deref() != Some(stored.as_str()) {
                return Err(format!(
                    "it was reserved as {stored}, and the account's settings now name it {}; restore them first",
                    now.as_deref().unwrap_or("nothing")
                ));
            }
        }
        protocol.inspect(seq).await.map_err(|e| e.to_string())
    }
    .await;
    // Refused when the look fails, Reserved included: a takeover sends the operator here
    // exactly when the drop contradicted the ledger's "never triggered". A batch that never
    // left because its drop was down is sent by the next run once the drop is back, or
    // abandoned then.
    let inspection = inspected.map_err(|e| {
        ResolveError::Inspect(format!(
            "batch {seq} of account {account} is {}: the gateway's side must be inspected before abandoning it, and that failed: {e}",
            batch.state.name()
        ))
    })?;
    let cannot_tell = inspection.triggered.is_none() || inspection.answered.is_none();
    if !inspection.found.is_empty() {
        notes.push(format!(
            "account {account} batch {seq}: on the gateway's side: {}",
            inspection.found.join(", ")
        ));
    } else if !cannot_tell {
        notes.push(format!(
            "account {account} batch {seq}: nothing of it is in the drop"
        ));
    }
    if cannot_tell {
        notes.push(format!(
            "account {account} batch {seq}: what the gateway's side shows cannot tell whether it took the batch up; abandoning releases its transactions to be sent again — right only if the gateway confirmed it never processed them (otherwise use --mark-unknown)"
        ));
    }
    if inspection.answered == Some(true) {
        return Err(ResolveError::Refused {
            message: format!(
                "not abandoned: the gateway answered batch {seq} (its answer, or a part of it, is there: {}), so its transactions may have been processed. Run `paybatch collect` to record the answer, or `paybatch resolve --account {account} --seq {seq} --mark-unknown` if it cannot be read",
                inspection.found.join(", ")
            ),
            notes: std::mem::take(notes),
        });
    }
    if inspection.triggered == Some(true) {
        notes.push(format!(
            "warning: the gateway was asked to process batch {seq} ({}). Abandoning releases its transactions to be sent again — right only if the gateway confirmed it never processed them (otherwise use --mark-unknown)",
            inspection.found.join(", ")
        ));
    }
    Ok(inspection.triggered == Some(false) && inspection.answered == Some(false))
}
