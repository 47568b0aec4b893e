//! The HTTP side: `POST /FortAPI/upload/` (multipart) and `POST /FortAPI/batchApi/` (JSON),
//! every request's signature checked, every answer signed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::{Error, Result};
use super::journal::{ApsJournalEntry, Journal};
use super::multipart;
use super::options::{
    ApsKnobs, ApsMerchant, ApsSimOptions, LostAnswer, ReferenceMode, ResultOrder, ResultsForm,
    TamperMode, UploadSignature, ValidationMode,
};
use super::signature::signature;
use super::validate::{BatchLine, LineProblem, Validation, validate_with};

use super::answer::{
    Answer, FORT_BASE, Request, Row, UNSETTLED, batch_id_of, json, json_params, rejected,
    result_row, rows_csv, valid_reference,
};

/// The service's file limit ("Max: 50MB", read as 50,000,000 bytes).
const MAX_FILE: usize = 50_000_000;

/// The APS batch service simulator.
#[derive(Debug)]
pub struct ApsSim;

/// A running simulator; [`ApsSimHandle::shutdown`] stops it.
#[derive(Debug)]
pub struct ApsSimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    merchants: HashMap<String, ApsMerchant>,
    validation_polls: u32,
    processing_polls: u32,
    decline_cents: u64,
    reference: ReferenceMode,
    process_path: Option<String>,
    upload_signature: UploadSignature,
    header_names: Vec<(String, String)>,
    knobs: Mutex<ApsKnobs>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    batches: HashMap<(String, String), Batch>,
    journal: Journal,
    purchased: HashSet<(String, String)>,
    next_fort_id: u64,
    rng: fastrand::Rng,
}

#[derive(Debug)]
struct Batch {
    batch_id: String,
    validation: Validation,
    phase: Phase,
}

#[derive(Debug, Clone)]
enum Phase {
    Validating { remaining: u32 },
    Validated,
    Rejected,
    Processing { remaining: u32 },
    Processed { rows: Vec<Row> },
}

impl ApsSim {
    /// Opens the journal, binds the listener and serves until [`ApsSimHandle::shutdown`].
    ///
    /// # Errors
    /// [`Error::Options`] for duplicate merchants, [`Error::Journal`], [`Error::Bind`].
    pub async fn start(options: ApsSimOptions) -> Result<ApsSimHandle> {
        let mut merchants = HashMap::new();
        for m in &options.merchants {
            if merchants
                .insert(m.merchant_identifier.clone(), m.clone())
                .is_some()
            {
                return Err(Error::Options {
                    message: format!("merchant {:?} given twice", m.merchant_identifier),
                });
            }
        }
        let journal = Journal::open(options.journal.as_deref())?;
        let mut inner = Inner {
            batches: HashMap::new(),
            purchased: HashSet::new(),
            next_fort_id: 1,
            rng: fastrand::Rng::with_seed(options.seed),
            journal,
        };
        inner.replay(options.reference.line_number_offset());
        let shared = Arc::new(Shared {
            merchants,
            validation_polls: options.validation_polls,
            processing_polls: options.processing_polls,
            decline_cents: options.decline_cents,
            reference: options.reference,
            process_path: options.process_path.clone(),
            upload_signature: options.upload_signature,
            header_names: options.header_names.clone(),
            knobs: Mutex::new(options.knobs.clone()),
            inner: Mutex::new(inner),
        });
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: options.bind.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: options.bind.to_string(),
            source,
        })?;
        let mut app = Router::new()
            .route("/FortAPI/upload/", post(upload))
            .route("/FortAPI/upload", post(upload))
            .route("/FortAPI/batchApi/", post(batch_api))
            .route("/FortAPI/batchApi", post(batch_api));
        if let Some(path) = &options.process_path {
            if !path.starts_with('/') || path.starts_with("/FortAPI/") {
                return Err(Error::Options {
                    message: format!(
                        "process_path {path:?} must start with / and not be under /FortAPI/"
                    ),
                });
            }
            app = app.route(path, post(process_api));
        }
        let app = app
            .layer(DefaultBodyLimit::max(MAX_FILE + 1024 * 1024))
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "APS simulator stopped");
            }
        });
        tracing::info!(%addr, "APS simulator listening");
        Ok(ApsSimHandle {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

impl ApsSimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure as an account's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the failure knobs.
    pub fn set_knobs(&self, knobs: ApsKnobs) {
        *lock(&self.shared.knobs) = knobs;
    }

    /// The current failure knobs (one-shot knobs show whether they fired).
    pub fn knobs(&self) -> ApsKnobs {
        lock(&self.shared.knobs).clone()
    }

    /// Every processed transaction so far, in processing order.
    pub fn journal(&self) -> Vec<ApsJournalEntry> {
        lock(&self.shared.inner).journal.entries().to_vec()
    }

    /// How many batch files were accepted (including replayed ones).
    pub fn batch_count(&self) -> usize {
        lock(&self.shared.inner).batches.len()
    }

    /// Stops accepting requests and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ApsSimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// A poisoned lock only means another request panicked; the state itself stays consistent
// because every change is made in one step under the lock.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Rebuilds processed batches and purchased orders from the journal; `offset` is the
    /// `Line_Number` of a file's first data row.
    fn replay(&mut self, offset: u64) {
        let mut rows: HashMap<(String, String), Vec<Row>> = HashMap::new();
        for e in self.journal.entries() {
            if e.command == "PURCHASE" {
                self.purchased
                    .insert((e.merchant_identifier.clone(), e.merchant_reference.clone()));
            }
            rows.entry((e.merchant_identifier.clone(), e.batch_reference.clone()))
                .or_default()
                .push(result_row(e, offset));
            if let Ok(n) = e.fort_id.parse::<u64>() {
                self.next_fort_id = self.next_fort_id.max(n.saturating_sub(FORT_BASE) + 1);
            }
        }
        for (key, rows) in rows {
            let count = rows.len();
            let batch_id = batch_id_of(&key.0, &key.1);
            let lines = (0..count).map(|_| placeholder_line()).collect();
            self.batches.insert(
                key,
                Batch {
                    batch_id,
                    validation: Validation::Valid(lines),
                    phase: Phase::Processed { rows },
                },
            );
        }
    }
}

fn placeholder_line() -> BatchLine {
    BatchLine {
        line_number: 0,
        command: String::new(),
        merchant_reference: String::new(),
        amount: None,
        currency: None,
        fort_id: None,
    }
}

async fn upload(State(sim): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(early) = sim.before().await {
        return early;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(parts) = multipart::boundary(content_type).and_then(|b| multipart::parse(&body, &b))
    else {
        return (StatusCode::BAD_REQUEST, "expected multipart/form-data").into_response();
    };
    let mut req = Request {
        params: Vec::new(),
        file: None,
    };
    for part in parts {
        if part.name == "file" {
            req.file = Some(part.data);
        } else {
            req.params
                .push((part.name, String::from_utf8_lossy(&part.data).into_owned()));
        }
    }
    sim.answer(&req, "UPLOAD_BATCH_FILE", |merchant, reference, answer| {
        sim.upload_checked(merchant, reference, req.file.as_deref(), answer)
    })
}

/// `PROCESS_BATCH` on its own path (`ApsSimOptions::process_path`).
async fn process_api(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(early) = sim.before().await {
        return early;
    }
    let Some(params) = json_params(&body) else {
        return (StatusCode::BAD_REQUEST, "expected a JSON object").into_response();
    };
    let req = Request { params, file: None };
    let given = req.get("batch_id").map(str::to_owned);
    sim.answer(&req, "PROCESS_BATCH", |m, r, a| {
        sim.process(m, r, given.as_deref(), a)
    })
}

async fn batch_api(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    if let Some(early) = sim.before().await {
        return early;
    }
    let Some(params) = json_params(&body) else {
        return (StatusCode::BAD_REQUEST, "expected a JSON object").into_response();
    };
    let req = Request { params, file: None };
    let command = req.get("service_command").unwrap_or("").to_owned();
    let given = req.get("batch_id").map(str::to_owned);
    match command.as_str() {
        "GET_BATCH_RESULTS" => sim.answer(&req, "GET_BATCH_RESULTS", |m, r, a| {
            sim.results(m, r, given.as_deref(), a)
        }),
        // With a process path configured, PROCESS_BATCH is not served here (00004).
        "PROCESS_BATCH" if sim.process_path.is_none() => {
            sim.answer(&req, "PROCESS_BATCH", |m, r, a| {
                sim.process(m, r, given.as_deref(), a)
            })
        }
        _ => sim.answer(&req, "GET_BATCH_RESULTS", |_, _, a| a),
    }
}

impl Shared {
    /// Latency and transient-failure knobs, applied before a request is read.
    async fn before(&self) -> Option<Response> {
        let (latency, fail) = {
            let mut knobs = lock(&self.knobs);
            let fail = knobs.transient_failures > 0;
            if fail {
                knobs.transient_failures -= 1;
            }
            (knobs.latency, fail)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        fail.then(|| (StatusCode::SERVICE_UNAVAILABLE, "simulated outage").into_response())
    }

    /// The checks every request goes through (merchant, signature, access code, command,
    /// reference), then `step`, then the signature of the answer.
    fn answer(
        &self,
        req: &Request,
        expected_command: &str,
        step: impl FnOnce(&ApsMerchant, &str, Answer) -> Answer,
    ) -> Response {
        let answer = Answer::echo(req);
        let merchant_id = req.get("merchant_identifier").unwrap_or("");
        let Some(merchant) = self.merchants.get(merchant_id) else {
            // Unknown merchant: no phrase to sign with; the answer goes out unsigned.
            return json(&answer.code(0, 9, "Invalid merchant identifier").members);
        };
        let mut pairs: Vec<(String, String)> = req
            .params
            .iter()
            .filter(|(k, _)| k != "signature")
            .cloned()
            .collect();
        if self.upload_signature == UploadSignature::Content
            && let Some(file) = &req.file
        {
            pairs.push(("file".into(), String::from_utf8_lossy(file).into_owned()));
        }
        let expected = signature(
            &pairs,
            merchant.sha_request_phrase.expose(),
            merchant.sha_type,
        );
        let given = req.get("signature").unwrap_or("").to_ascii_lowercase();
        let answer = if given != expected {
            answer.code(0, 8, "Signature mismatch")
        } else if req.get("access_code") != Some(merchant.access_code.expose().as_str()) {
            answer.code(0, 10, "Invalid access code")
        } else if !expected_command
            .split(" or ")
            .any(|c| Some(c) == req.get("service_command"))
        {
            answer.code(0, 4, "Invalid command")
        } else {
            match req.get("batch_reference") {
                Some(r) if valid_reference(r) => step(merchant, r, answer),
                Some(_) => answer.code(0, 2, "Invalid parameter format: batch_reference"),
                None => answer.code(0, 1, "Missing parameter: batch_reference"),
            }
        };
        self.sign(merchant, answer)
    }

    fn sign(&self, merchant: &ApsMerchant, answer: Answer) -> Response {
        let Answer {
            mut members,
            processed,
        } = answer;
        let pairs: Vec<(String, String)> = members
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        let mut sig = signature(
            &pairs,
            merchant.sha_response_phrase.expose(),
            merchant.sha_type,
        );
        let tamper = match lock(&self.knobs).tamper {
            TamperMode::Off => false,
            TamperMode::Every => true,
            TamperMode::ProcessedResults => processed,
        };
        if tamper {
            // Flip the first hex digit: a plausible signature that does not verify.
            let first = if sig.starts_with('0') { "1" } else { "0" };
            sig.replace_range(..1, first);
        }
        members.insert("signature".into(), Value::String(sig));
        let code = members
            .get("response_code")
            .and_then(Value::as_str)
            .unwrap_or("");
        let lost = match code {
            "50000" => Some(LostAnswer::Upload),
            "72147" => Some(LostAnswer::ProcessBatch),
            _ if processed => Some(LostAnswer::Processed),
            _ => None,
        };
        let csv_body = {
            let mut knobs = lock(&self.knobs);
            if lost.is_some() && knobs.lose_answer == lost {
                knobs.lose_answer = None;
                return (StatusCode::SERVICE_UNAVAILABLE, "simulated lost answer").into_response();
            }
            processed && knobs.results_form == ResultsForm::CsvBody
        };
        if csv_body {
            // The published example: the results as plain CSV, no JSON, no signature.
            let text = members
                .get("batch_results")
                .and_then(Value::as_str)
                .unwrap_or("Line_Number\r\n")
                .to_owned();
            return (StatusCode::OK, [(header::CONTENT_TYPE, "text/csv")], text).into_response();
        }
        json(&members)
    }

    /// The `batch_id` check of a command on `batch`: `None` when it passes, else the refusal
    /// (`status` is the command's failure status, 71 or 73).
    fn batch_id_refused(
        &self,
        batch: &Batch,
        given: Option<&str>,
        status: u8,
        answer: Answer,
    ) -> std::result::Result<Answer, Answer> {
        match given {
            Some(id) if id.trim() != batch.batch_id => {
                Err(answer.code(status, 2, "Invalid parameter format: batch_id"))
            }
            None if lock(&self.knobs).require_batch_id => {
                Err(answer.code(status, 1, "Missing parameter: batch_id"))
            }
            _ => Ok(answer),
        }
    }

    fn upload_checked(
        &self,
        merchant: &ApsMerchant,
        reference: &str,
        file: Option<&[u8]>,
        answer: Answer,
    ) -> Answer {
        let Some(file) = file else {
            return answer.code(51, 1, "Missing parameter: file");
        };
        if file.len() > MAX_FILE {
            return answer.code(51, 2, "Invalid parameter format: file larger than 50 MB");
        }
        let mut inner = lock(&self.inner);
        let key = (merchant.merchant_identifier.clone(), reference.to_owned());
        if let Some(existing) = inner.batches.get(&key) {
            return answer
                .code(51, 146, "Batch reference already exists")
                .with("batch_id", Value::String(existing.batch_id.clone()));
        }
        let mut validation = validate_with(file, &self.header_names);
        if lock(&self.knobs).validation == ValidationMode::FailAll {
            validation = Validation::LinesInvalid {
                count: validation.count(),
                problems: vec![LineProblem {
                    line_number: 1,
                    merchant_reference: String::new(),
                    message_code: 6,
                    message: "Technical problem (simulated validation failure)".into(),
                }],
            };
        }
        let batch_id = batch_id_of(&merchant.merchant_identifier, reference);
        inner.batches.insert(
            key,
            Batch {
                batch_id: batch_id.clone(),
                validation,
                phase: Phase::Validating {
                    remaining: self.validation_polls,
                },
            },
        );
        answer
            .code(50, 0, "Success")
            .with("batch_id", Value::String(batch_id))
    }

    fn results(
        &self,
        merchant: &ApsMerchant,
        reference: &str,
        given_batch_id: Option<&str>,
        answer: Answer,
    ) -> Answer {
        let mut inner = lock(&self.inner);
        let (stalled, validation_rows, omit_count) = {
            let knobs = lock(&self.knobs);
            (
                knobs.validation == ValidationMode::Stall,
                knobs.validation_rows,
                knobs.omit_transactions_count,
            )
        };
        let offset = self.reference.line_number_offset();
        let key = (merchant.merchant_identifier.clone(), reference.to_owned());
        let Some(batch) = inner.batches.get_mut(&key) else {
            return answer.code(71, 141, "Batch reference not found");
        };
        let answer = match self.batch_id_refused(batch, given_batch_id, 71, answer) {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        let answer = if omit_count {
            answer
        } else {
            answer.with("transactions_count", Value::from(batch.validation.count()))
        };
        let answer = answer.with("batch_id", Value::String(batch.batch_id.clone()));
        match batch.phase.clone() {
            Phase::Validating { remaining } if remaining > 0 || stalled => {
                batch.phase = Phase::Validating {
                    remaining: remaining.saturating_sub(1),
                };
                answer.code(70, 138, "Batch file is still being validated")
            }
            Phase::Validating { .. } => {
                batch.phase = match batch.validation {
                    Validation::Valid(_) => Phase::Validated,
                    _ => Phase::Rejected,
                };
                drop(inner);
                self.results(merchant, reference, given_batch_id, answer)
            }
            Phase::Validated => self.validated(&batch.validation, validation_rows, answer),
            Phase::Rejected => rejected(&batch.validation, offset, answer),
            Phase::Processing { remaining } if remaining > 0 => {
                batch.phase = Phase::Processing {
                    remaining: remaining - 1,
                };
                answer.code(70, 140, "Batch file is still being processed")
            }
            Phase::Processing { .. } => {
                match self.run(&mut inner, &merchant.merchant_identifier, reference) {
                    Ok(rows) => answer.processed(&rows),
                    Err(e) => {
                        tracing::error!(error = %e, "APS simulator could not journal a batch");
                        answer.code(71, 6, "Technical problem")
                    }
                }
            }
            Phase::Processed { rows } => answer.processed(&rows),
        }
    }

    /// The answer about a validated batch: `76000` (3a) or `70000` (published), with a row per
    /// line when the `validation_rows` knob is on.
    fn validated(&self, validation: &Validation, rows: bool, answer: Answer) -> Answer {
        let (status, text) = match self.reference {
            ReferenceMode::Published => (70, "Success"),
            ReferenceMode::Assumed3a => (76, "Batch file validated successfully"),
        };
        let answer = answer.code(status, 0, text);
        let Validation::Valid(lines) = validation else {
            return answer;
        };
        if !rows || lines.is_empty() {
            return answer;
        }
        let offset = self.reference.line_number_offset();
        let rows: Vec<Row> = lines
            .iter()
            .map(|l| {
                vec![
                    (
                        "Line_Number".into(),
                        (l.line_number - 1 + offset).to_string(),
                    ),
                    ("merchant_reference".into(), l.merchant_reference.clone()),
                    ("response_code".into(), format!("{status:02}000")),
                    ("response_message".into(), "Valid".into()),
                ]
            })
            .collect();
        answer.with("batch_results", Value::String(rows_csv(&rows)))
    }

    fn process(
        &self,
        merchant: &ApsMerchant,
        reference: &str,
        given_batch_id: Option<&str>,
        answer: Answer,
    ) -> Answer {
        let mut inner = lock(&self.inner);
        let key = (merchant.merchant_identifier.clone(), reference.to_owned());
        let Some(batch) = inner.batches.get_mut(&key) else {
            return answer.code(73, 141, "Batch reference not found");
        };
        let answer = match self.batch_id_refused(batch, given_batch_id, 73, answer) {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        match batch.phase {
            Phase::Validating { .. } => answer.code(73, 138, "Batch file is still being validated"),
            Phase::Rejected => answer.code(73, 136, "Batch file validation failed"),
            Phase::Validated => {
                batch.phase = Phase::Processing {
                    remaining: self.processing_polls,
                };
                answer.code(72, 147, "Batch processing started")
            }
            // A repeated PROCESS_BATCH (a retry after a lost answer) starts nothing new.
            Phase::Processing { .. } | Phase::Processed { .. } => {
                answer.code(72, 147, "Batch processing started")
            }
        }
    }

    /// Processes every line once, journals them durably, then publishes shuffled rows.
    fn run(&self, inner: &mut Inner, merchant: &str, reference: &str) -> Result<Vec<Row>> {
        let key = (merchant.to_owned(), reference.to_owned());
        let lines = match inner.batches.get(&key).map(|b| &b.validation) {
            Some(Validation::Valid(lines)) => lines.clone(),
            _ => Vec::new(),
        };
        let unsettled_cents = lock(&self.knobs).unsettled_cents;
        let offset = self.reference.line_number_offset();
        let mut entries = Vec::with_capacity(lines.len());
        let mut purchased_now = HashSet::new();
        for line in &lines {
            let (ok, failed) = match line.command.as_str() {
                "PURCHASE" => (14, 13),
                "CAPTURE" => (4, 5),
                "REFUND" => (6, 7),
                _ => (8, 9),
            };
            let order = (merchant.to_owned(), line.merchant_reference.clone());
            let unsettled = UNSETTLED
                .get((line.line_number.saturating_sub(1) % 4) as usize)
                .map_or(15, |(s, _)| *s);
            let code = if unsettled_cents.is_some_and(|c| line.amount.is_some_and(|a| a % 100 == c))
            {
                format!("{unsettled:02}000")
            } else if line.command == "PURCHASE"
                && (inner.purchased.contains(&order) || purchased_now.contains(&order))
            {
                format!("{failed:02}007")
            } else if line.amount.is_some_and(|a| a % 100 == self.decline_cents) {
                format!("{failed:02}020")
            } else {
                format!("{ok:02}000")
            };
            if line.command == "PURCHASE" {
                purchased_now.insert(order);
            }
            let fort_id = FORT_BASE + inner.next_fort_id;
            inner.next_fort_id += 1;
            entries.push(ApsJournalEntry {
                merchant_identifier: merchant.to_owned(),
                batch_reference: reference.to_owned(),
                line_number: line.line_number,
                command: line.command.clone(),
                merchant_reference: line.merchant_reference.clone(),
                amount: line.amount,
                currency: line.currency.clone(),
                response_code: code,
                fort_id: fort_id.to_string(),
            });
        }
        let mut rows: Vec<Row> = entries.iter().map(|e| result_row(e, offset)).collect();
        inner.journal.append(entries)?;
        inner.purchased.extend(purchased_now);
        if lock(&self.knobs).result_order == ResultOrder::Shuffled {
            inner.rng.shuffle(&mut rows);
        }
        if let Some(batch) = inner.batches.get_mut(&key) {
            batch.phase = Phase::Processed { rows: rows.clone() };
        }
        Ok(rows)
    }
}
