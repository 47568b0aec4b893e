//! The signed HTTP exchanges with the batch service.
//!
//! Transient failures (connection refused or reset, timeouts, HTTP 5xx and 429) are retried
//! with a doubling pause. That is safe for every step: a repeated upload of the same reference
//! is answered "reference already exists" (146), a repeated `PROCESS_BATCH` starts nothing new,
//! and `GET_BATCH_RESULTS` only reads.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::codes::ResponseCode;
use crate::config::{ApsAccountConfig, FileSignature};
use crate::error::{Error, Result};
use crate::reference::BatchReference;
use crate::signature::{json_pairs, sign, verify};

const UPLOAD: &str = "UPLOAD_BATCH_FILE";
const RESULTS: &str = "GET_BATCH_RESULTS";
const PROCESS: &str = "PROCESS_BATCH";

/// What an upload achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The file was accepted now (code 50000).
    Uploaded {
        /// The service's id for the file, if it sent one.
        batch_id: Option<String>,
    },
    /// The reference was uploaded before (code 51146): an earlier attempt got through, or
    /// another client used the reference (the caller must tell which).
    AlreadyUploaded {
        /// The service's id for the batch it holds, if the answer names it.
        batch_id: Option<String>,
    },
}

/// How an answer came: a JSON object (signed) or a plain CSV of per-line results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerForm {
    /// A JSON object whose signature verified with the response phrase.
    SignedJson,
    /// A `GET_BATCH_RESULTS` answer that is only the per-line results as CSV (`text/csv`, or
    /// a body that is not JSON, starting with a `Line_Number` header). It carries no code and
    /// no signature: the client gives it code `70000` and the rows as `batch_results`; it is
    /// believed only as processed results of a batch this client triggered, joined on
    /// `Line_Number` and checked against the lines' `merchant_reference`.
    CsvBody,
}

/// A verified answer of the service.
#[derive(Debug, Clone)]
pub struct ApsAnswer {
    /// How it came (signed JSON, or an unsigned CSV body).
    pub form: AnswerForm,
    /// The parsed `response_code` (`70000` for a CSV body).
    pub code: ResponseCode,
    /// `response_message` as sent.
    pub response_message: String,
    /// `transactions_count`, when sent.
    pub transactions_count: Option<u64>,
    /// `batch_results` CSV text, when sent.
    pub batch_results: Option<String>,
    /// Every member of the answer (already verified).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A client for one APS account. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApsClient {
    http: reqwest::Client,
    cfg: Arc<ApsAccountConfig>,
}

impl ApsAnswer {
    /// The answer's `batch_id` (a JSON string or number), if it carries a non-empty one.
    pub fn batch_id(&self) -> Option<String> {
        match self.fields.get("batch_id")? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

impl ApsClient {
    /// Builds the HTTP client (rustls, the configured timeouts; https only unless the
    /// endpoint is a loopback test server).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad configuration or a TLS set-up failure.
    pub fn new(cfg: ApsAccountConfig) -> Result<Self> {
        cfg.check()?;
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.connect_timeout)
            .https_only(!cfg.uses_plain_http())
            .build()
            .map_err(|e| Error::Config {
                account: cfg.account.clone(),
                key: "endpoint".to_owned(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            cfg: Arc::new(cfg),
        })
    }

    /// The account's configuration.
    pub fn config(&self) -> &ApsAccountConfig {
        &self.cfg
    }

    /// Step 1: uploads `file` under `reference` (multipart; the signature covers every field
    /// but `signature` and `file`).
    ///
    /// # Errors
    /// [`Error::Http`] after the retries, [`Error::BadSignature`] for an answer that does not
    /// verify, [`Error::Rejected`] for any code but 50000 and 51146, [`Error::Protocol`] for a
    /// file over the size limit or an answer about another reference.
    pub async fn upload(&self, reference: &BatchReference, file: &[u8]) -> Result<UploadOutcome> {
        if file.len() > self.cfg.max_file_bytes {
            return Err(Error::protocol(
                UPLOAD,
                reference.as_str(),
                format!(
                    "file of {} bytes is over the {} byte limit",
                    file.len(),
                    self.cfg.max_file_bytes
                ),
            ));
        }
        let fields = self.signed_fields(UPLOAD, reference, None, Some(file));
        let boundary = boundary_for(file);
        // Bytes: each retry clones a handle, not the (up to 50 MB) body.
        let body = bytes::Bytes::from(multipart_body(&boundary, &fields, reference.as_str(), file));
        let url = self.cfg.endpoint.join(&self.cfg.upload_path);
        let answer = self
            .exchange(UPLOAD, reference, || {
                self.http
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(body.clone())
            })
            .await?;
        if answer.code == ResponseCode::UPLOAD_OK {
            Ok(UploadOutcome::Uploaded {
                batch_id: answer.batch_id(),
            })
        } else if answer.code == ResponseCode::REFERENCE_EXISTS {
            Ok(UploadOutcome::AlreadyUploaded {
                batch_id: answer.batch_id(),
            })
        } else {
            Err(rejected(UPLOAD, reference, &answer))
        }
    }

    /// Step 2 and 4: the batch's status and, when there are any, per-line results.
    /// `batch_id` (the upload answer's id, when known) is sent with the request and signed.
    ///
    /// # Errors
    /// [`Error::Http`] after the retries, [`Error::BadSignature`], [`Error::Protocol`] for a
    /// malformed answer. Error codes are returned in the answer, not as errors: the caller
    /// classifies them with [`crate::BatchPhase`].
    pub async fn batch_results(
        &self,
        reference: &BatchReference,
        batch_id: Option<&str>,
    ) -> Result<ApsAnswer> {
        self.command(RESULTS, reference, batch_id).await
    }

    /// Step 3: asks the service to process a validated batch (`batch_id` as in
    /// [`ApsClient::batch_results`]).
    ///
    /// # Errors
    /// As [`ApsClient::batch_results`].
    pub async fn process(
        &self,
        reference: &BatchReference,
        batch_id: Option<&str>,
    ) -> Result<ApsAnswer> {
        self.command(PROCESS, reference, batch_id).await
    }

    async fn command(
        &self,
        operation: &'static str,
        reference: &BatchReference,
        batch_id: Option<&str>,
    ) -> Result<ApsAnswer> {
        let fields = self.signed_fields(operation, reference, batch_id, None);
        let object: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        let body = serde_json::to_vec(&object)
            .map(bytes::Bytes::from)
            .map_err(|e| {
                Error::protocol(
                    operation,
                    reference.as_str(),
                    format!("cannot encode the request: {e}"),
                )
            })?;
        let url = if operation == PROCESS {
            self.cfg.process_url()
        } else {
            self.cfg.results_url()
        };
        self.exchange(operation, reference, || {
            self.http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
    }

    /// The request fields of `operation` (with `batch_id` when given), signature last. `file`
    /// is the upload's file: it takes part in the signature only when the account says so
    /// ([`FileSignature::Content`]), and is never one of the returned fields.
    fn signed_fields(
        &self,
        operation: &str,
        reference: &BatchReference,
        batch_id: Option<&str>,
        file: Option<&[u8]>,
    ) -> Vec<(&'static str, String)> {
        let mut fields: Vec<(&'static str, String)> = vec![
            ("service_command", operation.to_owned()),
            ("access_code", self.cfg.access_code.expose().clone()),
            ("merchant_identifier", self.cfg.merchant_identifier.clone()),
            ("batch_reference", reference.as_str().to_owned()),
            ("language", self.cfg.language.clone()),
        ];
        if let Some(id) = batch_id {
            fields.push(("batch_id", id.to_owned()));
        }
        let signature = match (file, self.cfg.file_signature) {
            (Some(file), FileSignature::Content) => {
                let mut signed = fields.clone();
                signed.push(("file", String::from_utf8_lossy(file).into_owned()));
                sign(
                    &signed,
                    self.cfg.sha_request_phrase.expose(),
                    self.cfg.sha_type,
                )
            }
            _ => sign(
                &fields,
                self.cfg.sha_request_phrase.expose(),
                self.cfg.sha_type,
            ),
        };
        fields.push(("signature", signature));
        fields
    }

    /// Sends (with retries), then parses and verifies the answer.
    async fn exchange(
        &self,
        operation: &'static str,
        reference: &BatchReference,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<ApsAnswer> {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 0u32;
        let (content_type, body) = loop {
            attempt += 1;
            let last = attempt > self.cfg.retries;
            let failure = match request().send().await {
                Ok(response) => {
                    let status = response.status();
                    let content_type = response
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    if status.is_success() {
                        match response.bytes().await {
                            Ok(bytes) => break (content_type, bytes),
                            Err(e) => (format!("reading the answer: {e}"), Some(e)),
                        }
                    } else if status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    {
                        (format!("HTTP status {status}"), None)
                    } else {
                        return Err(Error::Http {
                            operation,
                            reference: reference.to_string(),
                            message: format!("HTTP status {status}"),
                            source: None,
                        });
                    }
                }
                Err(e) => (format!("{e}"), Some(e)),
            };
            if last {
                return Err(Error::Http {
                    operation,
                    reference: reference.to_string(),
                    message: format!("{} (after {attempt} attempts)", failure.0),
                    source: failure.1,
                });
            }
            tracing::warn!(account = %self.cfg.account, %reference, operation, attempt, error = %failure.0, "APS request failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        let answer = if is_csv_body(&content_type, &body) {
            csv_answer(operation, reference, &body)?
        } else {
            self.verified(operation, reference, &body)?
        };
        tracing::debug!(account = %self.cfg.account, %reference, operation, code = %answer.code, "APS answer");
        Ok(answer)
    }

    fn verified(
        &self,
        operation: &'static str,
        reference: &BatchReference,
        body: &[u8],
    ) -> Result<ApsAnswer> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            Error::protocol(
                operation,
                reference.as_str(),
                format!("answer is not JSON: {e}"),
            )
        })?;
        let serde_json::Value::Object(fields) = value else {
            return Err(Error::protocol(
                operation,
                reference.as_str(),
                "answer is not a JSON object",
            ));
        };
        let signature = fields
            .get("signature")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if !verify(
            &json_pairs(&fields),
            self.cfg.sha_response_phrase.expose(),
            self.cfg.sha_type,
            signature,
        ) {
            return Err(Error::BadSignature {
                operation,
                reference: reference.to_string(),
            });
        }
        let text = |key: &str| fields.get(key).and_then(serde_json::Value::as_str);
        if let Some(echo) = text("batch_reference")
            && echo != reference.as_str()
        {
            return Err(Error::protocol(
                operation,
                reference.as_str(),
                format!(
                    "answer is about batch {:?}",
                    kvp_format::mask_card_numbers(echo)
                ),
            ));
        }
        if let Some(echo) = text("merchant_identifier")
            && echo != self.cfg.merchant_identifier
        {
            return Err(Error::protocol(
                operation,
                reference.as_str(),
                "answer is about another merchant",
            ));
        }
        let code_text = text("response_code").unwrap_or("");
        let code = ResponseCode::parse(code_text).ok_or_else(|| {
            Error::protocol(
                operation,
                reference.as_str(),
                format!(
                    "response_code {:?} is not 5 digits",
                    kvp_format::mask_card_numbers(code_text)
                ),
            )
        })?;
        let transactions_count = match fields.get("transactions_count") {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        Ok(ApsAnswer {
            form: AnswerForm::SignedJson,
            code,
            // Quoted in errors, logs and the output: no card number (a gateway may echo one).
            response_message: kvp_format::mask_card_numbers(text("response_message").unwrap_or(""))
                .into_owned(),
            transactions_count,
            batch_results: text("batch_results")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            fields,
        })
    }
}

/// Whether an answer is a plain CSV body: said so by its content type, or a body that is not
/// JSON (its first non-blank character is not `{`).
fn is_csv_body(content_type: &str, body: &[u8]) -> bool {
    let csv_type = ["text/csv", "application/csv", "text/comma-separated-values"]
        .iter()
        .any(|t| content_type.starts_with(t));
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    csv_type || first.is_some_and(|b| *b != b'{')
}

/// A CSV body as an answer: only `GET_BATCH_RESULTS` may answer that way, and only with a
/// `Line_Number` header (anything else is neither JSON nor results).
fn csv_answer(
    operation: &'static str,
    reference: &BatchReference,
    body: &[u8],
) -> Result<ApsAnswer> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|_| {
        Error::protocol(
            operation,
            reference.as_str(),
            "answer is neither JSON nor UTF-8 CSV",
        )
    })?;
    let first_cell = text
        .trim_start()
        .split([',', '\r', '\n'])
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    if operation != RESULTS || first_cell != crate::results::LINE_NUMBER {
        return Err(Error::protocol(
            operation,
            reference.as_str(),
            format!(
                "answer is not JSON and not per-line results (a CSV starting with {})",
                crate::results::LINE_NUMBER
            ),
        ));
    }
    Ok(ApsAnswer {
        form: AnswerForm::CsvBody,
        code: ResponseCode::PROCESSED,
        response_message: String::new(),
        transactions_count: None,
        batch_results: Some(text.trim_start().to_owned()),
        fields: serde_json::Map::new(),
    })
}

fn rejected(operation: &'static str, reference: &BatchReference, answer: &ApsAnswer) -> Error {
    Error::Rejected {
        operation,
        reference: reference.to_string(),
        response_code: answer.code.to_string(),
        response_message: answer.response_message.clone(),
    }
}

/// A boundary that cannot occur in the file: derived from its digest, lengthened until absent.
fn boundary_for(file: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(file));
    let mut boundary = format!("paybatch-{}", digest.get(..24).unwrap_or(&digest));
    while file
        .windows(boundary.len())
        .any(|w| w == boundary.as_bytes())
    {
        boundary.push('x');
    }
    boundary
}

/// `multipart/form-data` (RFC 7578): the text fields, then the file part named `file`.
fn multipart_body(
    boundary: &str,
    fields: &[(&str, String)],
    reference: &str,
    file: &[u8],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(file.len() + 1024);
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{reference}.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_layout() {
        let fields = vec![
            ("service_command", "UPLOAD_BATCH_FILE".to_owned()),
            ("language", "en".to_owned()),
        ];
        let body = multipart_body("B", &fields, "PB1-x", b"a,b\r\n1,2\r\n");
        let expected = "--B\r\nContent-Disposition: form-data; name=\"service_command\"\r\n\r\nUPLOAD_BATCH_FILE\r\n\
            --B\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n\
            --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"PB1-x.csv\"\r\nContent-Type: text/csv\r\n\r\n\
            a,b\r\n1,2\r\n\r\n--B--\r\n";
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }

    #[test]
    fn csv_bodies_are_recognised_and_only_as_results() {
        let reference = BatchReference::for_batch("PB", "acme", 1).unwrap();
        let cases: &[(&str, &[u8], bool)] = &[
            ("application/json", b"{\"a\":1}", false),
            ("application/json", b"  \n{\"a\":1}", false),
            ("text/csv", b"Line_Number,status\r\n2,14\r\n", true),
            ("text/csv; charset=utf-8", b"{odd", true),
            ("", b"Line_Number,status\n2,14\n", true),
            ("text/plain", b"\xEF\xBB\xBFLine_Number\n", true),
            ("", b"", false),
        ];
        for (content_type, body, csv) in cases {
            assert_eq!(
                is_csv_body(content_type, body),
                *csv,
                "{content_type} {body:?}"
            );
        }
        let answer = csv_answer(
            RESULTS,
            &reference,
            b"\xEF\xBB\xBF\"Line_Number\",status\r\n2,14\r\n",
        )
        .unwrap();
        assert_eq!(answer.form, AnswerForm::CsvBody);
        assert_eq!(answer.code, ResponseCode::PROCESSED);
        assert!(answer.batch_results.unwrap().starts_with("\"Line_Number\""));
        for (operation, body) in [
            (RESULTS, &b"status,Line_Number\n14,2\n"[..]),
            (RESULTS, b"<html>oops</html>"),
            (PROCESS, b"Line_Number\n2\n"),
            (UPLOAD, b"Line_Number\n2\n"),
            (RESULTS, b"Line_Number\n\xFF\n"),
        ] {
            assert!(
                csv_answer(operation, &reference, body).is_err(),
                "{operation} {body:?}"
            );
        }
    }

    /// A signed answer from `client`'s account, for `reference`, with `fields` added.
    fn signed_answer(
        client: &ApsClient,
        reference: &BatchReference,
        fields: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut object = serde_json::Map::new();
        object.insert("batch_reference".into(), reference.as_str().into());
        object.insert(
            "merchant_identifier".into(),
            client.cfg.merchant_identifier.clone().into(),
        );
        for (k, v) in fields {
            object.insert((*k).into(), (*v).into());
        }
        let signature = crate::signature::sign(
            &crate::signature::json_pairs(&object),
            client.cfg.sha_response_phrase.expose(),
            client.cfg.sha_type,
        );
        object.insert("signature".into(), signature.into());
        serde_json::to_vec(&object).unwrap()
    }

    #[test]
    fn card_numbers_the_service_echoes_never_leave_the_answer() {
        let client = ApsClient::new(
            ApsAccountConfig::new(
                "acme",
                "https://sbpaymentservices.payfort.com/",
                "MID",
                kvp_format::Secret::new("A".to_owned()),
                kvp_format::Secret::new("I".to_owned()),
                kvp_format::Secret::new("O".to_owned()),
            )
            .unwrap(),
        )
        .unwrap();
        let reference = BatchReference::for_batch("PB", "acme", 1).unwrap();
        let card = "4111111111111111";
        let body = signed_answer(
            &client,
            &reference,
            &[
                ("response_code", "77000"),
                ("response_message", "card 4111111111111111 declined"),
            ],
        );
        let answer = client.verified(PROCESS, &reference, &body).unwrap();
        assert_eq!(answer.code, ResponseCode::parse("77000").unwrap());
        assert!(
            !answer.response_message.contains(card),
            "{}",
            answer.response_message
        );
        assert!(
            answer.response_message.contains("1111"),
            "{}",
            answer.response_message
        );
        // An answer refused for what it quotes quotes no card number either.
        for fields in [
            &[("response_code", card)][..],
            &[("response_code", "77000"), ("batch_reference", card)][..],
        ] {
            let body = signed_answer(&client, &reference, fields);
            let err = client
                .verified(PROCESS, &reference, &body)
                .unwrap_err()
                .to_string();
            assert!(!err.contains(card), "{err}");
        }
    }

    #[test]
    fn boundary_never_occurs_in_the_file() {
        let plain = b"command,amount\r\nPURCHASE,100\r\n";
        let b = boundary_for(plain);
        let mut tricky = plain.to_vec();
        tricky.extend_from_slice(b.as_bytes());
        let b2 = boundary_for(&tricky);
        assert!(!tricky.windows(b2.len()).any(|w| w == b2.as_bytes()));
    }
}
