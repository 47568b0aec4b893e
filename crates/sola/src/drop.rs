//! The Sola (Cardknox) file-drop protocol over any storage backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use kvp_format::{FileKind, FileName, Secret, SequenceNumber};
use storage_backends::{Backend, ErrorKind, PutIfAbsent};

use gateway_protocol::{
    AnswerFile, BatchFile, BatchLine, BatchRef, Error, GatewayProtocol, GatewayVerdict, Inspection,
    LineResult, Masking, PollResult, RejectedAnswer, Result, Uploaded, UploadedRequest,
};

use crate::settings::GatewaySettings;

/// The Sola file drop of one account: `Request/REQUEST_X.KVP`, then `Request/PROCESS_X.KVP`,
/// then the gateway's `Response/RESPONSE_X.KVP` and `Response/COMPLETE_X.KVP`.
#[derive(Debug)]
pub struct SolaFileDrop {
    account: String,
    backend: Arc<dyn Backend>,
    batch_key: Secret<String>,
    merchant_key: Secret<String>,
    gateway: GatewaySettings,
    /// The last COMPLETE bytes without a final newline seen per batch (see `verdict`).
    unterminated: Mutex<HashMap<SequenceNumber, Bytes>>,
}

impl SolaFileDrop {
    /// The protocol for `account` on `backend` with its credentials.
    pub fn new(
        account: impl Into<String>,
        backend: Arc<dyn Backend>,
        batch_key: Secret<String>,
        merchant_key: Secret<String>,
        gateway: &GatewaySettings,
    ) -> Self {
        Self {
            account: account.into(),
            backend,
            batch_key,
            merchant_key,
            gateway: gateway.clone(),
            unterminated: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn path(kind: FileKind, sequence: SequenceNumber) -> String {
        FileName::new(kind, sequence).path()
    }

    /// A REQUEST recorded as uploaded is no longer in the drop: the gateway took it after a
    /// PROCESS written before a stop (a PROCESS written again is ignored: it has seen the
    /// number), which a PROCESS or an answer there shows. With neither there, someone took
    /// it back: a PROCESS now would trigger nothing of ours (or whatever lands there next).
    async fn request_gone(&self, sequence: SequenceNumber) -> Result<()> {
        let inspection = self.inspect(sequence).await?;
        if inspection.triggered == Some(true) || inspection.answered == Some(true) {
            return Ok(());
        }
        Err(self.protocol(
            sequence,
            "its REQUEST, recorded as uploaded, is no longer in the drop, and neither its PROCESS nor an answer is: check the drop, then `paybatch resolve`",
        ))
    }

    fn storage(&self, path: &str, source: storage_backends::Error) -> Error {
        Error::Storage {
            account: self.account.clone(),
            path: path.to_owned(),
            transient: source.is_transient(),
            source: Box::new(source),
        }
    }

    fn protocol(&self, sequence: SequenceNumber, message: impl Into<String>) -> Error {
        Error::Protocol {
            account: self.account.clone(),
            sequence,
            message: message.into(),
        }
    }

    /// Parses a RESPONSE and joins it on `xIndex` (any line order), dropping sensitive
    /// fields and the echoed `xIndex`/`xSequenceNumber`.
    fn parse_response(
        &self,
        sequence: SequenceNumber,
        bytes: &[u8],
        line_count: u64,
        coverage: Coverage,
    ) -> Result<Vec<LineResult>> {
        let count = usize::try_from(line_count).unwrap_or(usize::MAX);
        let mut slots: Vec<Option<LineResult>> = vec![None; count];
        let mut extra = Vec::new();
        let seq_text = sequence.to_string();
        // One index of the pieces, reused line after line (the fast scanner of kvp-format).
        let mut view = kvp_format::ViewBuf::new();
        for (n, line) in lines_of(bytes).enumerate() {
            let at = n + 1;
            let mut index = None;
            let mut seq_seen = false;
            let pairs = view.view(line).map_err(|e| {
                self.protocol(sequence, format!("RESPONSE line {at}: {}", e.message()))
            })?;
            let mut fields = kvp_format::Record::with_capacity(pairs.len(), line.len());
            for (k, v) in pairs.iter() {
                if k == "xIndex" {
                    index = v.parse::<u64>().ok();
                } else if k == "xSequenceNumber" {
                    if v != seq_text.as_str() {
                        return Err(self.protocol(
                            sequence,
                            format!(
                                "RESPONSE line {at}: xSequenceNumber {}",
                                kvp_format::mask_digit_runs(&v)
                            ),
                        ));
                    }
                    seq_seen = true;
                } else if !kvp_format::is_sensitive(&k) {
                    fields.push_str(&k, &v);
                }
            }
            // PROTOCOL.md §2 item 2: every line carries xSequenceNumber = X; a line without
            // it cannot be shown to belong to this batch.
            if !seq_seen {
                return Err(
                    self.protocol(sequence, format!("RESPONSE line {at}: no xSequenceNumber"))
                );
            }
            let index = index.ok_or_else(|| {
                self.protocol(sequence, format!("RESPONSE line {at}: no valid xIndex"))
            })?;
            match usize::try_from(index).ok().and_then(|i| slots.get_mut(i)) {
                Some(slot @ None) => *slot = Some(LineResult { index, fields }),
                _ => extra.push(index),
            }
        }
        let missing: Vec<usize> = match coverage {
            Coverage::Every => slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_none())
                .map(|(i, _)| i)
                .collect(),
            Coverage::Some => Vec::new(),
        };
        if !missing.is_empty() || !extra.is_empty() {
            return Err(self.protocol(
                sequence,
                format!(
                    "RESPONSE does not match the REQUEST: missing xIndex {:?}, extra or repeated xIndex {:?}",
                    &missing[..missing.len().min(10)],
                    &extra[..extra.len().min(10)]
                ),
            ));
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// `put_if_absent`, or where the backend cannot enforce it, a look before a put (the
    /// drop is one client's, PROTOCOL.md decision 4c, so nobody races us for our own name).
    async fn put_if_absent(&self, path: &str, data: Bytes) -> storage_backends::Result<()> {
        if self.backend.capabilities().put_if_absent == PutIfAbsent::Atomic {
            return self.backend.put_if_absent(path, data).await;
        }
        match self.backend.head(path).await {
            Ok(_) => Err(storage_backends::Error::new(
                ErrorKind::AlreadyExists,
                self.backend.location().display_path(path),
                "already exists",
                None,
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => self.backend.put(path, data).await,
            Err(e) => Err(e),
        }
    }

    /// The verdict in a COMPLETE file's bytes, or `None` when they are not one yet
    /// (PROTOCOL.md decision 4a): a COMPLETE counts only when it parses as one whole line
    /// (`xResult`, `xStatus`, `xSequenceNumber`) and its `xSequenceNumber` is this batch's.
    /// A gateway writing the file in place (over SFTP or into a shared folder) shows us empty
    /// and torn prefixes first; a prefix can parse (`xStatus=Succ`), so bytes without a final
    /// newline count only once the same bytes were read on the previous poll too.
    fn verdict(&self, sequence: SequenceNumber, bytes: &Bytes) -> Option<GatewayVerdict> {
        let complete = match kvp_format::CompleteFile::parse(bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(account = %self.account, %sequence, error = %e, "COMPLETE is not whole yet; polling again");
                return None;
            }
        };
        if complete.sequence != sequence {
            tracing::warn!(account = %self.account, %sequence, found = %complete.sequence, "COMPLETE carries another xSequenceNumber: not this batch's answer; polling again");
            return None;
        }
        if !bytes.ends_with(b"\n") {
            let mut seen = self
                .unterminated
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.get(&sequence) != Some(bytes) {
                seen.insert(sequence, bytes.clone());
                tracing::debug!(account = %self.account, %sequence, "COMPLETE has no final newline yet; believing it once it stays the same");
                return None;
            }
            seen.remove(&sequence);
        }
        Some(GatewayVerdict {
            success: complete.is_success(),
            status: complete.status.clone(),
            error: complete.error.clone().filter(|e| !e.is_empty()),
            processed_count: complete.processed_count,
            fields: complete
                .to_record()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }

    /// The PROCESS file's bytes.
    pub fn encode_process(&self, sequence: SequenceNumber, line_count: u64) -> Bytes {
        process_bytes(self.batch_key.expose(), sequence, line_count)
    }
}

/// The REQUEST file's bytes: every line's envelope (`xIndex`, `xSequenceNumber`, `merchant_key`
/// as `xKey`, the `[gateway]` fields), then its transaction fields.
fn request_bytes(
    gateway: &GatewaySettings,
    sequence: SequenceNumber,
    lines: &[BatchLine<'_>],
    merchant_key: &str,
) -> Bytes {
    let mut out = Vec::with_capacity(lines.len() * 256);
    let seq = sequence.to_string();
    for line in lines {
        kvp_format::encode_pair("xIndex", &line.index.to_string(), &mut out);
        for (k, v) in [
            ("xSequenceNumber", seq.as_str()),
            ("xKey", merchant_key),
            ("xVersion", gateway.x_version.as_str()),
            ("xSoftwareName", gateway.software_name.as_str()),
            ("xSoftwareVersion", gateway.software_version()),
        ] {
            out.push(b'&');
            kvp_format::encode_pair(k, v, &mut out);
        }
        if !line.fields.is_empty() {
            out.push(b'&');
            out.extend_from_slice(line.fields.encoded());
        }
        out.push(b'\n');
    }
    Bytes::from(out)
}

fn process_bytes(batch_key: &str, sequence: SequenceNumber, line_count: u64) -> Bytes {
    kvp_format::ProcessFile::new(batch_key, line_count, sequence)
        .to_bytes()
        .into()
}

/// The files batch `sequence` of `lines` would put in the drop, `REQUEST_X` and `PROCESS_X`:
/// with [`Masking::Masked`] the lines' sensitive fields are masked and both `xKey`s are
/// `[REDACTED]` (`keys` is not read); unmasked, `keys` = (merchant key, batch key).
pub(crate) fn batch_files(
    gateway: &GatewaySettings,
    keys: Option<(&str, &str)>,
    sequence: SequenceNumber,
    lines: &[BatchLine<'_>],
    masking: Masking,
) -> Vec<BatchFile> {
    let (merchant_key, batch_key) = match (masking, keys) {
        (Masking::Unmasked, Some(keys)) => keys,
        _ => (kvp_format::REDACTED, kvp_format::REDACTED),
    };
    let request = masking.apply(lines, |lines| {
        request_bytes(gateway, sequence, lines, merchant_key)
    });
    vec![
        BatchFile {
            path: SolaFileDrop::path(FileKind::Request, sequence),
            bytes: request,
        },
        BatchFile {
            path: SolaFileDrop::path(FileKind::Process, sequence),
            bytes: process_bytes(batch_key, sequence, lines.len() as u64),
        },
    ]
}

/// Which lines a RESPONSE must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// Exactly one per submitted line (a processed batch).
    Every,
    /// Any subset of the submitted lines (a rejected batch); still no extra or repeated ones.
    Some,
}

/// The fields this client adds to every REQUEST line around the caller's transaction.
const ENVELOPE: [&str; 6] = [
    "xIndex",
    "xSequenceNumber",
    "xKey",
    "xVersion",
    "xSoftwareName",
    "xSoftwareVersion",
];

/// Whether two REQUEST files of batch `sequence` carry the same transactions: the same bytes,
/// or the same lines apart from the key and what a software version changes (PROTOCOL.md
/// decision 4d), each line in its place (`xIndex`, `xSequenceNumber`). Compared in full, card
/// and account numbers included: both files are at hand, and a masked comparison would take a
/// REQUEST whose account number differs (a corrected input) for the same transactions.
fn same_transactions(a: &[u8], b: &[u8], sequence: SequenceNumber) -> bool {
    a == b
        || transaction_lines(a, sequence)
            .is_some_and(|lines| transaction_lines(b, sequence) == Some(lines))
}

/// Each line's transaction fields (the [`ENVELOPE`] removed), in order, of a REQUEST file of
/// batch `sequence`; `None` unless every line decodes and is in its place: exactly one
/// `xIndex`, equal to the line's position, and one `xSequenceNumber`, equal to `sequence` (a
/// line numbered otherwise would be joined to another line's result, or belong to another
/// batch).
fn transaction_lines(bytes: &[u8], sequence: SequenceNumber) -> Option<Vec<Vec<(String, String)>>> {
    let number = sequence.to_string();
    let mut lines = Vec::new();
    for (position, line) in lines_of(bytes).enumerate() {
        let pairs = kvp_format::decode_line(line).ok()?;
        let (mut index, mut numbered) = (0, 0);
        let mut fields = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match k.as_ref() {
                "xIndex" if v.parse::<usize>().ok() == Some(position) => index += 1,
                "xSequenceNumber" if v == number.as_str() => numbered += 1,
                "xIndex" | "xSequenceNumber" => return None,
                name if ENVELOPE.contains(&name) => {}
                _ => fields.push((k.into_owned(), v.into_owned())),
            }
        }
        if (index, numbered) != (1, 1) {
            return None;
        }
        lines.push(fields);
    }
    Some(lines)
}

fn lines_of(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty() || !body.is_empty())
}

#[async_trait]
impl GatewayProtocol for SolaFileDrop {
    fn account(&self) -> &str {
        &self.account
    }

    fn encode_request(&self, sequence: SequenceNumber, lines: &[BatchLine<'_>]) -> Result<Bytes> {
        Ok(request_bytes(
            &self.gateway,
            sequence,
            lines,
            self.merchant_key.expose(),
        ))
    }

    async fn upload(&self, sequence: SequenceNumber, payload: Bytes) -> Result<Option<String>> {
        let path = Self::path(FileKind::Request, sequence);
        match self.put_if_absent(&path, payload.clone()).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let present = self
                    .backend
                    .get(&path)
                    .await
                    .map_err(|e| self.storage(&path, e))?;
                if present == payload {
                    tracing::debug!(account = %self.account, %sequence, "REQUEST already in the drop with the same bytes");
                    return Ok(None);
                }
                // Not the same bytes. It is ours only if it carries the same transactions (an
                // upload before a crash, with a key or software version that changed since:
                // PROTOCOL.md decision 4d); anything else was not written by this ledger and
                // is never overwritten or triggered (decision 4b).
                if !same_transactions(&present, &payload, sequence) {
                    return Err(Error::ForeignRequest {
                        account: self.account.clone(),
                        sequence,
                    });
                }
                let process = Self::path(FileKind::Process, sequence);
                match self.backend.head(&process).await {
                    Ok(_) => {
                        // Already triggered with those bytes: the gateway takes that file;
                        // replacing it now could not change what it processes.
                        tracing::info!(account = %self.account, %sequence, "REQUEST in the drop carries the same transactions with an older key or version and is already triggered; keeping it");
                        return Ok(None);
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(self.storage(&process, e)),
                }
                tracing::info!(account = %self.account, %sequence, "replacing our untriggered REQUEST (same transactions, new key or version)");
                self.backend
                    .put(&path, payload.clone())
                    .await
                    .map_err(|e| self.storage(&path, e))?;
            }
            Err(e) => return Err(self.storage(&path, e)),
        }
        let back = self
            .backend
            .get(&path)
            .await
            .map_err(|e| self.storage(&path, e))?;
        // Compared byte for byte: as strong as any digest, and a memcmp instead of two
        // SHA-256 passes over the file (2 % of a million-transaction submit's CPU).
        if back != payload {
            return Err(self.protocol(
                sequence,
                format!(
                    "REQUEST read back differs from what was written ({} bytes, expected {})",
                    back.len(),
                    payload.len()
                ),
            ));
        }
        Ok(None)
    }

    async fn verify_uploaded(&self, sequence: SequenceNumber, payload: &Bytes) -> Result<()> {
        let path = Self::path(FileKind::Request, sequence);
        let present = match self.backend.get(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return self.request_gone(sequence).await,
            Err(e) => return Err(self.storage(&path, e)),
        };
        if same_transactions(&present, payload, sequence) {
            Ok(())
        } else {
            Err(Error::ForeignRequest {
                account: self.account.clone(),
                sequence,
            })
        }
    }

    async fn uploaded_request(&self, sequence: SequenceNumber) -> Result<Uploaded> {
        let path = Self::path(FileKind::Request, sequence);
        let bytes = match self.backend.get(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Uploaded::Absent),
            Err(e) => return Err(self.storage(&path, e)),
        };
        // Not a REQUEST paybatch wrote for this number: some line does not decode or is
        // numbered for another place.
        let Some(lines) = transaction_lines(&bytes, sequence) else {
            return Err(Error::ForeignRequest {
                account: self.account.clone(),
                sequence,
            });
        };
        Ok(Uploaded::Found(UploadedRequest { bytes, lines }))
    }

    async fn withdraw_request(&self, sequence: SequenceNumber) -> Result<bool> {
        let path = Self::path(FileKind::Request, sequence);
        self.backend
            .delete(&path)
            .await
            .map_err(|e| self.storage(&path, e))?;
        Ok(true)
    }

    async fn trigger(&self, batch: &BatchRef, line_count: u64) -> Result<()> {
        let sequence = batch.sequence;
        let path = Self::path(FileKind::Process, sequence);
        self.backend
            .put(&path, self.encode_process(sequence, line_count))
            .await
            .map_err(|e| self.storage(&path, e))
    }

    /// The temporary files of interrupted publishes of `REQUEST_X` and `PROCESS_X`.
    async fn remove_unpublished(&self, sequence: SequenceNumber) -> Result<usize> {
        let mut removed = 0;
        for kind in [FileKind::Request, FileKind::Process] {
            let path = Self::path(kind, sequence);
            removed += self
                .backend
                .remove_unpublished(&path)
                .await
                .map_err(|e| self.storage(&path, e))?;
        }
        Ok(removed)
    }

    async fn poll(&self, batch: &BatchRef) -> Result<PollResult> {
        let sequence = batch.sequence;
        let path = Self::path(FileKind::Complete, sequence);
        let bytes = match self.backend.get(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(PollResult::Pending),
            Err(e) => return Err(self.storage(&path, e)),
        };
        match self.verdict(sequence, &bytes) {
            Some(v) => Ok(PollResult::Done(v)),
            None => Ok(PollResult::Pending),
        }
    }

    async fn fetch_results(&self, batch: &BatchRef, line_count: u64) -> Result<Vec<LineResult>> {
        let sequence = batch.sequence;
        let path = Self::path(FileKind::Response, sequence);
        let bytes = self
            .backend
            .get(&path)
            .await
            .map_err(|e| self.storage(&path, e))?;
        self.parse_response(sequence, &bytes, line_count, Coverage::Every)
    }

    async fn fetch_rejected_results(
        &self,
        batch: &BatchRef,
        line_count: u64,
    ) -> Result<RejectedAnswer> {
        let sequence = batch.sequence;
        let path = Self::path(FileKind::Response, sequence);
        let bytes = match self.backend.get(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::debug!(account = %self.account, %sequence, "rejected batch has no RESPONSE");
                return Ok(RejectedAnswer::absent());
            }
            Err(e) => return Err(self.storage(&path, e)),
        };
        match self.parse_response(sequence, &bytes, line_count, Coverage::Some) {
            Ok(lines) => Ok(RejectedAnswer {
                answer: AnswerFile::Read,
                lines,
            }),
            Err(e) => {
                tracing::warn!(account = %self.account, %sequence, error = %e, "RESPONSE of a rejected batch is unreadable; its lines without a result are unknown unless COMPLETE says nothing was processed");
                Ok(RejectedAnswer {
                    answer: AnswerFile::Unreadable,
                    lines: Vec::new(),
                })
            }
        }
    }

    async fn foreign_answers(&self, from: SequenceNumber) -> Result<Option<SequenceNumber>> {
        let folder = FileKind::Complete.folder();
        let listed = self
            .backend
            .list(folder)
            .await
            .map_err(|e| self.storage(folder, e))?;
        Ok(listed
            .iter()
            .filter_map(|m| FileName::parse(m.name()).ok())
            .filter(|n| matches!(n.kind, FileKind::Complete | FileKind::Response))
            .map(|n| n.sequence)
            .filter(|&n| n >= from)
            .max())
    }

    async fn inspect(&self, sequence: SequenceNumber) -> Result<Inspection> {
        let mut found = Vec::new();
        for kind in [
            FileKind::Request,
            FileKind::Process,
            FileKind::Response,
            FileKind::Complete,
        ] {
            let path = Self::path(kind, sequence);
            match self.backend.head(&path).await {
                Ok(_) => found.push(path),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.storage(&path, e)),
            }
        }
        let triggered = found.contains(&Self::path(FileKind::Process, sequence));
        // Any file of the answer counts, whole or not: a COMPLETE without its final newline
        // (believed only once seen twice, decision 4a) or a RESPONSE alone still says the
        // gateway took the batch up.
        let answered = [FileKind::Response, FileKind::Complete]
            .iter()
            .any(|kind| found.contains(&Self::path(*kind, sequence)));
        Ok(Inspection {
            uploaded: Some(found.contains(&Self::path(FileKind::Request, sequence))),
            triggered: Some(triggered),
            answered: Some(answered),
            found,
        })
    }

    async fn cleanup(&self, batch: &BatchRef) -> Result<()> {
        let sequence = batch.sequence;
        for kind in [FileKind::Response, FileKind::Complete] {
            let path = Self::path(kind, sequence);
            self.backend
                .delete(&path)
                .await
                .map_err(|e| self.storage(&path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_protocol::LineFields;

    async fn drop_and_sola() -> (
        storage_backends::test_env::TestTarget,
        Arc<dyn Backend>,
        SolaFileDrop,
    ) {
        let target = storage_backends::test_env::local().unwrap();
        let backend = storage_backends::open(&target.location, &target.options)
            .await
            .unwrap();
        let sola = SolaFileDrop::new(
            "acme",
            backend.clone(),
            Secret::new("bk".into()),
            Secret::new("mk".into()),
            &GatewaySettings::default(),
        );
        (target, backend, sola)
    }

    fn seq(n: u32) -> SequenceNumber {
        SequenceNumber::new(n).unwrap()
    }

    fn batch(n: u32) -> BatchRef {
        BatchRef::new(seq(n))
    }

    #[tokio::test]
    async fn request_encoding_is_canonical_and_deterministic() {
        let (_t, _b, sola) = drop_and_sola().await;
        let mut encoded = Vec::new();
        LineFields::encode(
            &[("xCommand", "cc:sale"), ("xName", "Zoë & Co+1")],
            &mut encoded,
        );
        let fields = LineFields::from_canonical(&encoded);
        let lines = [
            BatchLine { index: 0, fields },
            BatchLine { index: 1, fields },
        ];
        let a = sola.encode_request(seq(7), &lines).unwrap();
        assert_eq!(a, sola.encode_request(seq(7), &lines).unwrap());
        let text = std::str::from_utf8(&a).unwrap();
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("xIndex=0&xSequenceNumber=7&xKey=mk&xVersion=5.0.0&xSoftwareName=paybatch&xSoftwareVersion="), "{first}");
        assert!(
            first.ends_with("&xCommand=cc%3Asale&xName=Zo%C3%AB%20%26%20Co%2B1"),
            "{first}"
        );
        assert!(text.ends_with('\n') && text.lines().nth(1).unwrap().starts_with("xIndex=1&"));
        assert_eq!(
            &sola.encode_process(seq(7), 2)[..],
            b"xKey=bk&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=7\n"
        );
    }

    #[tokio::test]
    async fn upload_is_verified_idempotent_and_never_overwrites_a_request_it_did_not_write() {
        let (_t, backend, sola) = drop_and_sola().await;
        let ours = b"xIndex=0&xSequenceNumber=3&xKey=old-key&xCommand=cc%3Asale&xAmount=1.00\n";
        sola.upload(seq(3), Bytes::from_static(ours)).await.unwrap();
        sola.upload(seq(3), Bytes::from_static(ours)).await.unwrap();
        let request = || async { backend.get("Request/REQUEST_3.KVP").await.unwrap() };
        assert_eq!(&request().await[..], ours);
        // Other transactions under our number: not ours, never overwritten.
        let other = b"xIndex=0&xSequenceNumber=3&xKey=old-key&xCommand=cc%3Asale&xAmount=2.00\n";
        let err = sola
            .upload(seq(3), Bytes::from_static(other))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ForeignRequest { .. }), "{err}");
        assert_eq!(&request().await[..], ours);
        // The same transactions with a rotated key (decision 4d), not triggered yet: replaced.
        let rotated = b"xIndex=0&xSequenceNumber=3&xKey=new-key&xCommand=cc%3Asale&xAmount=1.00\n";
        sola.upload(seq(3), Bytes::from_static(rotated))
            .await
            .unwrap();
        assert_eq!(&request().await[..], rotated);
        // Once triggered, the file the gateway has is kept.
        sola.trigger(&batch(3), 1).await.unwrap();
        sola.upload(seq(3), Bytes::from_static(ours)).await.unwrap();
        assert_eq!(&request().await[..], rotated);
        assert!(matches!(
            sola.upload(seq(3), Bytes::from_static(other)).await,
            Err(Error::ForeignRequest { .. })
        ));
        // Before a resumed batch is triggered again: ours (any key) passes, other transactions
        // do not, a request the gateway took passes.
        for payload in [&ours[..], &rotated[..]] {
            sola.verify_uploaded(seq(3), &Bytes::copy_from_slice(payload))
                .await
                .unwrap();
        }
        backend
            .put("Request/REQUEST_3.KVP", Bytes::from_static(other))
            .await
            .unwrap();
        assert!(matches!(
            sola.verify_uploaded(seq(3), &Bytes::from_static(ours))
                .await,
            Err(Error::ForeignRequest { .. })
        ));
        backend.delete("Request/REQUEST_3.KVP").await.unwrap();
        sola.verify_uploaded(seq(3), &Bytes::from_static(ours))
            .await
            .unwrap();
        // Gone with no PROCESS and no answer: taken back by someone, not triggered again.
        backend.delete("Request/PROCESS_3.KVP").await.unwrap();
        let err = sola
            .verify_uploaded(seq(3), &Bytes::from_static(ours))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no longer in the drop"), "{err}");
    }

    #[tokio::test]
    async fn a_request_is_ours_only_with_every_line_in_its_place() {
        let (_t, backend, sola) = drop_and_sola().await;
        let ours = b"xIndex=0&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale&xAmount=1.00\n\
                     xIndex=1&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale&xAmount=2.00\n";
        let put = |bytes: &[u8]| {
            let (backend, bytes) = (backend.clone(), Bytes::copy_from_slice(bytes));
            async move {
                backend.put("Request/REQUEST_3.KVP", bytes).await.unwrap();
            }
        };
        put(ours).await;
        let Uploaded::Found(found) = sola.uploaded_request(seq(3)).await.unwrap() else {
            panic!("the request is there");
        };
        assert_eq!(&found.bytes[..], &ours[..]);
        let fields = |amount: &str| {
            vec![
                ("xCommand".to_owned(), "cc:sale".to_owned()),
                ("xAmount".to_owned(), amount.to_owned()),
            ]
        };
        assert_eq!(found.lines, vec![fields("1.00"), fields("2.00")]);
        assert!(!format!("{found:?}").contains("cc:sale"));
        // The same transactions, numbered for other places: results would be joined to the
        // wrong lines, or the lines belong to another batch.
        for foreign in [
            &b"xIndex=1&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale&xAmount=1.00\n\
               xIndex=0&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale&xAmount=2.00\n"[..],
            b"xIndex=0&xSequenceNumber=4&xKey=k&xCommand=cc%3Asale&xAmount=1.00\n\
              xIndex=1&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale&xAmount=2.00\n",
            b"xIndex=0&xIndex=0&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale&xAmount=1.00\n\
              xIndex=1&xSequenceNumber=3&xKey=k&xCommand=cc%3Asale&xAmount=2.00\n",
        ] {
            put(foreign).await;
            assert!(matches!(
                sola.uploaded_request(seq(3)).await,
                Err(Error::ForeignRequest { .. })
            ));
            assert!(matches!(
                sola.verify_uploaded(seq(3), &Bytes::from_static(ours))
                    .await,
                Err(Error::ForeignRequest { .. })
            ));
        }
        // Withdrawn: gone.
        put(ours).await;
        assert!(sola.withdraw_request(seq(3)).await.unwrap());
        assert_eq!(
            sola.uploaded_request(seq(3)).await.unwrap(),
            Uploaded::Absent
        );
        assert!(backend.list("Request").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_request_is_ours_only_with_the_same_numbers_in_full() {
        let (_t, backend, sola) = drop_and_sola().await;
        let ours = b"xIndex=0&xSequenceNumber=3&xKey=k&xCommand=check%3Asale&xAccount=12345678&xRouting=021000021&xAmount=1.00\n";
        backend
            .put("Request/REQUEST_3.KVP", Bytes::from_static(ours))
            .await
            .unwrap();
        let rotated = b"xIndex=0&xSequenceNumber=3&xKey=k2&xCommand=check%3Asale&xAccount=12345678&xRouting=021000021&xAmount=1.00\n";
        sola.verify_uploaded(seq(3), &Bytes::from_static(rotated))
            .await
            .unwrap();
        // A corrected account number masks the same, and is another transaction.
        let corrected = b"xIndex=0&xSequenceNumber=3&xKey=k&xCommand=check%3Asale&xAccount=12349978&xRouting=021000021&xAmount=1.00\n";
        assert!(matches!(
            sola.verify_uploaded(seq(3), &Bytes::from_static(corrected))
                .await,
            Err(Error::ForeignRequest { .. })
        ));
        assert!(matches!(
            sola.upload(seq(3), Bytes::from_static(corrected)).await,
            Err(Error::ForeignRequest { .. })
        ));
    }

    #[tokio::test]
    async fn poll_reads_the_verdict() {
        let (_t, backend, sola) = drop_and_sola().await;
        assert_eq!(sola.poll(&batch(4)).await.unwrap(), PollResult::Pending);
        backend.put("Response/COMPLETE_4.KVP", Bytes::from_static(b"xResult=E&xStatus=Error&xError=Bad+key&xProcessedCount=0&xSequenceNumber=4\r\n")).await.unwrap();
        let PollResult::Done(v) = sola.poll(&batch(4)).await.unwrap() else {
            panic!("pending")
        };
        assert_eq!(
            (v.success, v.error.as_deref(), v.processed_count),
            (false, Some("Bad key"), Some(0))
        );
        backend
            .put(
                "Response/COMPLETE_5.KVP",
                Bytes::from_static(b"xResult=S&xStatus=Success&xSequenceNumber=6\n"),
            )
            .await
            .unwrap();
        assert_eq!(
            sola.poll(&batch(5)).await.unwrap(),
            PollResult::Pending,
            "a COMPLETE for another number is not this batch's answer"
        );
    }

    /// PROTOCOL.md decision 4a: an empty or torn COMPLETE (a gateway still writing it) is
    /// "not yet"; bytes without a final newline count once they read the same twice.
    #[tokio::test]
    async fn a_torn_complete_is_not_a_verdict() {
        let (_t, backend, sola) = drop_and_sola().await;
        let whole: &[u8] = b"xKey=bk&xSubmittedCount=2&xFormat=KVP&xSequenceNumber=8&xResult=S&xStatus=Success&xError=&xProcessedCount=2\n";
        let path = "Response/COMPLETE_8.KVP";
        // (bytes written, polls, expected done)
        let cases: &[(&[u8], usize, bool)] = &[
            (b"", 3, false),
            (&whole[..20], 3, false),
            (&whole[..70], 3, false),
            // Parses (xStatus=Succ) but is a prefix: not believed on first sight.
            (&whole[..whole.len() - 25], 1, false),
            (&whole[..whole.len() - 1], 1, false),
        ];
        for (bytes, polls, done) in cases {
            backend
                .put(path, Bytes::copy_from_slice(bytes))
                .await
                .unwrap();
            for _ in 0..*polls {
                let got = sola.poll(&batch(8)).await.unwrap();
                assert_eq!(matches!(got, PollResult::Done(_)), *done, "{bytes:?}");
            }
        }
        // The same unterminated bytes on the next poll: a gateway that writes no final newline.
        let PollResult::Done(v) = sola.poll(&batch(8)).await.unwrap() else {
            panic!("a stable COMPLETE without a final newline is a verdict")
        };
        assert!(v.success);
        backend.put(path, Bytes::from_static(whole)).await.unwrap();
        let PollResult::Done(v) = sola.poll(&batch(8)).await.unwrap() else {
            panic!("a whole COMPLETE is a verdict at once")
        };
        assert_eq!((v.success, v.processed_count), (true, Some(2)));
    }

    #[tokio::test]
    async fn answers_at_or_above_a_number_are_found() {
        let (_t, backend, sola) = drop_and_sola().await;
        assert_eq!(sola.foreign_answers(seq(1)).await.unwrap(), None);
        for path in [
            "Response/COMPLETE_3.KVP",
            "Response/RESPONSE_5.KVP",
            "Response/notes.txt",
            "Request/REQUEST_9.KVP",
        ] {
            backend
                .put(path, Bytes::from_static(b"x=1\n"))
                .await
                .unwrap();
        }
        for (from, found) in [(1, Some(5)), (4, Some(5)), (5, Some(5)), (6, None)] {
            assert_eq!(
                sola.foreign_answers(seq(from)).await.unwrap(),
                found.map(seq),
                "from {from}"
            );
        }
    }

    #[tokio::test]
    async fn results_join_on_xindex_and_must_match_the_request() {
        let (_t, backend, sola) = drop_and_sola().await;
        let cases: &[(&[u8], Result<(), &str>)] = &[
            (b"xIndex=1&xSequenceNumber=9&xResult=D\nxIndex=0&xSequenceNumber=9&xResult=A&xName=J+D\n", Ok(())),
            (b"xIndex=0&xSequenceNumber=9&xResult=A\n", Err("missing xIndex [1]")),
            (b"xIndex=0&xSequenceNumber=9\nxIndex=1&xSequenceNumber=9\nxIndex=2&xSequenceNumber=9\n", Err("extra or repeated xIndex [2]")),
            (b"xIndex=0&xSequenceNumber=9\nxIndex=0&xSequenceNumber=9\n", Err("extra or repeated xIndex [0]")),
            (b"xIndex=0&xSequenceNumber=8\nxIndex=1&xSequenceNumber=9\n", Err("xSequenceNumber 8")),
            (b"xSequenceNumber=9\nxIndex=1&xSequenceNumber=9\n", Err("no valid xIndex")),
            (b"xIndex=0&xSequenceNumber=9&xResult=A\nxIndex=1&xResult=D\n", Err("RESPONSE line 2: no xSequenceNumber")),
            (b"xIndex=0&xResult=A\nxIndex=1&xSequenceNumber=9\n", Err("RESPONSE line 1: no xSequenceNumber")),
            (b"xIndex=0&xSequenceNumber=9\nxIndex=1&xSequenceNumber=9&xName=%FF\n", Err("RESPONSE line 2: ")),
            (b"xIndex=0&xSequenceNumber=4111111111111111\n", Err("xSequenceNumber 411111******1111")),
        ];
        for (body, expected) in cases {
            backend
                .put("Response/RESPONSE_9.KVP", Bytes::copy_from_slice(body))
                .await
                .unwrap();
            let got = sola.fetch_results(&batch(9), 2).await;
            match (expected, got) {
                (Ok(()), Ok(lines)) => {
                    assert_eq!(lines.iter().map(|l| l.index).collect::<Vec<_>>(), [0, 1]);
                    assert_eq!(lines[0].fields.get("xName"), Some("J D"), "+ is a space");
                }
                (Err(needle), Err(e)) => {
                    assert!(e.to_string().contains(needle), "{e}");
                    assert!(!e.to_string().contains("4111111111111111"), "masked: {e}");
                    if body.ends_with(b"%FF\n") {
                        assert!(e.to_string().contains("xName"), "names the key: {e}");
                    }
                }
                (expected, got) => panic!("{expected:?} vs {got:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_rejected_batch_s_response_is_optional_partial_and_never_fatal() {
        use AnswerFile::{Absent, Read, Unreadable};
        let (_t, backend, sola) = drop_and_sola().await;
        // (RESPONSE_9 body or none, what the answer was, indexes kept)
        type Case<'a> = (Option<&'a [u8]>, AnswerFile, &'a [u64]);
        let cases: &[Case<'_>] = &[
            (None, Absent, &[]),
            (Some(b"xIndex=2&xSequenceNumber=9&xResult=A&xRefNum=77\nxIndex=0&xSequenceNumber=9&xResult=E&xCardNum=4111111111111111\n"), Read, &[0, 2]),
            (Some(b""), Read, &[]),
            (Some(b"xIndex=0&xSequenceNumber=9\nxIndex=0&xSequenceNumber=9\n"), Unreadable, &[]),
            (Some(b"xIndex=3&xSequenceNumber=9\n"), Unreadable, &[]),
            (Some(b"xIndex=0&xSequenceNumber=8\n"), Unreadable, &[]),
            (Some(b"xIndex=0&xResult=A\n"), Unreadable, &[]),
            (Some(b"xSequenceNumber=9&xResult=A\n"), Unreadable, &[]),
            (Some(b"xIndex=0&xSequenceNumber=9&xName=%FF\n"), Unreadable, &[]),
        ];
        for (body, answer, kept) in cases {
            let _ = backend.delete("Response/RESPONSE_9.KVP").await;
            if let Some(body) = body {
                backend
                    .put("Response/RESPONSE_9.KVP", Bytes::copy_from_slice(body))
                    .await
                    .unwrap();
            }
            let got = sola.fetch_rejected_results(&batch(9), 3).await.unwrap();
            assert_eq!(got.answer, *answer, "{body:?}");
            assert_eq!(
                got.lines.iter().map(|l| l.index).collect::<Vec<_>>(),
                *kept,
                "{body:?}"
            );
            for line in &got.lines {
                assert!(
                    line.fields
                        .iter()
                        .all(|(k, _)| !kvp_format::is_sensitive(k))
                );
            }
        }
        // A processed batch still needs every line.
        assert!(sola.fetch_results(&batch(9), 4).await.is_err());
    }

    #[tokio::test]
    async fn cleanup_deletes_exactly_this_batch_s_answer() {
        let (_t, backend, sola) = drop_and_sola().await;
        for path in [
            "Response/RESPONSE_2.KVP",
            "Response/COMPLETE_2.KVP",
            "Response/RESPONSE_3.KVP",
            "Response/COMPLETE_3.KVP",
        ] {
            backend
                .put(path, Bytes::from_static(b"x=1\n"))
                .await
                .unwrap();
        }
        sola.cleanup(&batch(2)).await.unwrap();
        sola.cleanup(&batch(2)).await.unwrap();
        let mut left: Vec<String> = backend
            .list("Response")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path)
            .collect();
        left.sort();
        assert_eq!(left, ["Response/COMPLETE_3.KVP", "Response/RESPONSE_3.KVP"]);
    }
}
