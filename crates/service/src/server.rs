//! Starting and stopping the service: the job store, the jobs resumed, the two listeners
//! (optionally HTTPS), and the orderly stop (readiness false, new jobs 503, running work to a
//! safe point, listeners closed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use orchestrator::{Orchestrator, Settings, Shutdown, ShutdownTrigger};
use sequence_ledger::{BatchState, SequenceLedger};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::error::{Error, Result, blocking};
use crate::jobs::Jobs;
use crate::page::{PageData, StuckBatch};
use crate::record::timestamp;
use crate::settings::ServeConfig;
use crate::store::JobStore;

/// How long the listeners get to finish their requests once the jobs stopped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub jobs: Arc<Jobs>,
    pub config: ServeConfig,
    pub ledger: Arc<dyn SequenceLedger>,
}

/// A running service.
#[derive(Debug)]
pub struct Running {
    api: SocketAddr,
    admin: SocketAddr,
    tls: bool,
    jobs: Arc<Jobs>,
    trigger: ShutdownTrigger,
    close: watch::Sender<bool>,
    servers: JoinSet<std::io::Result<()>>,
}

/// Starts the service around `engine` (built by the caller with its ledger: the service opens
/// no ledger itself): opens the data directory, binds both listeners, then resumes every job a
/// stop or a crash left accepted or running.
///
/// # Errors
/// [`Error::Io`]/[`Error::Record`] for the data directory, [`Error::Bind`], [`Error::Tls`].
pub async fn start(
    settings: Arc<Settings>,
    config: ServeConfig,
    engine: Orchestrator,
) -> Result<Running> {
    let store = {
        let dir = config.data_dir.clone();
        blocking(move || JobStore::open(&dir)).await?
    };
    let engine = Arc::new(engine);
    let ledger = engine.ledger().clone();
    let (trigger, stop) = Shutdown::new();
    let jobs = Jobs::open(store, settings, engine, config.max_concurrent_jobs, stop).await?;
    let tls = match &config.tls {
        Some(files) => Some(crate::tls::server_config(files)?),
        None => None,
    };
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })
    };
    let api_listener = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let local = |l: &TcpListener, addr: SocketAddr| {
        l.local_addr().map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })
    };
    let api = local(&api_listener, config.listen)?;
    let admin = local(&admin_listener, config.admin_listen)?;
    let app = Arc::new(App {
        jobs: jobs.clone(),
        config,
        ledger,
    });
    let api_router = crate::api::router(app.clone()).layer(axum::middleware::from_fn_with_state(
        app.clone(),
        crate::auth::require_token,
    ));
    let admin_router = admin_router(app.clone());
    let (close, closed) = watch::channel(false);
    let mut servers = JoinSet::new();
    for (listener, router) in [(api_listener, api_router), (admin_listener, admin_router)] {
        let mut closed = closed.clone();
        let signal = async move {
            let _ = closed.wait_for(|c| *c).await;
        };
        match &tls {
            Some(config) => {
                let listener = crate::tls::TlsListener::new(listener, config.clone())?;
                servers.spawn(
                    axum::serve(listener, router)
                        .with_graceful_shutdown(signal)
                        .into_future(),
                );
            }
            None => {
                servers.spawn(
                    axum::serve(listener, router)
                        .with_graceful_shutdown(signal)
                        .into_future(),
                );
            }
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(api = %format!("{scheme}://{api}"), admin = %format!("{scheme}://{admin}"), data_dir = %app.jobs.store().root().display(), "paybatch serve listening");
    jobs.resume_all();
    Ok(Running {
        api,
        admin,
        tls: tls.is_some(),
        jobs,
        trigger,
        close,
        servers,
    })
}

impl Running {
    /// The API's address (the bound port when `listen` asked for port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Whether both listeners speak HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The first step of [`Running::stop`], on its own: readiness false and new jobs 503 from
    /// now on, the engine's shutdown fired (running work stops at its next safe point). The
    /// listeners keep answering (job state, results, metrics) until [`Running::stop`].
    pub fn begin_stop(&self) {
        if !self.jobs.is_stopping() {
            info!("stopping: new jobs are refused; running work stops at its next safe point");
        }
        self.jobs.begin_stop();
        self.trigger.trigger();
    }

    /// Stops in order: readiness false and new jobs 503 at once, the engine's shutdown fired
    /// (every account stops at its next safe point; the ledger has what was done), the job
    /// tasks awaited (their records say `running`, so the next start resumes them), then the
    /// listeners closed (requests in progress get [`DRAIN_TIMEOUT`] to finish).
    ///
    /// # Errors
    /// [`Error::Io`] when a listener failed while serving.
    pub async fn stop(mut self) -> Result<()> {
        self.begin_stop();
        self.jobs.wait_idle().await;
        let _ = self.close.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            let mut first_error = None;
            while let Some(joined) = self.servers.join_next().await {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_error.get_or_insert(Error::io("listener", e));
                    }
                    Err(e) => {
                        first_error.get_or_insert(Error::task(&e));
                    }
                }
            }
            first_error
        })
        .await;
        match drained {
            Ok(None) => {
                info!("stopped");
                Ok(())
            }
            Ok(Some(e)) => Err(e),
            Err(_) => {
                warn!("requests still open after the drain timeout were cut");
                self.servers.abort_all();
                Ok(())
            }
        }
    }
}

fn admin_router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .with_state(app)
}

/// 200 while the ledger answers and the service takes jobs; 503 while stopping.
async fn readyz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    if app.jobs.is_stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response();
    }
    match app.ledger.accounts().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "ledger not readable: {}\n",
                kvp_format::mask_digit_runs(&e.to_string())
            ),
        )
            .into_response(),
    }
}

async fn metrics(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    let text = match crate::metrics::Snapshot::take(&app.jobs, app.ledger.as_ref()).await {
        Ok(snapshot) => snapshot
            .encode()
            .map_err(|e| Error::Task(format!("encoding metrics: {e}"))),
        Err(e) => Err(e.into()),
    };
    match text {
        Ok(t) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], t).into_response(),
        Err(e) => shown_error(&e),
    }
}

/// An error as the admin port (no token) shows it: card-like digit runs masked, as the API
/// does.
fn shown_error(e: &Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{}\n", kvp_format::mask_digit_runs(&e.to_string())),
    )
        .into_response()
}

async fn page(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    let data = page_data(&app).await;
    match data {
        Ok(d) => Html(crate::page::render(&d)).into_response(),
        Err(e) => shown_error(&e),
    }
}

async fn page_data(app: &App) -> Result<PageData> {
    let (jobs, ledger, ready) = (&app.jobs, app.ledger.as_ref(), !app.jobs.is_stopping());
    let status = crate::status::status(jobs.settings(), Some(ledger)).await?;
    let mut stuck = Vec::new();
    for a in &status.accounts {
        let id = sequence_ledger::AccountId::new(a.account.as_str())?;
        for &seq in &a.stuck {
            let Ok(n) = kvp_format::SequenceNumber::new(seq) else {
                continue;
            };
            if let Some(b) = ledger.batch(&id, n).await? {
                let since = b
                    .transitions
                    .iter()
                    .rev()
                    .find(|t| t.state == BatchState::Stuck)
                    .map(|t| {
                        timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(t.at_unix_ms))
                    });
                stuck.push(StuckBatch {
                    account: a.account.clone(),
                    sequence: seq,
                    lines: b.line_count,
                    since,
                });
            }
        }
    }
    Ok(PageData {
        ready,
        status,
        stuck,
        jobs: jobs.list(),
        now: timestamp(SystemTime::now()),
    })
}
