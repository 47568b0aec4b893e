//! The API on `listen`: jobs, accounts, resolve, the OpenAPI document. Every route needs
//! `Authorization: Bearer <token>` ([`crate::auth`]).
// A handler's early answers are `Response`s (what axum handlers return), built once per
// request; boxing them would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use orchestrator::Format;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::blocking;
use crate::jobs::{Accepted, Body as JobBody, Problem};
use crate::record::{JobId, JobRecord, JobState};
use crate::resolve::{ResolveAction, ResolveError, Resolved};
use crate::server::App;
use crate::status::Status;

/// The longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// The answer to a created (or repeated) job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedBody {
    /// The job's id.
    pub id: JobId,
    /// Its state (`accepted` for a new job).
    pub state: JobState,
}

/// An invalid input: every problem, nothing reserved.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProblemsBody {
    /// Each invalid record.
    pub problems: Vec<Problem>,
}

/// Every job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Oldest first.
    pub jobs: Vec<JobRecord>,
}

/// An operator's decision on a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResolveBody {
    /// `abandon` (the gateway confirmed it never processed the batch) or `mark-unknown` (its
    /// answer cannot be had).
    pub action: ResolveAction,
    /// Why; kept in the ledger.
    pub reason: String,
}

/// A refused decision, with what the drop showed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefusedBody {
    /// Why.
    pub error: String,
    /// What the drop showed.
    pub notes: Vec<String>,
}

/// `?format=kvp|csv|jsonl`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// `kvp`, `csv` or `jsonl`.
    pub format: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

fn internal(e: &crate::error::Error) -> Response {
    let shown = kvp_format::mask_digit_runs(&e.to_string()).into_owned();
    tracing::error!(error = %shown, "request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, shown)
}

fn parse_format(q: &FormatQuery, default: Option<Format>) -> Result<Format, Response> {
    match (&q.format, default) {
        (Some(f), _) => f
            .parse()
            .map_err(|m: String| error(StatusCode::BAD_REQUEST, format!("format: {m}"))),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(error(
            StatusCode::BAD_REQUEST,
            "say the input's format: ?format=kvp|csv|jsonl",
        )),
    }
}

fn job_id(text: &str) -> Result<JobId, Response> {
    JobId::parse(text).ok_or_else(|| error(StatusCode::NOT_FOUND, "no such job"))
}

/// The API's routes (auth is layered on by the server).
pub(crate) fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/v1/jobs", post(create_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/results", get(job_results))
        .route("/v1/jobs/{id}/retry", post(retry_job))
        .route("/v1/accounts", get(accounts))
        .route(
            "/v1/accounts/{account}/batches/{seq}/resolve",
            post(resolve_batch),
        )
        .route("/v1/openapi.json", get(openapi))
        .with_state(app)
}

/// Submits an input file (as `submit` reads it). The whole input is validated first; a valid
/// one is durable before the answer.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    params(FormatQuery, ("Idempotency-Key" = Option<String>, Header, description = "the same key and body return the same job; another body is 409")),
    request_body(content = String, description = "the input: KVP lines, CSV with a header, or JSON Lines", content_type = "application/octet-stream"),
    responses(
        (status = 202, description = "accepted (durable); repeated key and body: the same job", body = AcceptedBody),
        (status = 400, description = "no or unknown format, bad Idempotency-Key", body = ErrorBody),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
        (status = 409, description = "the Idempotency-Key was used with another body", body = ErrorBody),
        (status = 413, description = "the body is larger than serve.max_body", body = ErrorBody),
        (status = 422, description = "invalid input: every problem; nothing reserved", body = ProblemsBody),
        (status = 503, description = "the service is stopping", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_job(
    State(app): State<Arc<App>>,
    Query(q): Query<FormatQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if app.jobs.is_stopping() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping");
    }
    let format = match parse_format(&q, None) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let key = match headers.get("idempotency-key").map(HeaderValue::to_str) {
        None => None,
        // Kept in the job's record and shown by GET /v1/jobs: never a card number.
        Some(Ok(k))
            if !k.is_empty() && k.len() <= MAX_KEY_LEN && !kvp_format::contains_card_number(k) =>
        {
            Some(k.to_owned())
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "Idempotency-Key: 1 to {MAX_KEY_LEN} visible ASCII characters, not a card number"
                ),
            );
        }
    };
    let max = app.config.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        // Read a body a little too large to its end, so the client, still sending it, reads
        // the 413 (closing with unread data resets the connection); a far larger one is cut.
        if declared.is_some_and(|n| n <= max.saturating_add(DRAIN_LIMIT)) {
            drain(body.into_data_stream()).await;
        }
        return too_large(max);
    }
    let body = match receive(&app, body, format, key, max).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match app.jobs.accept(body).await {
        Ok(Accepted::New(r)) => accepted(&r),
        Ok(Accepted::Existing(r)) => accepted(&r),
        Ok(Accepted::KeyConflict(id)) => error(
            StatusCode::CONFLICT,
            format!("this Idempotency-Key was used for job {id} with another body"),
        ),
        Ok(Accepted::Invalid(problems)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(ProblemsBody { problems }),
        )
            .into_response(),
        Err(e) => internal(&e),
    }
}

/// How much of a body over the limit is still read (and thrown away) before the 413.
const DRAIN_LIMIT: u64 = 1 << 20;

/// Reads and discards up to [`DRAIN_LIMIT`] more bytes of a refused body.
async fn drain(mut stream: axum::body::BodyDataStream) {
    let mut left = DRAIN_LIMIT;
    while let Some(Ok(chunk)) = stream.next().await {
        let Some(l) = left.checked_sub(chunk.len() as u64) else {
            return;
        };
        left = l;
    }
}

fn too_large(max: u64) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than serve.max_body ({max} bytes)"),
    )
}

fn accepted(r: &JobRecord) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        Json(AcceptedBody {
            id: r.id.clone(),
            state: r.state,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{}", r.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Streams the body into a fresh incoming folder (owner-only), hashing and counting it.
async fn receive(
    app: &App,
    body: Body,
    format: Format,
    key: Option<String>,
    max: u64,
) -> Result<JobBody, Response> {
    let store = app.jobs.store().clone();
    let incoming = blocking(move || store.incoming())
        .await
        .map_err(|e| internal(&e))?;
    let path = incoming.input();
    let file = kvp_format::owner_only::create_new(&path)
        .map_err(|e| internal(&crate::error::Error::io(&path, e)))?;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {e}"),
            )
        })?;
        bytes += chunk.len() as u64;
        if bytes > max {
            drain(stream).await;
            return Err(too_large(max));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| internal(&crate::error::Error::io(&path, e)))?;
    }
    file.flush()
        .await
        .map_err(|e| internal(&crate::error::Error::io(&path, e)))?;
    Ok(JobBody {
        incoming,
        format,
        bytes,
        sha256: hex::encode(hasher.finalize()),
        key,
    })
}

/// Every job, oldest first.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, body = JobList), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn list_jobs(State(app): State<Arc<App>>) -> Response {
    Json(JobList {
        jobs: app.jobs.list(),
    })
    .into_response()
}

/// One job: state, times, totals per outcome, per account.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "the job's id")),
    responses((status = 200, body = JobRecord), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn get_job(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match job_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match app.jobs.get(&id) {
        Some(r) => Json(r).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such job"),
    }
}

/// The merged output (as `submit --output` writes it: one record per input record, in input
/// order) once the run ended; the job's input format unless `format` says otherwise.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/results", tag = "jobs",
    params(("id" = String, Path, description = "the job's id"), FormatQuery),
    responses(
        (status = 200, description = "the results", content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "not finished yet (or the run wrote none)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn job_results(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Response {
    let id = match job_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(record) = app.jobs.get(&id) else {
        return error(StatusCode::NOT_FOUND, "no such job");
    };
    let format = match parse_format(&q, record.format.parse().ok()) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !record.state.is_finished() || !record.results {
        return error(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}: results are ready once it is complete (or failed with results)",
                record.state.as_str()
            ),
        );
    }
    let store = app.jobs.store().clone();
    let input = &app.jobs.settings().input;
    let lead = [input.ref_field.clone(), input.account_field.clone()];
    let path = blocking(move || store.results_in(&id, format, [&lead[0], &lead[1]])).await;
    let path = match path {
        Ok(Some(p)) => p,
        Ok(None) => return error(StatusCode::CONFLICT, "the run wrote no results"),
        Err(e) => return internal(&e),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return internal(&crate::error::Error::io(&path, e)),
    };
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Jsonl => "application/x-ndjson",
        _ => "text/plain; charset=utf-8",
    };
    let stream = futures::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes_of(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}

fn bytes_of(v: Vec<u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(v)
}

/// Runs a failed job again once its cause is fixed (a Stuck batch resolved, a drop reachable
/// again): the engine finishes what the ledger holds of it and sends only what was never
/// bound to a batch.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "the job's id")),
    responses(
        (status = 202, body = AcceptedBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the job is not failed", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn retry_job(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if app.jobs.is_stopping() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping");
    }
    let id = match job_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match app.jobs.retry(&id).await {
        None => error(StatusCode::NOT_FOUND, "no such job"),
        Some(Ok(r)) => accepted(&r),
        Some(Err(state)) => error(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}: only a failed job is retried",
                state.as_str()
            ),
        ),
    }
}

/// Per account: the last sequence number, batches by state, Stuck and in-flight batches (the
/// JSON of `paybatch status --json`).
#[utoipa::path(
    get, path = "/v1/accounts", tag = "accounts",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn accounts(State(app): State<Arc<App>>) -> Response {
    match crate::status::status(app.jobs.settings(), Some(app.ledger.as_ref())).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => internal(&e.into()),
    }
}

/// An operator's decision on a batch that cannot finish by itself: `abandon` (the gateway
/// confirmed it never processed it; refused when its answer, or a part of it, is in the drop) or
/// `mark-unknown` (its answer cannot be had). Refused while a job works on the account.
#[utoipa::path(
    post, path = "/v1/accounts/{account}/batches/{seq}/resolve", tag = "accounts",
    params(("account" = String, Path, description = "the account"), ("seq" = u32, Path, description = "the batch's sequence number")),
    request_body = ResolveBody,
    responses(
        (status = 200, body = Resolved), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "refused (the gateway answered, the state does not allow it, or a job works on the account)", body = RefusedBody),
        (status = 502, description = "the drop could not be inspected", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn resolve_batch(
    State(app): State<Arc<App>>,
    Path((account, seq)): Path<(String, u32)>,
    Json(body): Json<ResolveBody>,
) -> Response {
    // An account of the configuration, before anything is written for it (a lease) or
    // echoed: the path segment may be any text, a card number too.
    if !app.jobs.settings().accounts().contains_key(&account) {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no account {} in the configuration",
                kvp_format::mask_digit_runs(&account)
            ),
        );
    }
    // No worker moves the account's batches while the operator decides on one.
    let Some(_held) = app.jobs.engine().try_lock_account(&account) else {
        return (
            StatusCode::CONFLICT,
            Json(RefusedBody {
                error: format!(
                    "a job is working on account {account} now; try again when it is idle (GET /v1/accounts)"
                ),
                notes: Vec::new(),
            }),
        )
            .into_response();
    };
    let result = crate::resolve::resolve(
        app.jobs.settings(),
        app.ledger.clone(),
        &account,
        seq,
        body.action,
        &body.reason,
    )
    .await;
    match result {
        Ok(r) => {
            tracing::info!(account = %r.account, sequence = r.sequence, from = %r.from, to = %r.to, "batch resolved by an operator");
            Json(r).into_response()
        }
        Err(ResolveError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(e @ ResolveError::NoBatch { .. }) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(ResolveError::Refused { message, notes }) => (
            StatusCode::CONFLICT,
            Json(RefusedBody {
                error: message,
                notes,
            }),
        )
            .into_response(),
        Err(e @ ResolveError::Inspect(_)) => error(StatusCode::BAD_GATEWAY, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// This document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3 document", content_type = "application/json"), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The OpenAPI 3 document of the API, generated from the handlers above.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "paybatch", description = "Payment batches over HTTP: submit an input, follow the job, fetch the merged results."),
    paths(create_job, list_jobs, get_job, job_results, retry_job, accounts, resolve_batch, openapi),
    components(schemas(
        ErrorBody, AcceptedBody, ProblemsBody, Problem, JobList, JobRecord, JobState, JobId,
        crate::record::JobAccount, Status, crate::status::AccountStatus, ResolveBody,
        ResolveAction, Resolved, RefusedBody
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the paths name.
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
