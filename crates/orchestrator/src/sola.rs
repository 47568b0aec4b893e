//! The Sola (Cardknox) file-drop protocol over any storage backend.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kvp_format::{FileKind, FileName, Secret, SequenceNumber};
use sha2::{Digest, Sha256};
use storage_backends::{Backend, ErrorKind};

use crate::error::{Error, Result};
use crate::protocol::{
    BatchFile, BatchVerdict, GatewayProtocol, LineResult, Masking, PollResult, RequestLine,
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
    x_version: String,
    software_name: String,
    software_version: String,
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
            x_version: gateway.x_version.clone(),
            software_name: gateway.software_name.clone(),
            software_version: gateway.software_version().to_owned(),
        }
    }

    fn path(kind: FileKind, sequence: SequenceNumber) -> String {
        FileName::new(kind, sequence).path()
    }

    fn storage(&self, path: &str, source: storage_backends::Error) -> Error {
        Error::Storage {
            account: self.account.clone(),
            path: path.to_owned(),
            source,
        }
    }

    fn protocol(&self, sequence: SequenceNumber, message: impl Into<String>) -> Error {
        Error::Protocol {
            account: self.account.clone(),
            sequence: sequence.get(),
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
        for (n, line) in lines(bytes).enumerate() {
            let at = n + 1;
            let pairs = kvp_format::decode_line(line).map_err(|e| {
                self.protocol(sequence, format!("RESPONSE line {at}: {}", e.message()))
            })?;
            let mut index = None;
            let mut seq_seen = false;
            let mut fields = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                if k == "xIndex" {
                    index = v.parse::<u64>().ok();
                } else if k == "xSequenceNumber" {
                    if v != sequence.to_string().as_str() {
                        return Err(self.protocol(
                            sequence,
                            format!("RESPONSE line {at}: xSequenceNumber {v}"),
                        ));
                    }
                    seq_seen = true;
                } else if !kvp_format::is_sensitive(&k) {
                    fields.push((k.into_owned(), v.into_owned()));
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

    /// The PROCESS file's bytes.
    pub fn encode_process(&self, sequence: SequenceNumber, line_count: u64) -> Bytes {
        Self::process_bytes(self.batch_key.expose(), sequence, line_count)
    }

    /// The REQUEST file's bytes with `merchant_key` as every line's `xKey`.
    fn request_bytes(
        &self,
        sequence: SequenceNumber,
        lines: &[RequestLine<'_>],
        merchant_key: &str,
    ) -> Bytes {
        let mut out = Vec::with_capacity(lines.len() * 256);
        let seq = sequence.to_string();
        for line in lines {
            kvp_format::encode_pair("xIndex", &line.index.to_string(), &mut out);
            for (k, v) in [
                ("xSequenceNumber", seq.as_str()),
                ("xKey", merchant_key),
                ("xVersion", self.x_version.as_str()),
                ("xSoftwareName", self.software_name.as_str()),
                ("xSoftwareVersion", self.software_version.as_str()),
            ] {
                out.push(b'&');
                kvp_format::encode_pair(k, v, &mut out);
            }
            for (k, v) in line.fields {
                out.push(b'&');
                kvp_format::encode_pair(k, v, &mut out);
            }
            out.push(b'\n');
        }
        Bytes::from(out)
    }

    fn process_bytes(batch_key: &str, sequence: SequenceNumber, line_count: u64) -> Bytes {
        let mut out = Vec::with_capacity(128);
        kvp_format::encode_pair("xKey", batch_key, &mut out);
        out.push(b'&');
        kvp_format::encode_pair("xSubmittedCount", &line_count.to_string(), &mut out);
        out.push(b'&');
        kvp_format::encode_pair("xFormat", "KVP", &mut out);
        out.push(b'&');
        kvp_format::encode_pair("xSequenceNumber", &sequence.to_string(), &mut out);
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// Which lines a RESPONSE must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// Exactly one per submitted line (a processed batch).
    Every,
    /// Any subset of the submitted lines (a rejected batch); still no extra or repeated ones.
    Some,
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
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

    fn encode_request(&self, sequence: SequenceNumber, lines: &[RequestLine<'_>]) -> Result<Bytes> {
        Ok(self.request_bytes(sequence, lines, self.merchant_key.expose()))
    }

    /// `REQUEST_X` and `PROCESS_X`; masked, their `xKey`s are `[REDACTED]` and the lines'
    /// sensitive fields masked.
    fn batch_files(
        &self,
        sequence: SequenceNumber,
        lines: &[RequestLine<'_>],
        masking: Masking,
    ) -> Result<Vec<BatchFile>> {
        let (merchant_key, batch_key) = match masking {
            Masking::Unmasked => (
                self.merchant_key.expose().as_str(),
                self.batch_key.expose().as_str(),
            ),
            _ => (kvp_format::REDACTED, kvp_format::REDACTED),
        };
        let request = masking.apply(lines, |lines| {
            self.request_bytes(sequence, lines, merchant_key)
        });
        Ok(vec![
            BatchFile {
                path: Self::path(FileKind::Request, sequence),
                bytes: request,
            },
            BatchFile {
                path: Self::path(FileKind::Process, sequence),
                bytes: Self::process_bytes(batch_key, sequence, lines.len() as u64),
            },
        ])
    }

    async fn upload(&self, sequence: SequenceNumber, payload: Bytes) -> Result<()> {
        let path = Self::path(FileKind::Request, sequence);
        let want: [u8; 32] = Sha256::digest(&payload).into();
        let present = match self.backend.get(&path).await {
            Ok(bytes) => Some(<[u8; 32]>::from(Sha256::digest(&bytes))),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(self.storage(&path, e)),
        };
        if present == Some(want) {
            tracing::debug!(account = %self.account, %sequence, "REQUEST already in the drop with the right digest");
            return Ok(());
        }
        if present.is_some() {
            // A different REQUEST_X must never be triggered: refuse if its PROCESS is there.
            let process = Self::path(FileKind::Process, sequence);
            match self.backend.head(&process).await {
                Ok(_) => {
                    return Err(self.protocol(
                        sequence,
                        "a different REQUEST with this number is already in the drop and triggered",
                    ));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.storage(&process, e)),
            }
        }
        self.backend
            .put(&path, payload.clone())
            .await
            .map_err(|e| self.storage(&path, e))?;
        let back = self
            .backend
            .get(&path)
            .await
            .map_err(|e| self.storage(&path, e))?;
        if back.len() != payload.len() || <[u8; 32]>::from(Sha256::digest(&back)) != want {
            return Err(self.protocol(
                sequence,
                format!(
                    "REQUEST read back differs from what was written ({} bytes, expected {})",
                    back.len(),
                    payload.len()
                ),
            ));
        }
        Ok(())
    }

    async fn trigger(&self, sequence: SequenceNumber, line_count: u64) -> Result<()> {
        let path = Self::path(FileKind::Process, sequence);
        self.backend
            .put(&path, self.encode_process(sequence, line_count))
            .await
            .map_err(|e| self.storage(&path, e))
    }

    async fn poll(&self, sequence: SequenceNumber) -> Result<PollResult> {
        let path = Self::path(FileKind::Complete, sequence);
        let bytes = match self.backend.get(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(PollResult::Pending),
            Err(e) => return Err(self.storage(&path, e)),
        };
        let line = lines(&bytes).next().unwrap_or_default();
        let pairs = kvp_format::decode_line(line).map_err(|e| {
            self.protocol(sequence, format!("COMPLETE unreadable: {}", e.message()))
        })?;
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.to_string())
        };
        if let Some(seq) = get("xSequenceNumber")
            && seq != sequence.to_string()
        {
            return Err(self.protocol(sequence, format!("COMPLETE carries xSequenceNumber {seq}")));
        }
        let status = get("xStatus").unwrap_or_default();
        Ok(PollResult::Done(BatchVerdict {
            success: status.eq_ignore_ascii_case("Success"),
            status,
            error: get("xError").filter(|e| !e.is_empty()),
            processed_count: get("xProcessedCount").and_then(|c| c.parse().ok()),
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }))
    }

    async fn fetch_results(
        &self,
        sequence: SequenceNumber,
        line_count: u64,
    ) -> Result<Vec<LineResult>> {
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
        sequence: SequenceNumber,
        line_count: u64,
    ) -> Result<Vec<LineResult>> {
        let path = Self::path(FileKind::Response, sequence);
        let bytes = match self.backend.get(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::debug!(account = %self.account, %sequence, "rejected batch has no RESPONSE");
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.storage(&path, e)),
        };
        match self.parse_response(sequence, &bytes, line_count, Coverage::Some) {
            Ok(lines) => Ok(lines),
            Err(e) => {
                tracing::warn!(account = %self.account, %sequence, error = %e, "RESPONSE of a rejected batch is unreadable; its lines keep only the batch verdict");
                Ok(Vec::new())
            }
        }
    }

    async fn cleanup(&self, sequence: SequenceNumber) -> Result<()> {
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

    async fn drop_and_sola() -> (
        storage_backends::test_env::TestTarget,
        Arc<dyn Backend>,
        SolaFileDrop,
    ) {
        let target = storage_backends::test_env::local().unwrap();
        let backend = storage_backends::open(&target.location, &target.options)
            .await
            .unwrap();
        let settings = crate::settings::Settings::from_toml("").unwrap();
        let sola = SolaFileDrop::new(
            "acme",
            backend.clone(),
            Secret::new("bk".into()),
            Secret::new("mk".into()),
            &settings.gateway,
        );
        (target, backend, sola)
    }

    fn seq(n: u32) -> SequenceNumber {
        SequenceNumber::new(n).unwrap()
    }

    #[tokio::test]
    async fn request_encoding_is_canonical_and_deterministic() {
        let (_t, _b, sola) = drop_and_sola().await;
        let fields = vec![
            ("xCommand".to_owned(), "cc:sale".to_owned()),
            ("xName".to_owned(), "Zoë & Co+1".to_owned()),
        ];
        let lines = [
            RequestLine {
                index: 0,
                fields: &fields,
            },
            RequestLine {
                index: 1,
                fields: &fields,
            },
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
    async fn upload_is_verified_idempotent_and_never_replaces_a_triggered_request() {
        let (_t, backend, sola) = drop_and_sola().await;
        sola.upload(seq(3), Bytes::from_static(b"xIndex=0\n"))
            .await
            .unwrap();
        sola.upload(seq(3), Bytes::from_static(b"xIndex=0\n"))
            .await
            .unwrap();
        assert_eq!(
            &backend.get("Request/REQUEST_3.KVP").await.unwrap()[..],
            b"xIndex=0\n"
        );
        // Not triggered yet: a different payload replaces it.
        sola.upload(seq(3), Bytes::from_static(b"xIndex=0&x=1\n"))
            .await
            .unwrap();
        sola.trigger(seq(3), 1).await.unwrap();
        let err = sola
            .upload(seq(3), Bytes::from_static(b"xIndex=0&x=2\n"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("already in the drop and triggered"),
            "{err}"
        );
        assert_eq!(
            &backend.get("Request/REQUEST_3.KVP").await.unwrap()[..],
            b"xIndex=0&x=1\n"
        );
    }

    #[tokio::test]
    async fn poll_reads_the_verdict() {
        let (_t, backend, sola) = drop_and_sola().await;
        assert_eq!(sola.poll(seq(4)).await.unwrap(), PollResult::Pending);
        backend.put("Response/COMPLETE_4.KVP", Bytes::from_static(b"xResult=E&xStatus=Error&xError=Bad+key&xProcessedCount=0&xSequenceNumber=4\r\n")).await.unwrap();
        let PollResult::Done(v) = sola.poll(seq(4)).await.unwrap() else {
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
        assert!(
            sola.poll(seq(5)).await.is_err(),
            "a COMPLETE for another number is refused"
        );
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
        ];
        for (body, expected) in cases {
            backend
                .put("Response/RESPONSE_9.KVP", Bytes::copy_from_slice(body))
                .await
                .unwrap();
            let got = sola.fetch_results(seq(9), 2).await;
            match (expected, got) {
                (Ok(()), Ok(lines)) => {
                    assert_eq!(lines.iter().map(|l| l.index).collect::<Vec<_>>(), [0, 1]);
                    assert!(
                        lines[0]
                            .fields
                            .contains(&("xName".to_owned(), "J D".to_owned())),
                        "+ is a space"
                    );
                }
                (Err(needle), Err(e)) => assert!(e.to_string().contains(needle), "{e}"),
                (expected, got) => panic!("{expected:?} vs {got:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_rejected_batch_s_response_is_optional_partial_and_never_fatal() {
        let (_t, backend, sola) = drop_and_sola().await;
        // (RESPONSE_9 body or none, indexes kept)
        let cases: &[(Option<&[u8]>, &[u64])] = &[
            (None, &[]),
            (Some(b"xIndex=2&xSequenceNumber=9&xResult=A&xRefNum=77\nxIndex=0&xSequenceNumber=9&xResult=E&xCardNum=4111111111111111\n"), &[0, 2]),
            (Some(b""), &[]),
            (Some(b"xIndex=0&xSequenceNumber=9\nxIndex=0&xSequenceNumber=9\n"), &[]),
            (Some(b"xIndex=3&xSequenceNumber=9\n"), &[]),
            (Some(b"xIndex=0&xSequenceNumber=8\n"), &[]),
            (Some(b"xIndex=0&xResult=A\n"), &[]),
            (Some(b"xSequenceNumber=9&xResult=A\n"), &[]),
            (Some(b"xIndex=0&xSequenceNumber=9&xName=%FF\n"), &[]),
        ];
        for (body, kept) in cases {
            let _ = backend.delete("Response/RESPONSE_9.KVP").await;
            if let Some(body) = body {
                backend
                    .put("Response/RESPONSE_9.KVP", Bytes::copy_from_slice(body))
                    .await
                    .unwrap();
            }
            let got = sola.fetch_rejected_results(seq(9), 3).await.unwrap();
            assert_eq!(
                got.iter().map(|l| l.index).collect::<Vec<_>>(),
                *kept,
                "{body:?}"
            );
            for line in &got {
                assert!(
                    line.fields
                        .iter()
                        .all(|(k, _)| !kvp_format::is_sensitive(k))
                );
            }
        }
        // A processed batch still needs every line.
        assert!(sola.fetch_results(seq(9), 4).await.is_err());
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
        sola.cleanup(seq(2)).await.unwrap();
        sola.cleanup(seq(2)).await.unwrap();
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
