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
    ApsKnobs, ApsMerchant, ApsSimOptions, LostAnswer, ReferenceMode, ResultsForm, TamperMode,
    UploadSignature,
};
use super::signature::signature;
use super::validate::{BatchLine, Validation};

use super::answer::{
    Answer, FORT_BASE, Request, Row, batch_id_of, json, json_params, result_row, valid_reference,
};

/// The service's file limit ("Max: 50MB", read as 50,000,000 bytes).
pub(super) const MAX_FILE: usize = 50_000_000;

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
pub(super) struct Shared {
    pub(super) merchants: HashMap<String, ApsMerchant>,
    pub(super) validation_polls: u32,
    pub(super) processing_polls: u32,
    pub(super) decline_cents: u64,
    pub(super) reference: ReferenceMode,
    pub(super) process_path: Option<String>,
    pub(super) upload_signature: UploadSignature,
    pub(super) header_names: Vec<(String, String)>,
    pub(super) knobs: Mutex<ApsKnobs>,
    pub(super) inner: Mutex<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) batches: HashMap<(String, String), Batch>,
    pub(super) journal: Journal,
    pub(super) purchased: HashSet<(String, String)>,
    pub(super) next_fort_id: u64,
    pub(super) rng: fastrand::Rng,
}

#[derive(Debug)]
pub(super) struct Batch {
    pub(super) batch_id: String,
    pub(super) validation: Validation,
    pub(super) phase: Phase,
}

#[derive(Debug, Clone)]
pub(super) enum Phase {
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
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
}
