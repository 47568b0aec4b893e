//! Whether the request a gateway holds under a batch's number is the one this ledger bound to
//! it, without the input it was built from: for a takeover about to trigger a batch another
//! process uploaded, and for withdrawing the request of a batch that will never be triggered.

use gateway_protocol::{GatewayProtocol, Uploaded, UploadedRequest};
use sequence_ledger::BatchRecord;
use sha2::{Digest, Sha256};

/// What the gateway holds under a batch's number, compared with its ledger record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCheck {
    /// The transactions the ledger bound to the number, in order.
    Ours,
    /// Something else: another client's file, or lines numbered for other places.
    NotOurs,
    /// Nothing is there.
    Absent,
    /// The protocol cannot show it (APS).
    NotShown,
}

/// Compares the request the gateway holds under `rec`'s number with the record: the line count,
/// and each line's transaction fields digested as planning digests an input line
/// ([`sequence_ledger::content_digest`]) against the batch digest; for records reserved before
/// the digest covered only the transactions, the bytes' SHA-256.
///
/// # Errors
/// The protocol's storage or transport failures.
pub async fn check_request(
    protocol: &dyn GatewayProtocol,
    rec: &BatchRecord,
) -> gateway_protocol::Result<RequestCheck> {
    match protocol.uploaded_request(rec.sequence).await {
        Ok(Uploaded::Found(found)) if is_ours(&found, rec) => Ok(RequestCheck::Ours),
        Ok(Uploaded::Found(_)) | Err(gateway_protocol::Error::ForeignRequest { .. }) => {
            Ok(RequestCheck::NotOurs)
        }
        Ok(Uploaded::Absent) => Ok(RequestCheck::Absent),
        Ok(Uploaded::NotShown) => Ok(RequestCheck::NotShown),
        Err(e) => Err(e),
    }
}

fn is_ours(found: &UploadedRequest, rec: &BatchRecord) -> bool {
    let digests: Vec<[u8; 32]> = found
        .lines
        .iter()
        .map(|line| {
            sequence_ledger::content_digest(line.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        })
        .collect();
    matches_record(rec, digests.iter(), &found.bytes)
}

/// Whether lines with these content digests, as `request` bytes, are the batch `rec` records:
/// as many lines, and the batch digest of their digests; for records reserved before the
/// digest covered only the transactions, the SHA-256 of the request's bytes.
pub(crate) fn matches_record<'a>(
    rec: &BatchRecord,
    digests: impl ExactSizeIterator<Item = &'a [u8; 32]>,
    request: &[u8],
) -> bool {
    digests.len() as u64 == rec.line_count
        && (sequence_ledger::batch_digest(digests) == rec.content_sha256
            || <[u8; 32]>::from(Sha256::digest(request)) == rec.content_sha256)
}

/// What [`withdraw_own_request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// The request was this ledger's and is gone.
    Removed,
    /// The request there is not this ledger's: left in place.
    NotOurs,
    /// Nothing to remove: nothing there, or a protocol that keeps uploads on its side.
    Nothing,
}

/// Removes the request of a batch that will never be triggered (`rec` released at a
/// takeover, or abandoned before its trigger) from the gateway's side, when it is this
/// ledger's: its lines hold card data, and nothing will send them. A request that is not
/// this ledger's is never touched.
///
/// # Errors
/// The protocol's storage or transport failures.
pub async fn withdraw_own_request(
    protocol: &dyn GatewayProtocol,
    rec: &BatchRecord,
) -> gateway_protocol::Result<Withdrawn> {
    match check_request(protocol, rec).await? {
        RequestCheck::Ours => Ok(if protocol.withdraw_request(rec.sequence).await? {
            Withdrawn::Removed
        } else {
            Withdrawn::Nothing
        }),
        RequestCheck::NotOurs => Ok(Withdrawn::NotOurs),
        RequestCheck::Absent | RequestCheck::NotShown => Ok(Withdrawn::Nothing),
    }
}
